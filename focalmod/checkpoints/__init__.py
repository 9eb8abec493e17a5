"""Checkpoint loading from every format FocalNet weights ship in (reference focalnet.md Sec. 5), safely.

`load_checkpoint(model, path_or_state_dict, strict=True)` reads official Microsoft `.pth`, mmdet backbone,
timm, HF transformers, our own and `.safetensors` files; pickles are only read with
``torch.load(weights_only=True)``. Each model family registers a key converter with `register_converter`
(one module per family, imported below).
"""
from . import focalnet, hornet, mmseg  # noqa: F401  (register the FocalNet, HorNet and UPerNet converters)
from .io import CheckpointError, read_checkpoint, read_state_dict, save_checkpoint, unwrap_model, unwrap_state_dict
from .loading import (
    Converted,
    LoadReport,
    checkpoint_filter_fn,
    find_prefix,
    load_checkpoint,
    register_converter,
    reshape_like,
)
from .surgery import expand_focal_projection, resize_kernel

__all__ = [
    "CheckpointError",
    "Converted",
    "LoadReport",
    "checkpoint_filter_fn",
    "expand_focal_projection",
    "find_prefix",
    "load_checkpoint",
    "read_checkpoint",
    "read_state_dict",
    "register_converter",
    "reshape_like",
    "resize_kernel",
    "save_checkpoint",
    "unwrap_model",
    "unwrap_state_dict",
]
