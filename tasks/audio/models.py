"""Audio classifiers from registered focalmod models: a 2D net on the (time x frequency) spectrogram, or a 1D net
over frames with the frequency bins as channels (sound paper: 2D FocalNet on the spectrogram)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import focalmod
from focalmod.models import get_spec
from tasks.common import TaskError

__all__ = ["AUDIO_MODELS", "SpectrogramClassifier", "build_model", "default_variant", "fan_in_init"]

AUDIO_MODELS = ("focalnet2d", "focalnet1d", "hornet")
INITS = ("trunc_normal", "fan_in")
_DEFAULT_VARIANT = {"focalnet2d": "focalnet_tiny_srf", "focalnet1d": "focalnet1d_tiny", "hornet": "hornet_tiny_7x7"}


class SpectrogramClassifier(nn.Module):
    """`(B, F, T)` log features -> logits.

    2D: the backbone sees `(B, in_chans, T, F)` (time x frequency; the channel repeated to 3 for ImageNet stems;
    optionally resized, as the paper's 224 x 224). 1D: the backbone sees `(B, F, T)`, frequency bins as channels.
    """

    def __init__(self, backbone: nn.Module, spatial_dims: int, resize: Sequence[int] | None = None) -> None:
        super().__init__()
        self.backbone, self.spatial_dims = backbone, spatial_dims
        self.resize = tuple(resize) if resize else None
        self.in_chans = backbone.in_chans

    def to_input(self, features: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 1:
            return features
        x = features.transpose(1, 2).unsqueeze(1)
        if self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        return x.expand(-1, self.in_chans, -1, -1) if self.in_chans != 1 else x

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.to_input(features))


def fan_in_init(model: nn.Module) -> nn.Module:
    """PyTorch's default (fan-in scaled uniform) init for every Linear, instead of FocalNet's trunc-normal(0.02).

    At small widths (e.g. 24 channels) std 0.02 starts every residual branch near zero, and a from-scratch
    model on a few hundred clips then trains several times slower (measured on the synthetic set)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    return model


def _hornet_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """HorNet takes `orders` (one per stage) and has a fixed stride-4 stem; map the FocalNet-style overrides."""
    for name in ("patch_size", "focal_levels"):
        if name in overrides:
            raise TaskError(f"--{name.replace('_', '-')} does not apply to --model hornet")
    overrides = dict(overrides)
    if "depths" in overrides and "orders" not in overrides:
        overrides["orders"] = tuple(min(2 + i, 5) for i in range(len(overrides["depths"])))
    return overrides


def default_variant(model: str) -> str:
    """The registered name `--model` uses when `--variant` is not given."""
    if model == "hornet" and "hornet_tiny_7x7" not in focalmod.list_models("hornet*"):
        raise TaskError("--model hornet: this focalmod has no HorNet models registered (focalmod.models.hornet)")
    return _DEFAULT_VARIANT[model]


def pretrained_name(pretrained: str | Path | None) -> str | None:
    """The registered model name (with an optional weight tag) `--pretrained` gives, None for a checkpoint file."""
    if pretrained is None or Path(pretrained).is_file() or Path(pretrained).suffix in (".pth", ".pt", ".safetensors"):
        return None
    return str(pretrained)


def _from_imagenet(variant: str, pretrained: str | Path, num_classes: int, in_chans: int,
                   **overrides: Any) -> nn.Module:
    """Backbone initialised from 3-channel ImageNet weights through timm's pretrained machinery: a registered name
    (optionally with a weight tag, `focalnet_tiny_srf.ms_in1k`) whose weights are in the Hugging Face Hub cache, or
    a checkpoint file in any format focalmod reads (`pretrained_cfg_overlay=dict(file=...)`). timm sums the stem to
    `in_chans` channels (`adapt_input_conv`) and gives a new classifier."""
    name = pretrained_name(pretrained)
    overlay = None
    if name is None:
        if not Path(pretrained).is_file():
            raise TaskError(f"--pretrained: checkpoint {pretrained} not found")
        name, overlay = variant, dict(file=str(pretrained))
    try:
        with warnings.catch_warnings():  # the new head is expected
            warnings.filterwarnings("ignore", "classifier does not match")
            return focalmod.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay,
                                         num_classes=num_classes, in_chans=in_chans, **overrides)
    except FileNotFoundError as err:  # not in the cache (offline), or no weights for that name
        raise TaskError(f"--pretrained {pretrained}: {err}") from None
    except (ValueError, KeyError, RuntimeError) as err:
        raise TaskError(f"--pretrained {pretrained}: {str(err)[:400]}") from None


