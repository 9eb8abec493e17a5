"""`focalmod.optimize`: pick a model's execution path once, for the device and dtype it will run on.

Models are built on the plain PyTorch path (scriptable, traceable, exportable, compilable; the reference every other
path is tested against) and nothing in `forward` chooses a path per call. This one explicit call moves the model
and selects:

* ``compile=True``: `torch.compile` (public API; on CPU for inference with inductor's weight freezing), plain modules;
* ``recompute=True`` (training): the recomputing modules (`focalmod.layers.recompute`: GELU outputs and the focal
  levels are recomputed in backward instead of saved; same numbers and gradients, fewer activation bytes), on any
  device and dtype, instead of the oneDNN training modules;
* otherwise, fp32 on CPU with oneDNN available: the oneDNN fast modules (`focalmod.layers._cpu_fastpath`), in their
  inference or training mode;
* anything else (GPU, bf16/fp16, no oneDNN): the plain modules.

Activation checkpointing of whole blocks (recompute everything, the least memory) stays timm's
``model.set_grad_checkpointing()``; it combines with ``recompute=True``.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..layers._cpu_fastpath import HAS_MKLDNN_FUSED, use_cpu_fast_path, use_plain_path
from ..layers.recompute import use_plain_modules, use_recompute

__all__ = ["optimize", "restore_plain"]


def optimize(
    model: nn.Module,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    inference: bool = True,
    compile: bool = False,
    channels_last: bool = False,
    recompute: bool = False,
) -> nn.Module:
    """Move `model` to `device`/`dtype` and choose its fastest execution path once (see the module docstring).

    Args:
        model: any module holding focalmod layers (FocalNet, HorNet, Focal-UNet, timm feature wrappers, ...).
        device, dtype: where and in which dtype it will run (`dtype=None` keeps the current one).
        inference: ``True`` for forward passes without autograd (the fused oneDNN ops have no backward: calling
            the model with gradients enabled then raises), ``False`` for training.
        compile: return ``torch.compile(model)`` instead of swapping modules (with inductor weight freezing for
            CPU inference).
        channels_last: also convert 4-D/5-D parameters to channels-last memory.
        recompute: training with fewer activations saved for backward (needs ``inference=False``; see above).

    Returns the model (modified in place), or the compiled module with ``compile=True``.
    """
    if recompute and inference:
        raise ValueError("focalmod.optimize: recompute=True saves activations for backward; it needs inference=False")
    device = torch.device(device)
    model.to(device=device, dtype=dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    param = next(model.parameters(), None)
    use_plain_path(model)
    use_plain_modules(model)
    if recompute:
        use_recompute(model)
    if compile:
        freeze = inference and device.type == "cpu"
        return torch.compile(model, options={"freezing": True} if freeze else None)
    if device.type == "cpu" and param is not None and param.dtype == torch.float32 and not recompute:
        if HAS_MKLDNN_FUSED:
            use_cpu_fast_path(model, autograd=not inference)
        else:
            warnings.warn("focalmod.optimize: this torch build has no oneDNN fused ops; keeping the plain path",
                          stacklevel=2)
    return model


def restore_plain(model: nn.Module) -> nn.Module:
    """Put every module swapped by `optimize` back on the plain path (in place); returns `model`."""
    use_plain_path(model)
    use_plain_modules(model)
    return model
