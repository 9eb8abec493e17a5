"""Run directories: one per run, holding the resolved config, logs, checkpoints and `metrics.json`."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from .cli import TaskError
from .files import atomic_write


def make_run_dir(task: str, out: Path | None = None, root: Path = Path("runs")) -> Path:
    """`out`, or a new `runs/<task>/<timestamp>` (suffixed if taken) - existing runs are never reused."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise TaskError(f"--out: {out} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = root / task / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise TaskError(f"could not create a fresh run directory under {root / task}")


def resolve_resume(resume: Path | None) -> tuple[Path | None, Path | None]:
    """`--resume` -> (run dir, checkpoint). Accepts a run directory or a `.ckpt` inside `<run>/checkpoints/`."""
    if resume is None:
        return None, None
    resume = Path(resume)
    if resume.is_dir():
        ckpt = resume / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise TaskError(f"--resume: no checkpoints/last.ckpt in {resume}")
        return resume, ckpt
    if resume.is_file():
        run_dir = resume.parent.parent if resume.parent.name == "checkpoints" else resume.parent
        return run_dir, resume
    raise TaskError(f"--resume: {resume} is neither a run directory nor a checkpoint file")


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


def save_config(run_dir: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    """The resolved configuration, loadable again with `--config`."""
    path = Path(run_dir) / name
    atomic_write(path, yaml.safe_dump(_plain(config), sort_keys=True))
    return path


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """`metrics.json` (NaN/inf become null so the file stays valid JSON)."""

    def clean(v: Any) -> Any:
        v = _plain(v)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    path = Path(run_dir) / "metrics.json"
    atomic_write(path, json.dumps(clean(metrics), indent=2, sort_keys=True) + "\n")
    return path