def build_model(
    model: str,
    num_classes: int,
    num_freq: int,
    num_frames: int,
    variant: str | None = None,
    in_chans: int = 1,
    pretrained: str | Path | None = None,
    resize: Sequence[int] | None = None,
    init: str = "trunc_normal",
    mixer: str = "focal",
    **overrides: Any,
) -> SpectrogramClassifier:
    """A `SpectrogramClassifier` for `(B, num_freq, num_frames)` features.

    `model`: focalnet2d | focalnet1d | hornet (2D HorNet; `hornet1d_*` variants for 1D). `variant`: a registered
    name (default per model). `mixer='gnconv'` builds a FocalNet with HorNet's gnConv in place of focal modulation (all
    else equal). `overrides`: constructor arguments for small configs (`embed_dim`, `depths`, `focal_levels`, ...).
    `pretrained`: 3-channel ImageNet weights for the 2D models, a checkpoint file or a registered name whose weights
    are in the Hugging Face cache (`focalnet_tiny_srf`; it then names the variant too); the stem is summed to
    `in_chans`. `init='fan_in'`
    re-initialises every Linear with PyTorch's fan-in default (see `fan_in_init`).
    """
    if init not in INITS:
        raise TaskError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "fan_in" and pretrained is not None:
        raise TaskError("--init fan_in would overwrite the --pretrained weights; use --init trunc_normal")
    if model not in AUDIO_MODELS:
        raise TaskError(f"--model must be one of {', '.join(AUDIO_MODELS)}, got {model!r}")
    if pretrained_name(pretrained) is not None:
        variant = pretrained_name(pretrained).split(".", 1)[0]
    variant = variant or default_variant(model)
    if variant not in focalmod.list_models():
        raise TaskError(f"--variant: unknown model {variant!r}; registered: {', '.join(focalmod.list_models())}")
    spatial_dims = get_spec(variant).kwargs.get("spatial_dims", 2)
    wanted = "hornet" if model == "hornet" else "focalnet"
    if not variant.startswith(wanted) or spatial_dims not in (1, 2) or (model != "hornet" and spatial_dims != (
        1 if model == "focalnet1d" else 2
    )):
        raise TaskError(f"--variant {variant} ({spatial_dims}D) does not fit --model {model}")
    if spatial_dims == 1:
        if pretrained is not None:
            raise TaskError("--pretrained: ImageNet initialisation needs a 2D model (--model focalnet2d)")
        in_chans = num_freq
    elif in_chans not in (1, 3):
        raise TaskError(f"--in-chans must be 1 or 3, got {in_chans}")
    if model == "hornet":
        overrides = _hornet_overrides(overrides)
    if mixer != "focal":
        if model == "hornet":
            raise TaskError("--mixer applies to the FocalNet models; HorNet already uses gnConv")
        overrides["mixer"] = mixer  # chosen at construction (all else equal)
    try:
        if pretrained is not None:
            backbone = _from_imagenet(variant, pretrained, num_classes, in_chans, **overrides)
        else:
            backbone = focalmod.create_model(variant, num_classes=num_classes, in_chans=in_chans, **overrides)
    except (TypeError, ValueError) as err:
        raise TaskError(f"--variant {variant}: {err}") from None
    if init == "fan_in":
        fan_in_init(backbone)
    classifier = SpectrogramClassifier(backbone, spatial_dims, resize)
    sides = (num_frames,) if spatial_dims == 1 else tuple(resize or (num_frames, num_freq))
    need = getattr(backbone, "min_input_size", 1)
    if min(sides) < need:
        raise TaskError(
            f"{variant}: input sides {sides} (frames{'' if spatial_dims == 1 else ' x frequency bins'}) are "
            f"smaller than the {need} its strides need; use longer clips, a smaller --hop-length or more --n-mels"
        )
    return classifier
