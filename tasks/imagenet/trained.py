"""A trained image classifier as the verbs apply it: the plain model with its weights, the class names in label
order and the evaluation preprocessing, read from a training run (or from plain weights and a model name)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timm.utils.misc import natural_key
from torch import nn

from focalmod.checkpoints import CheckpointError, load_checkpoint

from ..common import TaskError
from ..common.folders import list_class_files
from ..common.trained import TrainedRun
from .data import Preprocess
from .digits import default_cache_dir, digits_image_folder
from .recipe import build_model


def label_order(class_names: list[str]) -> list[str]:
    """Class folder names in label-index order: timm's `ImageDataset` numbers classes in natural-sort order
    ("2" before "10"), which training used."""
    return sorted(class_names, key=natural_key)


@dataclass
class Classifier:
    """`model` (eval mode), `classes[i]`: the name of label i, `preprocess`: the evaluation geometry, `name`: the
    model name given to `--model` (a task preset or a registered model), `overrides`: its constructor overrides."""

    model: nn.Module
    classes: list[str]
    preprocess: Preprocess
    name: str
    overrides: dict[str, Any]

    @classmethod
    def from_run(cls, trained: TrainedRun) -> Classifier:
        """The classifier a `tasks.imagenet` training run saved. Runs from before the class names were saved in
        the checkpoint take them from the run's training folder (the digits set when it had no --data)."""
        hp = trained.hparams
        if "model" not in hp or "num_classes" not in hp:
            raise TaskError(f"--run: {trained.checkpoint} is not a checkpoint of `python -m tasks.imagenet fit`")
        overrides = dict(hp.get("model_overrides") or {})
        model = build_model(hp["model"], hp["num_classes"], **overrides)
        missing, unexpected = model.load_state_dict(trained.sub_state_dict("model."), strict=False)
        if missing or unexpected:
            raise TaskError(f"--run: {trained.checkpoint} does not fit {hp['model']}: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}")
        classes = hp.get("classes") or _classes_of_training_folder(trained, hp)
        if len(classes) != hp["num_classes"]:
            raise TaskError(f"--run: {trained.checkpoint} has {hp['num_classes']} outputs but its training folder "
                            f"now holds {len(classes)} classes")
        return cls(model.eval(), list(classes), _preprocess(model, hp.get("preprocess") or {}), hp["model"], overrides)

    @classmethod
    def from_weights(cls, weights: Path, name: str, classes: list[str]) -> Classifier:
        """Weights in any format `focalmod.load_checkpoint` reads, for the registered model `name` with
        `classes` (the validation folder's)."""
        model = build_model(name, len(classes))
        try:
            report = load_checkpoint(model, weights)
        except (CheckpointError, ValueError, KeyError, RuntimeError) as err:  # converters raise ValueError too
            raise TaskError(f"--weights does not fit --model {name}: {err}") from None
        if any(k.startswith("head.") for k in report.initialised):
            raise TaskError(f"--weights: its classifier does not have {len(classes)} classes (the class folders "
                            "of --data)")
        return cls(model.eval(), classes, _preprocess(model, {}), name, {})


def _preprocess(model: nn.Module, saved: dict[str, Any]) -> Preprocess:
    cfg = {**model.pretrained_cfg, **saved}
    size = cfg["input_size"] if isinstance(cfg["input_size"], int) else cfg["input_size"][-1]
    return Preprocess(size, cfg.get("crop_pct") or 0.875, cfg.get("interpolation") or "bicubic",
                      tuple(cfg.get("mean") or Preprocess.mean), tuple(cfg.get("std") or Preprocess.std))


def _classes_of_training_folder(trained: TrainedRun, hp: dict[str, Any]) -> list[str]:
    data = trained.option("data")
    if data is None:
        data = digits_image_folder(default_cache_dir(), (hp.get("preprocess") or {}).get("input_size", 32))
    return label_order(list(list_class_files(Path(data) / "train", "--run (its training folder)")))
