"""Reading and writing checkpoint files safely: `torch.load(weights_only=True)` or safetensors, nothing else.

`read_checkpoint` returns the file's top-level object; `read_state_dict` also unwraps training containers
(`state_dict`, `model_state_dict`, `model`, `module`) down to a flat ``{name: tensor}`` dict. Every failure is a
`CheckpointError` (a `ValueError`) that names the file and says what was expected; a missing file is a
`FileNotFoundError`.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import struct
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "atomic_write",
    "read_checkpoint",
    "read_state_dict",
    "save_checkpoint",
    "unwrap_model",
    "unwrap_state_dict",
]

PathLike = str | os.PathLike
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module")
# Files inside a Hugging Face / timm model directory, in the order they are tried.
DIR_CANDIDATES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (message names the file and the keys)."""


def _is_safetensors(path: Path) -> bool:
    """safetensors files start with a little-endian u64 header length followed by a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= path.stat().st_size - 8


def _resolve(path: PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        for name in DIR_CANDIDATES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} is a directory with no {' or '.join(DIR_CANDIDATES)}; pass a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); expected a .pth/.pt/.bin/.ckpt or .safetensors checkpoint")
    return path


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError / OSError types
        raise CheckpointError(f"{path} is not a valid safetensors file (corrupt or truncated?): {err}") from None


def _unsafe_global(err: BaseException) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    return match.group(1) if match else None


def _load_pickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        name = _unsafe_global(err)
        if name is not None:
            raise CheckpointError(
                f"refused to load {path}: its pickle references {name!r}, which is not a tensor or plain container. "
                "A checkpoint like this can run arbitrary code when unpickled, so it is only ever read with "
                "torch.load(weights_only=True) and nothing in it was executed (a truncated old-format file can "
                "also look like this). If you trust the file, re-save just its state_dict."
            ) from None
        raise CheckpointError(
            f"refused to load {path}: torch.load(weights_only=True) rejected its pickle ({str(err).splitlines()[-1]}); "
            "it is corrupt, not a PyTorch checkpoint, or holds Python objects other than tensors and containers. "
            "Nothing in it was executed."
        ) from None
    except Exception as err:  # EOFError, RuntimeError (zip), KeyError/IndexError (garbage), ...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt or another file type): {reason}"
        ) from None


def read_checkpoint(path: PathLike) -> Any:
    """The top-level object of a `.pth/.pt/.bin/.ckpt` (weights-only unpickling) or `.safetensors` file.

    A directory holding ``model.safetensors`` or ``pytorch_model.bin`` (Hugging Face layout) is accepted too.
    """
    path = _resolve(path)
    if path.suffix == ".safetensors" or _is_safetensors(path):
        return _load_safetensors(path)
    return _load_pickle(path)


def unwrap_state_dict(obj: Any, source: str = "<state_dict>") -> dict[str, torch.Tensor]:
    """Descend through `state_dict` / `model_state_dict` / `model` / `module` entries to the tensors.

    Lightning, timm-train, official and mmdet checkpoints keep the weights under one of these keys next to
    optimizer state and metadata; non-tensor entries left at the weights' level are dropped.
    """
    while isinstance(obj, Mapping) and not _all_tensors(obj):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise CheckpointError(
            f"{source}: no weights found (top-level keys: {keys or 'none'}); expected tensors directly or under one "
            f"of {', '.join(CONTAINER_KEYS)}"
        )
    return tensors


def _all_tensors(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` weights of a checkpoint file, containers unwrapped, keys unchanged."""
    return unwrap_state_dict(read_checkpoint(path), str(path))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside DDP/DataParallel (`.module`), `torch.compile` (`._orig_mod`) or timm's feature wrapper."""
    from timm.models._features import FeatureGetterNet

    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(model, FeatureGetterNet):
            model = model.model
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def atomic_write(path: PathLike, data: str | bytes | memoryview) -> Path:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over `path`, so a crash or a full disk never leaves a half-written file and never destroys the
    previous version. The one atomic writer of the project (`tasks.common.files` re-exports it)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(model: nn.Module, path: PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `model`'s weights in focalmod's own format, atomically (temp file + rename).

    `.safetensors`: the state dict with metadata ``format``, ``model`` (architecture name) and
    ``focalmod_version``. Anything else: ``torch.save({"state_dict", "model", "focalmod_version", **extra})``,
    readable with ``weights_only=True`` as long as `extra` holds plain Python values.
    """
    from .. import __version__

    path = Path(path).expanduser()
    module = unwrap_model(model)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    arch = str(getattr(module, "pretrained_cfg", {}).get("architecture", type(module).__name__))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        meta = {"format": "focalmod", "model": arch, "focalmod_version": __version__}
        meta.update({str(k): str(v) for k, v in (extra or {}).items()})
        data = save(state_dict, metadata=meta)
    else:
        buffer = io.BytesIO()
        torch.save({"state_dict": state_dict, "model": arch, "focalmod_version": __version__, **(extra or {})}, buffer)
        data = buffer.getbuffer()
    atomic_write(path, data)
    return path
