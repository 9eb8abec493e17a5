"""A trained sound classifier as the verbs apply it (validate, predict, export): one fold's model(s) with their
weights, the class names in label order and the feature settings, read from a `python -m tasks.audio fit` run.

A run trains one model (or an ensemble of `--ensemble` members) per split, in `<run>/<split>/checkpoints/` and, for
members after the first, `<run>/<split>/member<m>/checkpoints/` (`best.ckpt` with the paper split, whose test used
the best validation weights, else `last.ckpt`). Each member standardises the log features with its training set's
mean and std (buffers of the checkpoint) and the split is scored on the members' averaged class probabilities:
`SoundClassifier.probabilities` does exactly that. Checkpoints since the verbs exist hold the class names and the
feature settings as hyper-parameters; older runs take them from config.yaml and the run's data (`--data`, or the
synthetic set in the run directory).
"""
from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from focalmod.models import get_spec

from ..common import TaskError
from ..common.metrics import read_metrics
from ..common.trained import CHECKPOINT_ORDER, TrainedRun, read_options
from .data import load_waveform, read_run_data
from .features import FeatureConfig, FeatureExtractor
from .models import _hornet_overrides, default_variant, pretrained_name
from .protocol import build_model_from_options, member_options, model_overrides, plan_splits

__all__ = ["Ensemble", "Member", "SoundClassifier", "WaveformClassifier", "architecture"]

SYNTH_DIR = "synthetic_esc50"  # tasks.audio.esc50.SYNTH_DIR (not imported: esc50 imports the whole training side)


