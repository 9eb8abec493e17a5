"""`load_checkpoint`: read any supported file, find the model's weights in it, convert keys, load, report.

Pipeline (generic; only step 3 is per model family):
1. read the file safely and unwrap training containers (`io.read_state_dict`);
2. find where the model's weights live from *sentinel* key suffixes (e.g. ``stem.proj.weight`` under
   ``model.`` for a Lightning checkpoint, ``module.`` for DDP, ``backbone.`` for mmdet) and keep only those;
3. convert the keys with the converter registered for the model's class (`register_converter`);
4. reshape 1x1-conv weights to Linear, re-initialise a classifier whose shape differs (with a warning), and
   load; with ``strict=True`` any other difference raises one `CheckpointError` listing every key by name.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from timm.models._features import FeatureGetterNet
from torch import nn

from .io import CheckpointError, read_state_dict, unwrap_model, unwrap_state_dict

__all__ = [
    "Converted",
    "LoadReport",
    "checkpoint_filter_fn",
    "find_prefix",
    "load_checkpoint",
    "register_converter",
    "reshape_like",
]

# Wrappers whose prefix is always stripped when every key carries it (DDP, torch.compile).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIST_LIMIT = 40


@dataclass
class Converted:
    """A converter's result: weights under the model's keys, plus what it decided on the way."""

    state_dict: dict[str, torch.Tensor]
    format: str = "focalmod"
    ignored: list[str] = field(default_factory=list)  # checkpoint keys dropped on purpose (e.g. mmdet norm0..2)
    initialised: list[str] = field(default_factory=list)  # model keys left at their init on purpose (surgery)
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What `load_checkpoint` did; `missing`/`unexpected`/`mismatched` are non-empty only with ``strict=False``."""

    source: str
    format: str = "unknown"
    prefix: str = ""
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Converter = Callable[[dict[str, torch.Tensor], nn.Module], "dict[str, torch.Tensor] | Converted"]
_CONVERTERS: dict[type, tuple[Converter, tuple[str, ...]]] = {}


def register_converter(model_cls: type, fn: Converter, sentinels: tuple[str, ...] = ()) -> None:
    """Use `fn(state_dict, model)` to map checkpoints onto `model_cls` (and subclasses).

    `fn` returns a dict under the model's keys or a `Converted`. `sentinels` are key suffixes that mark the
    root of this family's weights in any format it reads (e.g. ``"patch_embed.proj.weight"``), used to find
    and strip wrapper prefixes; the model's own first key is always tried too.
    """
    _CONVERTERS[model_cls] = (fn, tuple(sentinels))


def _converter_for(model: nn.Module) -> tuple[Converter | None, tuple[str, ...]]:
    for cls in type(model).__mro__:
        if cls in _CONVERTERS:
            return _CONVERTERS[cls]
    return None, ()


def find_prefix(keys: list[str], sentinels: tuple[str, ...], source: str = "<state_dict>") -> str | None:
    """The prefix in front of the first sentinel suffix found in `keys`; None when no sentinel occurs.

    Several distinct prefixes (e.g. a Lightning module holding ``model.`` and ``ema.`` copies) are ambiguous
    unless one of them is the empty prefix: raise and ask for ``prefix=``.
    """
    for sentinel in sentinels:
        found = {k[: -len(sentinel)] for k in keys if k == sentinel or k.endswith("." + sentinel)}
        if not found:
            continue
        if "" in found:
            return ""
        if len(found) > 1:
            options = ", ".join(repr(p) for p in sorted(found))
            raise CheckpointError(
                f"{source}: model weights found under several prefixes ({options}); pass prefix=... to choose one"
            )
        return found.pop()
    return None


