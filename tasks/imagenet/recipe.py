"""Model names the ImageNet task accepts: every `focalmod.list_models()` name plus task presets defined here
(small configurations for the embedded default; they stay out of the library's registry on purpose)."""
from __future__ import annotations

import difflib
from typing import Any

from torch import nn

import focalmod
from tasks.common import TaskError

# name: (registered base model, constructor overrides, pretrained_cfg overrides)
TASK_MODELS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # focalnet_tiny_srf's design (2 focal levels, window 3) shrunk for 32x32 digits: patch 4 gives back the
    # scans' native 8x8 grid, then 4x4 and 2x2 stages (C = 48, 96, 192); 0.81 M params.
    "focalnet_digits": (
        "focalnet_tiny_srf",
        dict(embed_dim=48, depths=(1, 2, 1), patch_size=4, drop_path_rate=0.05),
        dict(input_size=(3, 32, 32), crop_pct=1.0),
    ),
}


def model_names() -> list[str]:
    """Every name `--model` accepts."""
    return sorted([*focalmod.list_models(), *TASK_MODELS])


def resolve_model(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """`name` -> (registered model, constructor overrides, pretrained_cfg overrides); unknown names raise a
    `TaskError` with the closest matches."""
    if name in TASK_MODELS:
        base, kwargs, cfg = TASK_MODELS[name]
        return base, dict(kwargs), dict(cfg)
    if name in focalmod.list_models():
        return name, {}, {}
    close = difflib.get_close_matches(name, model_names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see focalmod.list_models()"
    raise TaskError(f"--model: unknown model {name!r}; {hint}")


def build_model(
    name: str,
    num_classes: int,
    drop_path_rate: float | None = None,
    checkpoint_path: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """The plain `focalmod` model for `name` with a `num_classes` head; `drop_path_rate=None` keeps the per-size
    value of the recipe (T 0.2, S 0.3, B 0.5). `model.pretrained_cfg` carries input size, crop_pct, mean/std."""
    base, kwargs, cfg = resolve_model(name)
    kwargs.update(overrides)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        model = focalmod.create_model(base, num_classes=num_classes, checkpoint_path=checkpoint_path, **kwargs)
    except ImportError as err:
        raise TaskError(f"--init-checkpoint: focalmod.load_checkpoint is not available ({err})") from None
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as err:
        raise TaskError(f"model {name!r}: {err}") from None
    model.pretrained_cfg = {**model.pretrained_cfg, **cfg, "architecture": name}
    return model
