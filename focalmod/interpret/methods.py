"""Attribution maps of a classifier's decision over its input grid, from focal modulation or post-hoc methods.

Every method maps a model `(B, C, *S) -> (B, classes)` and an input `x` to a non-negative `(B, *S)` map on the
input's spatial grid (`S`: `(L,)`, `(H, W)` or `(D, H, W)`), explaining class `target` (default: the prediction):

* ``modulator`` (ours, by construction): channel L2 norm of the last stage's modulator ``h(ctx_all)`` (the sound
  paper's activation map, Della Libera et al. 2024), upsampled.
* ``gates`` (ours): channel L2 norm of the last stage's ``L + 1`` gate maps, upsampled. Both need `FocalModulation`
  layers (FocalNet 1D/2D/3D, Focal-UNet encoders); both are class-independent, like the paper's maps.
* ``gradcam``: Grad-CAM (Selvaraju et al. 2017) on the last stage's output, through captum's `LayerGradCam`.
* ``integrated_gradients``: |IG| summed over channels (Sundararajan et al. 2017), captum's `IntegratedGradients`
  with the `baseline` input (default zeros).
* ``random``: uniform noise from a seeded generator; the floor every faithful method must beat.

The post-hoc methods work for any model (HorNet, timm models); the stage for Grad-CAM is the last entry of the
model's `feature_info` unless `layer` is given.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..viz.maps import modulation_maps

__all__ = ["METHODS", "explain", "last_stage"]

METHODS = ("modulator", "gates", "gradcam", "integrated_gradients", "random")
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: torch.Tensor | None = None,
    layer: nn.Module | None = None,
    baseline: float = 0.0,
    ig_steps: int = 32,
    seed: int = 0,
) -> torch.Tensor:
    """The `(B, *S)` attribution map of `method` (one of `METHODS`) for input `x` `(B, C, *S)`.

    Args:
        target: `(B,)` classes to explain for the class-dependent methods; default: the model's prediction.
        layer: the module Grad-CAM attributes to (default: `last_stage(model)`).
        baseline: the reference input value of integrated gradients.
        ig_steps: integration steps of integrated gradients.
        seed: seed of the ``random`` map.
    The model's train/eval flags are restored afterwards and nothing is stored on it.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4, 5):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, C, *S) tensor with 1-3 spatial dims, got {shape}")
    size = x.shape[2:]
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(x.shape[0], *size, generator=generator).to(x.device)
    if method in ("modulator", "gates"):
        maps = modulation_maps(model, x, stages=[-1])[-1]  # last block of the last stage
        value = maps.magnitude if method == "modulator" else torch.linalg.vector_norm(maps.gates, dim=1)
        return _upsample(value[:, None].to(x.device), size)[:, 0]
    with _eval_mode(model), torch.enable_grad():
        if target is None:
            with torch.no_grad():
                target = model(x).argmax(-1)
        if method == "gradcam":
            return _gradcam(model, x, target, layer or last_stage(model))
        return _integrated_gradients(model, x, target, baseline, ig_steps)


def last_stage(model: nn.Module) -> nn.Module:
    """The module named by the last `feature_info` entry (a FocalNet's / HorNet's / timm model's last stage)."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} has no feature_info; pass layer= to choose the Grad-CAM layer")
    last = info[-1] if isinstance(info, (list, tuple)) else info.get_dicts()[-1]
    return model.get_submodule(last["module"])


def _gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    from captum.attr import LayerGradCam

    attr = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)  # (B, 1, *S')
    if attr.ndim != x.ndim:
        raise ValueError(f"Grad-CAM layer output must be channels-first (B, C, *S) like the input; got "
                         f"{tuple(attr.shape)} for an input of {tuple(x.shape)}")
    return _upsample(attr.detach().float(), x.shape[2:])[:, 0]


def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: float,
                          steps: int) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=steps, internal_batch_size=x.shape[0]
    )
    return attr.detach().abs().sum(1).float()


def _upsample(value: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """`(B, C, *S')` -> `(B, C, *size)` by (bi/tri)linear interpolation."""
    return F.interpolate(value.float(), size=tuple(size), mode=_MODES[len(size)], align_corners=False)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training
