"""Model names the ImageNet task accepts: every `focalmod.list_models()` name plus task presets defined here
(small configurations for the embedded default; they stay out of the library's registry on purpose)."""
from __future__ import annotations

import difflib
import warnings
from typing import Any

from torch import nn

import focalmod
from focalmod.models.baselines import build_baseline
from tasks.common import TaskError

# name: (base model, constructor overrides, pretrained_cfg overrides). The base is a `focalmod.list_models()` name
# or, for the comparison baselines, a timm name (built by `focalmod.models.baselines.build_baseline`, no weights).
# The digits presets all see 32x32 images through a stride-4 stem (the scans' native 8x8 grid) and have 0.7-0.8 M
# parameters, so the benchmark's accuracy-at-equal-budget table compares token mixers, not model sizes.
_DIGITS_CFG: dict[str, Any] = dict(input_size=(3, 32, 32), crop_pct=1.0)
TASK_MODELS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # focalnet_tiny_srf's design (2 focal levels, window 3) shrunk: 8x8, 4x4, 2x2 stages (C = 48, 96, 192); 0.81 M.
    "focalnet_digits": (
        "focalnet_tiny_srf",
        dict(embed_dim=48, depths=(1, 2, 1), patch_size=4, drop_path_rate=0.05),
        _DIGITS_CFG,
    ),
    # HorNet-7x7 (gnConv orders 2, 3, 4) with the same stages and widths; 0.81 M.
    "hornet_digits": (
        "hornet_tiny_7x7",
        dict(embed_dim=48, depths=(1, 2, 1), orders=(2, 3, 4), img_size=32, drop_path_rate=0.05),
        _DIGITS_CFG,
    ),
    # timm ConvNeXt (always 4 stages: 8x8 ... 1x1, C = 40, 80, 160, 160); 0.73 M.
    "convnext_digits": (
        "convnext_atto",
        dict(dims=(40, 80, 160, 160), depths=(1, 2, 1, 1), conv_mlp=False, drop_path_rate=0.05),
        _DIGITS_CFG,
    ),
    # timm Swin: patch 4, window 4 (the whole 4x4 / 2x2 map in stages 2-3), C = 48, 96, 192; 0.80 M.
    "swin_digits": (
        "swin_tiny_patch4_window7_224",
        dict(img_size=32, patch_size=4, window_size=4, embed_dim=48, depths=(1, 2, 1), num_heads=(2, 4, 8),
             drop_path_rate=0.05),
        _DIGITS_CFG,
    ),
    # timm ViT: 64 tokens of 4x4 patches, width 96, 7 blocks, 3 heads (global attention); 0.80 M.
    "vit_digits": (
        "vit_tiny_patch16_224",
        dict(img_size=32, patch_size=4, embed_dim=96, depth=7, num_heads=3, drop_path_rate=0.05),
        _DIGITS_CFG,
    ),
}
# The --data default for small folders (presets/folder.yaml): the focalnet_digits network, at the input side the
# folder's images call for (tasks/imagenet/sizing.py); kept out of the equal-size comparison set above.
SMALL_DATA_MODELS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "focalnet_small_data": (
        "focalnet_tiny_srf",
        dict(embed_dim=48, depths=(1, 2, 1), patch_size=4, drop_path_rate=0.05),
        dict(input_size=(3, 64, 64), crop_pct=1.0),
    ),
}
_PRESETS = {**TASK_MODELS, **SMALL_DATA_MODELS}


def model_names() -> list[str]:
    """Every name `--model` accepts."""
    return sorted([*focalmod.list_models(), *_PRESETS])


def resolve_model(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """`name` -> (registered model, constructor overrides, pretrained_cfg overrides); unknown names raise a
    `TaskError` with the closest matches."""
    if name in _PRESETS:
        base, kwargs, cfg = _PRESETS[name]
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
    pretrained: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """The plain model for `name` with a `num_classes` head (a focalmod model, or a timm baseline preset);
    `drop_path_rate=None` keeps the per-size value of the recipe (T 0.2, S 0.3, B 0.5). `checkpoint_path`: initial
    weights in any format `focalmod.load_checkpoint` reads. `pretrained`: `name` with an optional weight tag
    (`focalnet_tiny_srf.ms_in1k`) whose weights come from the Hugging Face Hub cache (timm's pretrained machinery; a
    new head for `num_classes`). `model.pretrained_cfg` carries input size, crop_pct, mean/std."""
    base, kwargs, cfg = resolve_model(name)
    kwargs.update(overrides)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        if pretrained is not None:
            if pretrained.split(".", 1)[0] != base:
                raise ValueError(f"--pretrained {pretrained} names another model than --model {name}")
            with warnings.catch_warnings():  # a new head for the folder's classes is expected
                warnings.filterwarnings("ignore", "classifier does not match")
                model = focalmod.create_model(pretrained, pretrained=True, num_classes=num_classes,
                                              checkpoint_path=checkpoint_path, **kwargs)
        elif base in focalmod.list_models():
            model = focalmod.create_model(base, num_classes=num_classes, checkpoint_path=checkpoint_path, **kwargs)
        else:  # a timm baseline preset
            model = build_baseline(base, num_classes=num_classes, **kwargs)
            if checkpoint_path is not None:
                focalmod.load_checkpoint(model, checkpoint_path)
    except ImportError as err:
        raise TaskError(f"--init-checkpoint: focalmod.load_checkpoint is not available ({err})") from None
    except (ValueError, KeyError, RuntimeError, FileNotFoundError, TypeError) as err:
        raise TaskError(f"model {name!r}: {err}") from None
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **cfg, "architecture": name}
    return model
