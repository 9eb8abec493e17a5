"""The `--data` default sized to the data and the machine (issue #14): the `esc50` preset leaves the model width,
the epochs and the batch size unset, and `size_to_data` chooses them from the number of training clips and whether a
GPU is used, before the run directory is made (so config.yaml records the choice). Flags and `--config` values win;
the sound paper's recipe (FocalNet-T, 60 epochs, mixup + SpecAugment) is `--preset paper`. When ImageNet FocalNet-T
weights are in the Hugging Face cache, `--data` picks presets/finetune.yaml instead (fine-tuning them; epochs and
batch size sized the same way).

Rule (measured on the realsets drums and phrases sets, see docs/audio.md): a from-scratch model of under 1 M
parameters (1D width 64, 2D width 32), wider on a GPU or with thousands of clips, trained for about 12k clip
presentations (at least 20 and at most 80 epochs), batch 16 below 1000 training clips and 32 above. Below 1000
training clips, an ensemble scored on its members' averaged probabilities: with the default `--model focalnet1d`
the 1D net and the 2D net on the same features (`--ensemble-models focalnet1d:64,focalnet2d:32`, `--ensemble 2`;
they err on different clips: the pair beat three 1D members on the drums and phrases sets, docs/realsets.md; the
2D member costs about 5x the 1D one's time), with any other model 3 members of it, seeds apart. Given
`--ensemble-models` and no `--ensemble`: one member per entry.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from .data import read_sounds
from .protocol import plan_splits

__all__ = ["FINETUNE_WEIGHTS", "choose_preset", "count_training_clips", "size_to_data", "weights_cached"]

FINETUNE_WEIGHTS = "focalnet_tiny_srf"  # what presets/finetune.yaml starts from

CLIP_PRESENTATIONS = 12_000
EPOCH_RANGE = (20, 80)
SMALL_SET = 1000  # training clips: below it batch 16 and an ensemble
SMALL_SET_MODELS = ("focalnet1d", "focalnet2d")  # its members with the default --model focalnet1d
ENSEMBLE_BELOW = 3  # its members with any other --model


def weights_cached(name: str) -> bool:
    """True when the default weights of the registered `name` are in the Hugging Face Hub cache (nothing is
    fetched)."""
    from huggingface_hub import try_to_load_from_cache

    from focalmod.models import get_spec

    weights = next(iter(get_spec(name).weights.values()), {})
    if not weights.get("hf_hub_id"):
        return False
    found = try_to_load_from_cache(weights["hf_hub_id"], weights.get("hf_hub_filename") or "model.safetensors")
    return isinstance(found, str)


def choose_preset(args: argparse.Namespace) -> str:
    """synthetic without --data; with it, finetune when ImageNet FocalNet-T weights are cached, else esc50."""
    if args.data is None:
        return "synthetic"
    return "finetune" if weights_cached(FINETUNE_WEIGHTS) else "esc50"


def count_training_clips(args: argparse.Namespace) -> int:
    """Training clips of the protocol's first split (`--data`, `--esc10`, `--protocol`, `--folds`)."""
    seed = getattr(args, "split_seed", None)
    folds = read_sounds(args.data, esc10=args.esc10, seed=getattr(args, "seed", 0) if seed is None else seed).folds
    split = plan_splits(args.protocol, args.folds)[0]
    return int(np.isin(folds, split.train).sum())


def _width(model: str, wide: bool) -> int:
    """First-stage width of a from-scratch `model` (under 1 M parameters; wider on a GPU or with thousands of
    clips)."""
    return (96 if wide else 64) if model == "focalnet1d" else (48 if wide else 32)


def size_to_data(args: argparse.Namespace, num_train: int, gpu: bool) -> str:
    """Fill the options left unset (None) from `num_train` and `gpu`; returns the line announcing the choice."""
    chosen = {}
    if args.batch_size is None:
        chosen["batch_size"] = min(16 if num_train < SMALL_SET else 32, max(num_train // 2, 1))  # >= 2 steps an epoch
    if args.epochs is None:
        epochs = math.ceil(CLIP_PRESENTATIONS / max(num_train, 1))
        chosen["epochs"] = int(min(max(epochs, EPOCH_RANGE[0]), EPOCH_RANGE[1]))
    wide = gpu or num_train >= 2000
    from_scratch = args.variant is None and getattr(args, "pretrained", None) is None  # the width is ours to choose
    sized_width = from_scratch and args.embed_dim is None
    if sized_width:
        chosen["embed_dim"] = _width(args.model, wide)
    if getattr(args, "ensemble", 1) is None:
        models = getattr(args, "ensemble_models", None)
        if models is None and num_train < SMALL_SET and args.model == "focalnet1d" and from_scratch:
            models = chosen["ensemble_models"] = [f"{m}:{_width(m, wide)}" if sized_width else m
                                                  for m in SMALL_SET_MODELS]
        chosen["ensemble"] = len(models) if models else ENSEMBLE_BELOW if num_train < SMALL_SET else 1
    for name, value in chosen.items():
        setattr(args, name, value)
    what = ", ".join(f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, list) else v}"
                     for k, v in chosen.items())
    return (f"sized to the data: {num_train} training clips on {'a GPU' if gpu else 'the CPU'} -> {what or 'as given'}"
            " (flags override; the sound paper's recipe: --preset paper)")
