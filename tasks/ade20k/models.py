"""The network a run trains or evaluates: a registered UPerNet (`--model`) or the same heads on any backbone
(`--backbone`), with the `--model-arg KEY=VALUE` overrides (read by `tasks.common.parse_key_values`); errors become
one `TaskError` naming the option."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

import focalmod
from focalmod.checkpoints import CheckpointError
from focalmod.models.upernet_variants import build_upernet

from ..common import TaskError

__all__ = ["build_model", "load_backbone_weights"]


def build_model(model: str | None, backbone: str | None, num_classes: int, model_args: dict[str, Any]) -> nn.Module:
    """`focalmod.create_model(model, ...)` or, with `backbone`, `build_upernet(backbone, ...)` (no weights)."""
    option = f"--backbone {backbone}" if backbone else f"--model {model}"
    try:
        if backbone:
            return build_upernet(backbone, num_classes=num_classes, **model_args)
        if not model or not model.startswith("upernet_"):
            names = ", ".join(focalmod.list_models("upernet_*"))
            raise ValueError(f"expected a UPerNet model ({names}) or --backbone NAME for the same heads on another one")
        return focalmod.create_model(model, num_classes=num_classes, **model_args)
    except (ValueError, TypeError, RuntimeError) as err:
        raise TaskError(f"{option}: {err}") from None


def load_backbone_weights(model: nn.Module, path: Path) -> str:
    """Classification weights (official / timm / HF / ours) into the backbone, non-strictly: the classifier and
    final norm are not part of it, and the official 3x3/5x5 focal kernels are zero-padded to the model's 9x9/11x11
    (the official downstream surgery). Returns a one-line report."""
    try:
        report = focalmod.load_checkpoint(model.backbone, path, strict=False)
    except (CheckpointError, FileNotFoundError) as err:
        raise TaskError(f"--backbone-weights: {err}") from None
    if not report.loaded:
        raise TaskError(f"--backbone-weights: no tensor of {path} fits the backbone ({report.format} format)")
    return (f"backbone weights {path} ({report.format}): {len(report.loaded)} tensors loaded, "
            f"{len(report.missing)} missing, {len(report.unexpected)} unexpected")