def _strip(state_dict: dict[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    kept = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return kept, [k for k in state_dict if not k.startswith(prefix)]


def reshape_like(value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`value` reshaped to `shape` when they differ only by size-1 dims (1x1 conv <-> Linear); else unchanged."""
    if value.shape != shape and value.numel() == shape.numel():
        if [d for d in value.shape if d != 1] == [d for d in shape if d != 1]:
            return value.reshape(shape)
    return value


def _classifier_prefix(model: nn.Module) -> str | None:
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        for name, module in model.named_modules():
            if module is head and name:
                return name + "."
    name = getattr(model, "pretrained_cfg", {}).get("classifier")
    return f"{name}." if name else None


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f", ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"  {title} ({len(items)}): {shown}{more}"


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    strict: bool = True,
    prefix: str | None = None,
) -> LoadReport:
    """Load weights from any supported format into `model` (in place) and return a `LoadReport`.

    Args:
        model: the network (DDP / `torch.compile` / timm feature wrappers are looked through).
        path_or_state_dict: a `.pth/.pt/.bin/.ckpt/.safetensors` file (or HF model directory), or an in-memory
            checkpoint / state dict.
        strict: raise one `CheckpointError` listing missing, unexpected and shape-mismatched keys. A classifier
            of another size (or none in the checkpoint) is re-initialised with a warning in either mode.
        prefix: key prefix holding the weights (auto-detected; needed only when a file holds several copies).
    """
    target, state_dict, report = _convert(model, path_or_state_dict, prefix)
    # timm's feature wrapper prunes the final norm/head: checkpoint keys for the pruned parts are not an error
    pruned = isinstance(model, FeatureGetterNet)
    to_load = _reconcile(target, state_dict, report, strict, ignore_unexpected=pruned)
    target.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: any checkpoint `load_checkpoint` reads -> `model`'s keys and shapes.

    Strict like `load_checkpoint`, except that a classifier of another size is dropped with a warning (the model
    keeps its fresh head) and the first conv may differ in input channels (timm's loader adapts it next).
    """
    target, converted, report = _convert(model, state_dict, None)
    first_conv = getattr(target, "pretrained_cfg", {}).get("first_conv")
    adapt = (f"{first_conv}.weight",) if isinstance(first_conv, str) else ()
    return _reconcile(target, converted, report, strict=True, adapt=adapt)


def _convert(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, Any], prefix: str | None
) -> tuple[nn.Module, dict[str, torch.Tensor], LoadReport]:
    """Steps 1-3: read, find the prefix, convert the keys. Returns the unwrapped model, the weights, the report."""
    target = unwrap_model(model)
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = str(path_or_state_dict)
        state_dict = read_state_dict(path_or_state_dict)
    else:
        source = "<state_dict>"
        state_dict = unwrap_state_dict(path_or_state_dict, source)
    report = LoadReport(source=source)

    converter, sentinels = _converter_for(target)
    own_keys = list(target.state_dict())
    if prefix is None:
        prefix = find_prefix(list(state_dict), sentinels + tuple(own_keys[:1]), source)
    if prefix is None:  # nothing recognisable: at least look through DDP / compile wrappers
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state_dict)), "")
    state_dict, report.ignored = _strip(state_dict, prefix)
    report.prefix = prefix
    if not state_dict:
        raise CheckpointError(f"{source}: no keys start with prefix {prefix!r}")

    try:
        converted = converter(state_dict, target) if converter is not None else state_dict
    except CheckpointError:
        raise
    except ValueError as err:  # surgery that cannot adapt the weights (e.g. fewer focal levels than the file)
        raise CheckpointError(f"{source}: {err}") from err
    if not isinstance(converted, Converted):
        converted = Converted(dict(converted), format="focalmod" if converter is None else "converted")
    report.format = converted.format
    report.ignored += converted.ignored
    report.initialised += converted.initialised
    report.notes += converted.notes
    return target, converted.state_dict, report


def _reconcile(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    report: LoadReport,
    strict: bool,
    ignore_unexpected: bool = False,
    adapt: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Step 4: compare with the model's keys and shapes, handle the classifier, raise or warn; the tensors to load.

    Keys in `adapt` may differ in shape (they are kept for the caller to adapt).
    """
    expected = model.state_dict()
    state_dict = {k: reshape_like(v, expected[k].shape) if k in expected else v for k, v in state_dict.items()}
    missing = [k for k in expected if k not in state_dict and k not in report.initialised]
    unexpected = [k for k in state_dict if k not in expected]
    if ignore_unexpected:
        report.ignored += unexpected
        unexpected = []
    mismatched = [
        k for k in state_dict if k in expected and state_dict[k].shape != expected[k].shape and k not in adapt
    ]

    head = _classifier_prefix(model)
    if head is not None:
        model_head = [k for k in expected if k.startswith(head)]
        ckpt_head = [k for k in state_dict if k.startswith(head)]
        if not model_head and ckpt_head:  # num_classes=0: the checkpoint's classifier is not needed
            unexpected = [k for k in unexpected if k not in ckpt_head]
            report.ignored += ckpt_head
            for k in ckpt_head:
                state_dict.pop(k)
        elif model_head and all(k in missing or k in mismatched for k in model_head):
            shapes = ", ".join(
                f"{k} {tuple(state_dict[k].shape) if k in state_dict else 'absent'} vs model {tuple(expected[k].shape)}"
                for k in model_head
            )
            warnings.warn(
                f"{report.source}: classifier does not match ({shapes}); keeping the model's freshly initialised "
                "classifier (fine-tune it)",
                stacklevel=3,
            )
            missing = [k for k in missing if k not in model_head]
            mismatched = [k for k in mismatched if k not in model_head]
            report.initialised += model_head
            for k in ckpt_head:
                state_dict.pop(k)

    report.missing, report.unexpected = missing, unexpected
    report.mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched
    ]
    problems = [
        _listing(title, items)
        for title, items in (
            ("missing keys", report.missing),
            ("unexpected keys", report.unexpected),
            ("shape mismatches", report.mismatched),
        )
        if items
    ]
    if problems and strict:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise CheckpointError(
            f"{report.source} ({report.format} format) does not fit {arch}:\n" + "\n".join(problems)
            + "\nUse strict=False to load the matching tensors anyway."
        )
    if problems:
        warnings.warn(
            f"{report.source}: loaded non-strictly, skipping:\n" + "\n".join(problems), stacklevel=3
        )
    return {k: v for k, v in state_dict.items() if k in expected and k not in mismatched}