class Member(nn.Module):
    """One trained member: raw log features `(B, F, T)` -> logits, standardised with its training set's mean and
    std first (as `AudioClassifierModule.forward`)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(features))


class Ensemble(nn.Module):
    """Raw log features `(B, F, T)` -> class probabilities: the members' softmax, averaged (the protocol's score)."""

    def __init__(self, members: list[Member]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(features).softmax(1) for m in self.members]).mean(0)


class WaveformClassifier(nn.Module):
    """Waveform `(B, samples)` (as `load_waveform` returns it: mono, the run's rate and length, peak-normalised) ->
    class probabilities: the run's feature extraction, then `Ensemble`."""

    def __init__(self, features: FeatureConfig, ensemble: Ensemble) -> None:
        super().__init__()
        self.extractor, self.ensemble = FeatureExtractor(features), ensemble

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.ensemble(self.extractor(waveform))


def architecture(options: argparse.Namespace, features: FeatureConfig) -> tuple[str, int, dict[str, Any]]:
    """`(registered variant, in_chans, constructor overrides)` of a member's backbone, as `build_model`
    creates it (without the `--pretrained` weights: a trained run's weights are in its checkpoint)."""
    variant = options.variant
    if pretrained_name(options.pretrained) is not None:
        variant = pretrained_name(options.pretrained).split(".", 1)[0]
    variant = variant or default_variant(options.model)
    overrides = model_overrides(options)
    if options.model == "hornet":
        overrides = _hornet_overrides(overrides)
    spatial_dims = get_spec(variant).kwargs.get("spatial_dims", 2)
    return variant, features.num_freq if spatial_dims == 1 else options.in_chans, overrides


@dataclass
class SoundClassifier:
    """One split's trained model(s). `members[m]`: features -> logits (eval mode); `options[m]`: member m's
    options (config.yaml with its `--ensemble-models` entry); `classes[i]`: the name of label i; `features`: how a
    clip becomes the network's input; `split`: fold1..fold5 or paper-split; `checkpoints[m]`: member m's file."""

    members: list[Member]
    options: list[argparse.Namespace]
    classes: list[str]
    features: FeatureConfig
    run: Path
    split: str
    checkpoints: list[Path]
    metrics: dict[str, Any] | None
    config: dict[str, Any]

    @property
    def ensemble(self) -> Ensemble:
        return Ensemble(self.members).eval()

    @property
    def name(self) -> str:
        """e.g. `focalnet1d/focalnet1d_tiny + focalnet2d/focalnet_tiny_srf`."""
        return " + ".join(f"{o.model}/{architecture(o, self.features)[0]}" for o in self.options)

    @property
    def params_m(self) -> float:
        return sum(p.numel() for m in self.members for p in m.parameters()) / 1e6

    def load(self, path: Path) -> torch.Tensor:
        """`(samples,)`: the file as training loaded its clips (`tasks.audio.data.load_waveform`); `TaskError` naming
        the file when it cannot be read."""
        c = self.features
        return load_waveform(path, c.sample_rate, c.num_samples, c.normalize, c.pad)

    @functools.cached_property
    def extractor(self) -> FeatureExtractor:
        return FeatureExtractor(self.features)

    @torch.no_grad()
    def featurize(self, wave: torch.Tensor) -> torch.Tensor:
        """`(F, T)` log features of one loaded clip (as training extracted them, one clip at a time)."""
        return self.extractor(wave)

    @torch.no_grad()
    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return self.ensemble(features)

    @classmethod
    def from_run(cls, path: Path | str, fold: int | None = None, option: str = "--run") -> SoundClassifier:
        """The model(s) of one split of a run: `path` is the run directory (the split `fold`, default the first
        trained one; with the paper split, fold 5) or a .ckpt inside it (that member alone)."""
        path = Path(path)
        if path.is_file() and path.suffix == ".ckpt":
            run_dir = next((p for p in path.parents if (p / "config.yaml").is_file()), None)
            if run_dir is None:
                raise TaskError(f"{option}: no config.yaml above {path} (expected a checkpoint inside the run "
                                "directory of `python -m tasks.audio fit`)")
            parts = path.relative_to(run_dir).parts
            if len(parts) < 3:
                raise TaskError(f"{option}: {path} is not inside a fold of {run_dir} (<fold>/[member<m>/]checkpoints/)")
            split, member_dir = parts[0], parts[1]
            member = int(member_dir[len("member"):]) if member_dir.startswith("member") else 0
            config = _read_config(run_dir, option)
            if fold is not None and split != _split_name(config, fold, option):
                raise TaskError(f"{option}: {path} is a checkpoint of {split}, not of --fold {fold}")
            wanted = [(member, path)]
        elif path.is_dir():
            run_dir, config = path, _read_config(path, option)
            split = _choose_split(run_dir, config, fold, option)
            wanted = [(m, _member_checkpoint(run_dir / split, m, option)) for m in range(int(config["ensemble"]))]
        else:
            raise TaskError(f"{option}: {path} is neither a run directory nor a .ckpt file")
        metrics = None
        if (run_dir / "metrics.json").is_file():
            try:
                metrics = read_metrics(run_dir / "metrics.json")
            except ValueError:
                metrics = None
        members, options, classes, features = [], [], None, None
        for member, checkpoint in wanted:
            trained = _open(run_dir, config, checkpoint, metrics, option)
            hp = trained.hparams
            features = features or FeatureConfig(**(hp.get("features") or _features_of(config)))
            classes = classes or list(hp.get("classes") or _classes_of_data(run_dir, config, option))
            opts = member_options(argparse.Namespace(**config), member)
            members.append(_member(trained, opts, len(classes), features, option))
            options.append(opts)
        return cls(members, options, classes, features, run_dir, split, [c for _, c in wanted], metrics, config)


def _read_config(run_dir: Path, option: str) -> dict[str, Any]:
    options = read_options(run_dir, option)
    if not {"features", "n_mels", "ensemble", "protocol"} <= set(options):
        raise TaskError(f"{option}: {run_dir} is not a run of `python -m tasks.audio fit` (its config.yaml has no "
                        "features / ensemble / protocol)")
    return options


def _split_name(config: dict[str, Any], fold: int, option: str) -> str:
    if config["protocol"] == "paper-split":
        if fold != 5:
            raise TaskError(f"--fold {fold}: this run used the paper split (train 1-3, validate 4, test 5): its model "
                            "is --fold 5")
        return "paper-split"
    return f"fold{fold}"


def _choose_split(run_dir: Path, config: dict[str, Any], fold: int | None, option: str) -> str:
    """The split `--fold` names, else the first one trained (the protocol's order); a split is trained once its
    result.json is written."""
    trained = [s.name for s in plan_splits(config["protocol"], config.get("folds") or [1, 2, 3, 4, 5])
               if (run_dir / s.name / "result.json").is_file()]
    if fold is None:
        if not trained:
            raise TaskError(f"{option}: {run_dir} has no trained fold yet (no <fold>/result.json); resume it with "
                            f"`python -m tasks.audio fit --resume {run_dir}`")
        return trained[0]
    name = _split_name(config, fold, option)
    if name not in trained:
        raise TaskError(f"--fold {fold}: {run_dir} has no trained {name}; trained: {', '.join(trained) or 'none'}")
    return name


def _member_checkpoint(split_dir: Path, member: int, option: str) -> Path:
    folder = split_dir / (f"member{member}" if member else "") / "checkpoints"
    found = next((folder / f"{n}.ckpt" for n in CHECKPOINT_ORDER if (folder / f"{n}.ckpt").is_file()), None)
    if found is None:
        raise TaskError(f"{option}: no best.ckpt or last.ckpt in {folder} (member {member} of {split_dir.name})")
    return found


def _open(run_dir: Path, config: dict[str, Any], checkpoint: Path, metrics: dict | None, option: str) -> TrainedRun:
    from ..common.trainer import AtomicCheckpointIO

    state = AtomicCheckpointIO().load_checkpoint(checkpoint)
    if "state_dict" not in state:
        raise TaskError(f"{option}: {checkpoint} is not a checkpoint of a training command (no state_dict)")
    return TrainedRun(run_dir, config, checkpoint, dict(state.get("hyper_parameters") or {}), state["state_dict"],
                      metrics)


def _features_of(config: dict[str, Any]) -> dict[str, Any]:
    names = ("sample_rate", "clip_seconds", "n_fft", "win_length", "hop_length", "n_mels", "normalize", "pad")
    return {"kind": config["features"], **{n: config[n] for n in names if config.get(n) is not None}}


def _classes_of_data(run_dir: Path, config: dict[str, Any], option: str) -> list[str]:
    """Class names of a run from before they were saved in its checkpoints: its data's, in label order."""
    root = Path(config["data"]) if config.get("data") else run_dir / SYNTH_DIR
    try:
        return read_run_data(root, config).class_names
    except TaskError as err:
        raise TaskError(f"{option}: the checkpoints of {run_dir} predate saved class names and its data cannot be "
                        f"read to name them: {err}") from None


def _member(trained: TrainedRun, options: argparse.Namespace, num_classes: int, features: FeatureConfig,
            option: str) -> Member:
    variant, _, _ = architecture(options, features)
    rebuilt = argparse.Namespace(**{**vars(options), "variant": variant, "pretrained": None, "init": "trunc_normal"})
    model = build_model_from_options(rebuilt, num_classes, features)
    weights = trained.sub_state_dict("model.")
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shapes differ
        raise TaskError(f"{option}: {trained.checkpoint} does not fit {options.model}/{variant} with {num_classes} "
                        f"classes: {str(err)[:300]}") from None
    if missing or unexpected or "mean" not in trained.state_dict:
        raise TaskError(f"{option}: {trained.checkpoint} does not fit {options.model}/{variant} with {num_classes} "
                        f"classes: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return Member(model, trained.state_dict["mean"], trained.state_dict["std"]).eval()
