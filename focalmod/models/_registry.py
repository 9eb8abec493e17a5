"""Model registry: `create_model`, `list_models`, and every entry in timm's registry with its pretrained cfgs.

Each family module registers `ModelSpec`s with `register_spec`. timm sees every model under ``focalmod_<name>``
(never one of timm's own names), with timm `PretrainedCfg`s per weight tag (``focalmod_focalnet_tiny_srf.ms_in1k``),
so ``timm.create_model("focalmod_focalnet_tiny_srf", pretrained=True)`` and
``focalmod.create_model("focalnet_tiny_srf", pretrained=True)`` both go through timm's builder
(`build_model_with_cfg`): its pretrained-cfg resolution, Hugging Face Hub cache, `pretrained_cfg_overlay`,
input-conv adaptation and `features_only` wrappers. Weights are mapped onto our keys by
`focalmod.checkpoints.checkpoint_filter_fn` (timm, HF transformers, official and our formats).
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import sys
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import (
    PretrainedCfg,
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    resolve_pretrained_cfg,
)
from torch import nn

TIMM_PREFIX = "focalmod_"
_SPECS: dict[str, ModelSpec] = {}
_TIMM_CFG_FIELDS = {f.name for f in fields(PretrainedCfg)}


@dataclass(frozen=True)
class ModelSpec:
    """One named model: its class, constructor arguments, default cfg, weight tags and published numbers.

    `pretrained_cfg` describes the model without weights (input size, normalisation, first conv, classifier, ...).
    `weights` maps a tag (``"ms_in1k"``) to the cfg entries of one weight file (``hf_hub_id``, ``hf_hub_filename``,
    ``url``, ``num_classes`` of its head, ``input_size`` it was trained at, ...); the first tag is the default.
    """

    name: str
    model_cls: Callable[..., nn.Module]
    kwargs: dict[str, Any]
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    params_m: float | None = None  # published parameter count (millions) with the default head
    gmacs: float | None = None  # published GMACs (multiply-add = 1) at pretrained_cfg["input_size"]
    notes: str = ""
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)


def imagenet_cfg(**kwargs: Any) -> dict[str, Any]:
    """The default cfg of an ImageNet classifier with a `stem.proj` first conv and a `head.fc` classifier (FocalNet,
    HorNet); `kwargs` add or replace entries."""
    return {
        "input_size": (3, 224, 224),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.proj",
        "classifier": "head.fc",
        "num_classes": 1000,
        "license": "mit",
        **kwargs,
    }


def register_spec(spec: ModelSpec) -> ModelSpec:
    if spec.name in _SPECS:
        raise ValueError(f"model name {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    _register_in_timm(spec)
    return spec


def get_spec(name: str) -> ModelSpec:
    name = name.split(".", 1)[0]
    if name.startswith(TIMM_PREFIX) and name[len(TIMM_PREFIX) :] in _SPECS:
        name = name[len(TIMM_PREFIX) :]
    if name not in _SPECS:
        close = difflib.get_close_matches(name, list(_SPECS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see focalmod.list_models()"
        raise ValueError(f"unknown model name {name!r}{hint}")
    return _SPECS[name]


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style `pattern` (e.g. ``"focalnet_*_srf"``).

    With ``pretrained=True``: one ``name.tag`` entry per weight file instead (e.g. ``focalnet_tiny_srf.ms_in1k``).
    """
    names = sorted(_SPECS)
    if pretrained:
        names = [f"{n}.{tag}" for n in names for tag in _SPECS[n].weights]
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(
    name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    features_only: bool = False,
    out_indices: int | tuple[int, ...] | None = None,
    strict: bool = True,
    pretrained_cfg: str | dict | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    Args:
        name: a name from `list_models()` (timm's ``focalmod_`` prefix is accepted too), optionally with a weight
            tag: ``"focalnet_tiny_srf.ms_in1k_hf"`` (`list_models(pretrained=True)`).
        pretrained: load the tag's weights through timm's machinery: the Hugging Face Hub cache (shared with timm:
            the `timm/focalnet_*` files are the same), a URL into torch.hub's cache, or a local file given as
            ``pretrained_cfg_overlay=dict(file=path)``. ``HF_HUB_OFFLINE=1`` uses the cache only.
        num_classes: classifier outputs. Default: the variant's (1000 for ImageNet models); with `pretrained`, the
            head of the weights (e.g. 21842 for the ImageNet-22k FocalNets). A different value re-initialises the
            classifier with a warning.
        checkpoint_path: weights in any format `focalmod.load_checkpoint` reads, loaded after construction.
        features_only: return timm's feature wrapper (`FeatureGetterNet` unless ``feature_cls=`` says otherwise)
            giving the levels listed in `feature_info`.
        out_indices: levels to return with `features_only` (default: every stage; the last 3 blocks of an
            isotropic model).
        strict: passed to `load_checkpoint` for `checkpoint_path`.
        pretrained_cfg, pretrained_cfg_overlay, cache_dir: as in `timm.create_model`.
        **overrides: constructor arguments that replace the variant's (e.g. ``in_chans=1, drop_path_rate=0``), and
            timm's ``feature_cls``.
    """
    spec = get_spec(name)
    if "." in name and pretrained_cfg is None:
        pretrained_cfg = name.split(".", 1)[1]
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if features_only:
        overrides["features_only"] = True
    if out_indices is not None:
        overrides["out_indices"] = out_indices
    model = _build(spec, pretrained, pretrained_cfg, pretrained_cfg_overlay, cache_dir, **overrides)
    if checkpoint_path is not None:
        from ..checkpoints import load_checkpoint

        load_checkpoint(model, checkpoint_path, strict=strict)
    return model


class PretrainedWeightsError(FileNotFoundError):
    """Pretrained weights that cannot be found (not in the cache while offline, no such file, no weights)."""


def _build(
    spec: ModelSpec,
    pretrained: bool,
    pretrained_cfg: str | dict | None,
    pretrained_cfg_overlay: dict[str, Any] | None,
    cache_dir: str | os.PathLike | None,
    **overrides: Any,
) -> nn.Module:
    from ..checkpoints import checkpoint_filter_fn

    timm_name = TIMM_PREFIX + spec.name
    kwargs = {**spec.kwargs, **{k: v for k, v in overrides.items() if v is not None}}
    if not pretrained and "num_classes" in spec.pretrained_cfg:
        kwargs.setdefault("num_classes", spec.pretrained_cfg["num_classes"])  # the variant's head, not the tag's
    cfg = resolve_pretrained_cfg(timm_name, pretrained_cfg, pretrained_cfg_overlay)
    if pretrained:
        cfg = _fetch_url_without_file_name(cfg)
    depths = kwargs.get("depths", (1, 1, 1, 1))
    default_out = min(3, depths[0]) if len(depths) == 1 else tuple(range(len(depths)))
    try:
        model = build_model_with_cfg(
            spec.model_cls,
            timm_name,
            pretrained,
            pretrained_cfg=cfg,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(feature_cls="getter", out_indices=default_out, flatten_sequential=True),
            cache_dir=cache_dir,
            **kwargs,
        )
    except TypeError as err:
        raise TypeError(f"create_model({spec.name!r}): {err}") from None
    except (LocalEntryNotFoundError, EntryNotFoundError) as err:
        raise PretrainedWeightsError(_missing_weights_message(spec, cfg, err, cache_dir)) from None
    except RuntimeError as err:
        if "No pretrained weights exist" in str(err):
            tags = ", ".join(spec.weights) or "none"
            raise PretrainedWeightsError(
                f"{spec.name} (tag {cfg.tag or 'default'!r}) has no weight source; tags with weights: {tags}; or "
                "pass pretrained_cfg_overlay=dict(file='/path/to/weights') to load a local file"
            ) from None
        raise
    # Entries timm's PretrainedCfg cannot hold (input size of a 1D/3D model, task), and our architecture name
    # (`focalmod.create_model` takes it back; timm's is "focalmod_" + it).
    target = getattr(model, "model", model)
    extra = {k: v for k, v in spec.pretrained_cfg.items() if k not in _TIMM_CFG_FIELDS or k == "input_size"}
    for m in {id(target): target, id(model): model}.values():
        m.pretrained_cfg = {**m.pretrained_cfg, **extra, **_timm_cfg_entries(spec, cfg.tag), "architecture": spec.name}
        m.default_cfg = m.pretrained_cfg
    return model


def _timm_cfg_entries(spec: ModelSpec, tag: str | None) -> dict[str, Any]:
    """The input size a tag's weights were trained at overrides the variant's (e.g. 384 for the 22k large models)."""
    return {k: v for k, v in spec.weights.get(tag or "", {}).items() if k == "input_size"}


def _missing_weights_message(spec: ModelSpec, cfg: PretrainedCfg, err: Exception, cache_dir: Any) -> str:
    from huggingface_hub import constants

    files = cfg.hf_hub_filename or "model.safetensors or pytorch_model.bin"
    offline = " and HF_HUB_OFFLINE=1 forbids downloading it" if constants.HF_HUB_OFFLINE else ""
    return (
        f"{spec.name}: pretrained weights {files} of the Hugging Face repository {cfg.hf_hub_id} are not in the "
        f"Hub cache ({cache_dir or constants.HF_HUB_CACHE}){offline}. Download them once with network access, or pass "
        f"pretrained_cfg_overlay=dict(file='/path/to/weights'). ({type(err).__name__})"
    )


def _fetch_url_without_file_name(cfg: PretrainedCfg) -> PretrainedCfg:
    """torch.hub names cached downloads after the URL's last path segment; official links like
    ``.../f/<id>/?dl=1`` have none, so those are cached as ``<architecture>.<tag>.pth`` and loaded as a file."""
    from dataclasses import replace
    from urllib.parse import urlparse

    if cfg.file or cfg.state_dict or cfg.hf_hub_id or not cfg.url or os.path.basename(urlparse(cfg.url).path):
        return cfg
    path = Path(torch.hub.get_dir()) / "checkpoints" / f"{cfg.architecture}.{cfg.tag}.pth"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(cfg.url, str(path), progress=False)
    return replace(cfg, file=str(path))


def _timm_cfgs(spec: ModelSpec) -> dict[str, dict[str, Any]]:
    """``{"focalmod_<name>.<tag>": PretrainedCfg fields}`` for timm's registry (an untagged entry when no weights)."""
    base = {k: v for k, v in spec.pretrained_cfg.items() if k in _TIMM_CFG_FIELDS}
    if len(base.get("input_size") or ()) != 3 or "task" in spec.pretrained_cfg:
        base["input_size"] = None  # timm's builder reads in_chans from a 3-entry (C, H, W); 1D/3D/dense: not ours
    timm_name = TIMM_PREFIX + spec.name
    if not spec.weights:
        return {timm_name: base}
    return {f"{timm_name}.{tag}": {**base, **entries} for tag, entries in spec.weights.items()}


def _register_in_timm(spec: ModelSpec) -> None:
    """Register ``focalmod_<name>`` in timm with its pretrained cfgs (read by `register_model` at registration)."""
    timm_name = TIMM_PREFIX + spec.name
    _TIMM_MODULE.default_cfgs.update(generate_default_cfgs(_timm_cfgs(spec)))

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _build(
            spec,
            pretrained,
            kwargs.pop("pretrained_cfg", None),
            kwargs.pop("pretrained_cfg_overlay", None),
            kwargs.pop("cache_dir", None),
            **kwargs,
        )

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
