"""Model registry: `create_model`, `list_models`, and mirroring every entry into timm's registry.

Each family module registers `ModelSpec`s with `register_spec`. timm sees every model under ``focalmod_<name>``
(never one of timm's own names), so ``timm.create_model("focalmod_focalnet_tiny_srf")`` works after
``import focalmod``.
"""
from __future__ import annotations

import difflib
import fnmatch
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from timm.models._features import FeatureGetterNet
from timm.models._registry import register_model
from torch import nn

TIMM_PREFIX = "focalmod_"
_SPECS: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ModelSpec:
    """One named model: its class, constructor arguments, timm-style pretrained cfg and published numbers."""

    name: str
    model_cls: Callable[..., nn.Module]
    kwargs: dict[str, Any]
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    params_m: float | None = None  # published parameter count (millions) with the default head
    gmacs: float | None = None  # published GMACs (multiply-add = 1) at pretrained_cfg["input_size"]
    notes: str = ""


def register_spec(spec: ModelSpec) -> ModelSpec:
    if spec.name in _SPECS:
        raise ValueError(f"model name {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    _register_in_timm(spec.name)
    return spec


def get_spec(name: str) -> ModelSpec:
    if name.startswith(TIMM_PREFIX) and name[len(TIMM_PREFIX) :] in _SPECS:
        name = name[len(TIMM_PREFIX) :]
    if name not in _SPECS:
        close = difflib.get_close_matches(name, list(_SPECS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see focalmod.list_models()"
        raise ValueError(f"unknown model name {name!r}{hint}")
    return _SPECS[name]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style `pattern` (e.g. ``"focalnet_*_srf"``)."""
    names = sorted(_SPECS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(
    name: str,
    num_classes: int | None = None,
    checkpoint_path: str | None = None,
    features_only: bool = False,
    out_indices: int | tuple[int, ...] | None = None,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from `list_models()` (timm's ``focalmod_`` prefix is accepted too).
        num_classes: classifier outputs (default: the variant's, 1000 for ImageNet models).
        checkpoint_path: weights in any format `focalmod.load_checkpoint` reads.
        features_only: return timm's feature wrapper giving the stage outputs listed in `feature_info`.
        out_indices: stages to return with `features_only` (default: all).
        strict: passed to `load_checkpoint`.
        **overrides: constructor arguments that replace the variant's (e.g. ``in_chans=1, drop_path_rate=0``).
    """
    spec = get_spec(name)
    kwargs = {**spec.kwargs, **overrides}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = spec.model_cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"create_model({name!r}): {err}") from None
    model.pretrained_cfg = {**spec.pretrained_cfg, "architecture": spec.name, "num_classes": model.num_classes}
    model.default_cfg = model.pretrained_cfg
    if checkpoint_path is not None:
        from ..checkpoints import load_checkpoint

        load_checkpoint(model, checkpoint_path, strict=strict)
    if features_only:
        indices = out_indices if out_indices is not None else tuple(range(len(model.feature_info)))
        model = FeatureGetterNet(model, out_indices=indices, output_fmt="NCHW")
    return model


_TIMM_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _register_in_timm(name: str) -> None:
    """Register ``focalmod_<name>`` in timm; the entry point ignores timm's pretrained arguments (no downloads)."""
    timm_name = TIMM_PREFIX + name

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise ValueError(f"{timm_name}: no hosted weights; pass checkpoint_path=... to load a local file")
        for key in _TIMM_ARGS:
            kwargs.pop(key, None)
        return create_model(name, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = _TIMM_MODULE.__name__
    register_model(entrypoint)


# timm keys its module index on the entry point's module; give ours a distinct one ("focalmod_models").
_TIMM_MODULE = types.ModuleType("focalmod_models")
_TIMM_MODULE.default_cfgs = {}
sys.modules.setdefault(_TIMM_MODULE.__name__, _TIMM_MODULE)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def example_input(spec: ModelSpec, batch_size: int = 1) -> torch.Tensor:
    """A zero tensor of the spec's default input size."""
    return torch.zeros(batch_size, *spec.pretrained_cfg["input_size"])
