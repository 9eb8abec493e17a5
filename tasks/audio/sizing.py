"""The `--data` default sized to the data and the machine (issue #14): the `esc50` preset leaves the model width,
the epochs and the batch size unset, and `size_to_data` chooses them from the number of training clips and whether a
GPU is used, before the run directory is made (so config.yaml records the choice). Flags and `--config` values win;
the sound paper's recipe (FocalNet-T, 60 epochs, mixup + SpecAugment) is `--preset paper`. When ImageNet FocalNet-T
weights are in the Hugging Face cache, `--data` picks presets/finetune.yaml instead (fine-tuning them; epochs and
batch size sized the same way).

Rule (measured on the realsets drums and phrases sets, see docs/audio.md): a from-scratch model of under 1 M
parameters (1D width 64, 2D width 32), wider on a GPU or with thousands of clips, trained for about 12k clip
presentations (at least 20 and at most 80 epochs), batch 16 below 1000 training clips and 32 above; below 1000
training clips, an ensemble of 3 members (seeds apart) scored on their averaged probabilities (3x the training time;
a few minutes of one CPU core per member on a few hundred clips).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from .data import read_esc50
from .protocol import plan_splits

__all__ = ["FINETUNE_WEIGHTS", "choose_preset", "count_training_clips", "size_to_data", "weights_cached"]

FINETUNE_WEIGHTS = "focalnet_tiny_srf"  # what presets/finetune.yaml starts from

CLIP_PRESENTATIONS = 12_000
EPOCH_RANGE = (20, 80)
SMALL_SET = 1000  # training clips: below it batch 16 and an ensemble of ENSEMBLE_BELOW members
ENSEMBLE_BELOW = 3


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
    folds = read_esc50(args.data, esc10=args.esc10).folds
    split = plan_splits(args.protocol, args.folds)[0]
    return int(np.isin(folds, split.train).sum())


def size_to_data(args: argparse.Namespace, num_train: int, gpu: bool) -> str:
    """Fill the options left unset (None) from `num_train` and `gpu`; returns the line announcing the choice."""
    chosen = {}
    if args.batch_size is None:
        chosen["batch_size"] = min(16 if num_train < SMALL_SET else 32, max(num_train // 2, 1))  # >= 2 steps an epoch
    if args.epochs is None:
        epochs = math.ceil(CLIP_PRESENTATIONS / max(num_train, 1))
        chosen["epochs"] = int(min(max(epochs, EPOCH_RANGE[0]), EPOCH_RANGE[1]))
    if args.variant is None and args.embed_dim is None and getattr(args, "pretrained", None) is None:
        wide = gpu or num_train >= 2000
        chosen["embed_dim"] = (96 if wide else 64) if args.model == "focalnet1d" else (48 if wide else 32)
    if getattr(args, "ensemble", 1) is None:
        chosen["ensemble"] = ENSEMBLE_BELOW if num_train < SMALL_SET else 1
    for name, value in chosen.items():
        setattr(args, name, value)
    what = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items())
    return (f"sized to the data: {num_train} training clips on {'a GPU' if gpu else 'the CPU'} -> {what or 'as given'}"
            " (flags override; the sound paper's recipe: --preset paper)")
