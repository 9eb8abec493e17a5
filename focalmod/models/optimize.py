"""`focalmod.optimize`: pick a model's execution path once, for the device and dtype it will run on.

Models are built on the plain PyTorch path (scriptable, traceable, exportable, compilable; the reference every other
path is tested against) and nothing in `forward` chooses a path per call. This one explicit call moves the model
and selects:

* ``compile=True``: additionally `torch.compile` the model chosen below (on CPU for inference with inductor's weight
  freezing, `compile_frozen`); the oneDNN fast modules call their fused ops through `torch.library` custom ops, so
  inductor runs them as extern kernels and fuses the pointwise ops around them (compiled training keeps the plain
  or recomputing modules, without freezing);
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

__all__ = ["FrozenCompiled", "compile_frozen", "optimize", "restore_plain"]


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
        compile: also compile the model (with inductor weight freezing for CPU inference, `compile_frozen`) and
            return the compiled module.
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
    fast = device.type == "cpu" and param is not None and param.dtype == torch.float32 and not recompute
    if fast and (inference or not compile):  # compiled training keeps the plain modules for inductor
        if HAS_MKLDNN_FUSED:
            use_cpu_fast_path(model, autograd=not inference)
        else:
            warnings.warn("focalmod.optimize: this torch build has no oneDNN fused ops; keeping the plain path",
                          stacklevel=2)
    if compile:
        return compile_frozen(model) if inference and device.type == "cpu" else torch.compile(model)
    return model


class FrozenCompiled(nn.Module):
    """`torch.compile(model)` for CPU inference with inductor's weight freezing (parameters become constants:
    inductor prepacks the weights of the linears and convs it lowers and folds constant expressions).

    Freezing has to be on while Dynamo traces (that is when it decides whether parameters are graph inputs or
    constants), and ``torch.compile(options={"freezing": True})`` only reaches inductor: Dynamo then lifts the
    parameters as inputs and nothing is frozen (torch 2.11). So every call runs the compiled model under
    ``torch._inductor.config.patch(freezing=True)``, instead of flipping the process-wide flag for every other
    compiled model. As with freezing in general, the weights must not change after the first call, and calls need
    autograd off (`torch.no_grad` / `torch.inference_mode`; with gradients enabled nothing is frozen).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model  # torch.compile's name for it: state-dict keys as in an `OptimizedModule`
        self.__dict__["_compiled"] = torch.compile(model)  # not a submodule: its keys would repeat `_orig_mod`'s

    def forward(self, *args, **kwargs):
        from torch._inductor import config as inductor_config  # not at import: importing inductor takes seconds

        with inductor_config.patch(freezing=True):
            return self._compiled(*args, **kwargs)


def compile_frozen(model: nn.Module) -> nn.Module:
    """`model` compiled with inductor weight freezing for CPU inference (see `FrozenCompiled`); any module."""
    return FrozenCompiled(model)


def restore_plain(model: nn.Module) -> nn.Module:
    """Put every module swapped by `optimize` back on the plain path (in place); returns `model`."""
    use_plain_path(model)
    use_plain_modules(model)
    return model
