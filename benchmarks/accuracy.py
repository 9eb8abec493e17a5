"""Accuracy at equal budget: each architecture trained by the task CLIs with the same budget on their embedded data.

Each run is ``python -m <task module> <model args> <budget flag> N --out DIR --seed 0`` in a subprocess (the task
owns data, recipe and metrics; without a data argument it uses its embedded dataset); the score is the primary
metric of ``DIR/metrics.json`` (``metric.value``, schema in ``tasks/common/metrics.py``). A task whose CLI is not
installed gives one 'n/a (task not available)' row; a failed run gives its last error line.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focalmod.interpret import METRICS
from tasks.common.metrics import read_metrics

from .measure import REPO_ROOT
from .progress import Progress

ACCURACY_COLUMNS = ["task", "dataset", "model", "params_M", "budget", "metric", "score", "train_time_s", "status"]
INTERPRETABILITY_COLUMNS = ["task", "model", "method", *METRICS]


@dataclass(frozen=True)
class AccuracyTask:
    """A task CLI, its embedded dataset, the compared models (label -> CLI args) and the budget.

    `budget` is (flag, quick value, full value), the same for every model of the task.
    """

    key: str
    module: str
    dataset: str
    models: dict[str, tuple[str, ...]]
    budget: tuple[str, int, int]
    extra_args: tuple[str, ...] = ()
    models_from: str | None = None


def _models(*names: str) -> dict[str, tuple[str, ...]]:
    return {n: ("--model", n) for n in names}


def _model_args(*defaults: dict[str, Any], **kwargs: Any) -> tuple[str, ...]:
    """`--model-arg KEY=VALUE` pairs (JSON values) for tasks.ade20k.train."""
    merged = {k: v for d in defaults for k, v in d.items()} | kwargs
    return tuple(a for k, v in merged.items() for a in ("--model-arg", f"{k}={json.dumps(v)}"))


_HEAD_32 = dict(channels=64, aux_channels=32, drop_path_rate=0.1)  # tasks.ade20k's synthetic preset head

TASKS = {
    "digits": AccuracyTask(
        "digits", "tasks.imagenet.train", "sklearn digits as an ImageNet-layout folder (tasks.imagenet)",
        _models("focalnet_digits"),
        ("--epochs", 1, 10),
        ("--no-progress",),
        models_from="tasks.imagenet.recipe:TASK_MODELS",
    ),
    "sounds": AccuracyTask(
        "sounds", "tasks.audio.esc50", "synthetic ESC-50-format sounds (tasks.audio), held-out fold 1",
        _models("focalnet2d", "focalnet1d", "hornet"),
        ("--epochs", 1, 24),  # the task's default for its synthetic set
        ("--folds", "1", "--no-progress"),
    ),
    "volumes": AccuracyTask(
        "volumes", "tasks.medical.train", "synthetic Decathlon-layout volumes (tasks.medical, 3D segmentation)",
        {"focal_unet": ("--model", "focal_unet"), "focal_unet+gnconv": ("--model", "focal_unet", "--mixer", "gnconv"),
         "unet": ("--model", "unet"), "swin_unetr": ("--model", "swin_unetr")},
        ("--max-steps", 20, 200),
        ("--no-predict", "--no-progress"),
    ),
    # Opt-in (`--accuracy-tasks ... shapes`: ~11 min per backbone on one CPU core): Mask R-CNN on the synthetic
    # shapes, the same detector and recipe with four 4-stage backbones of C = 32, depths 1-1-2-1, from scratch.
    "shapes": AccuracyTask(
        "shapes", "tasks.coco.train", "synthetic COCO-format shapes (tasks.coco, Mask R-CNN + FPN)",
        {"focalnet": ("--backbone", "focalnet_tiny_srf"),  # the task's synthetic preset
         "hornet": ("--backbone", "focalmod_hornet_tiny_7x7", "--backbone-arg", "embed_dim=32", "--backbone-arg",
                    "depths=[1,1,2,1]", "--backbone-arg", "drop_path_rate=0.0"),
         "convnext": ("--backbone", "convnext_atto", "--backbone-arg", "dims=[32,64,128,256]", "--backbone-arg",
                      "depths=[1,1,2,1]"),
         "swin": ("--backbone", "swin_tiny_patch4_window7_224", "--backbone-arg", "embed_dim=32", "--backbone-arg",
                  "depths=[1,1,2,1]", "--backbone-arg", "num_heads=[1,2,4,8]", "--backbone-arg", "window_size=4",
                  "--backbone-arg", "drop_path_rate=0.0")},
        ("--epochs", 2, 24),
        ("--no-progress",),
    ),
    # Opt-in (`--accuracy-tasks ... scenes`: ~8 min per backbone on one CPU core): UPerNet on the synthetic
    # ADE20K-layout scenes, the same heads (64 channels) and recipe with four 4-stage backbones of C = 32,
    # depths 1-1-2-1, from scratch; the focalnet row is the task's synthetic preset.
    "scenes": AccuracyTask(
        "scenes", "tasks.ade20k.train", "synthetic ADE20K-layout scenes (tasks.ade20k, UPerNet)",
        {"focalnet": (),
         "hornet": ("--backbone", "hornet_tiny_7x7", *_model_args(_HEAD_32, embed_dim=32, depths=[1, 1, 2, 1])),
         "convnext": ("--backbone", "convnext_atto",
                      *_model_args(_HEAD_32, dims=[32, 64, 128, 256], depths=[1, 1, 2, 1])),
         "swin": ("--backbone", "swin_tiny_patch4_window7_224",
                  *_model_args(_HEAD_32, embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=6,
                               img_size=96, strict_img_size=False))},
        ("--max-iters", 100, 800),
        ("--no-progress", "--print-every", "0"),
    ),
}
DEFAULT_TASKS = ["digits", "sounds", "volumes"]


def task_models(task: AccuracyTask) -> dict[str, tuple[str, ...]]:
    """The task's models: the presets the task itself defines for its embedded data when it has such a table
    (`models_from`, 'module:ATTRIBUTE'), else the static list."""
    if task.models_from:
        module, attr = task.models_from.split(":")
        try:
            names = list(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            names = []
        if names:
            return _models(*names)
    return task.models


def task_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def run_accuracy(tasks: list[str], out_dir: Path, quick: bool, timeout_s: float, budget: int | None = None,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
    """Train each task's models on the same budget and collect one row per run (see `ACCURACY_COLUMNS`).

    `budget` replaces every task's default budget value (epochs or steps, per the task's flag). With `progress`,
    a run finished earlier with the same command line is not repeated (failed runs are).
    """
    rows: list[dict[str, Any]] = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    for key in tasks:
        if key not in TASKS:
            raise ValueError(f"accuracy task must be one of {sorted(TASKS)}, got {key!r}")
        task = TASKS[key]
        flag, quick_value, full_value = task.budget
        value = budget if budget is not None else quick_value if quick else full_value
        if not task_available(task.module):
            rows.append(dict(task=key, dataset=task.dataset, model="all", budget=f"{flag} {value}",
                             status="n/a (task not available)"))
            continue
        for label, model_args in task_models(task).items():
            run_dir = out_dir / "accuracy" / key / label.replace("+", "_")
            cmd = [sys.executable, "-m", task.module, *model_args, flag, str(value), "--out", str(run_dir),
                   "--seed", "0", *task.extra_args]
            row: dict[str, Any] = dict(task=key, dataset=task.dataset, model=label, budget=f"{flag} {value}")
            signature = dict(command=cmd[1:], timeout_s=timeout_s)
            stored = progress.get("accuracy", str(run_dir), signature) if progress is not None else None
            if stored:
                rows.append(stored[0])
                continue
            rows.append(row)
            start = time.perf_counter()
            _run_one(cmd, run_dir, row, timeout_s, env)
            if progress is not None and row.get("status") == "ok":
                progress.add("accuracy", str(run_dir), signature, [row], time.perf_counter() - start)
    return rows


def _run_one(cmd: list[str], run_dir: Path, row: dict[str, Any], timeout_s: float, env: dict[str, str]) -> None:
    """Run one training subprocess and fill `row` with its score and status."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        row["status"] = f"timeout (> {timeout_s:.0f} s)"
        return
    row["train_time_s"] = round(time.perf_counter() - start, 1)
    metrics_file = run_dir / "metrics.json"
    if proc.returncode != 0 or not metrics_file.is_file():
        tail = (proc.stderr.strip().splitlines() or ["no metrics.json written"])[-1][:160]
        row["status"] = f"error: {tail}"
        return
    try:
        metrics = read_metrics(metrics_file)
    except ValueError as err:
        row["status"] = f"error: {str(err)[:200]}"
        return
    score, params_m = metrics["metric"], metrics["params_m"]
    row.update(metric=score["name"], score=None if score["value"] is None else round(score["value"], 4),
               params_M=None if params_m is None else round(params_m, 3), status="ok")
    if metrics.get("interpretability"):
        row["interpretability"] = metrics["interpretability"]


def interpretability_rows(acc_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, model, explanation method) of the accuracy runs that scored explanations (their
    metrics.json "interpretability"; see `focalmod.interpret.METRICS` for the metrics and their directions)."""
    return [dict(task=r["task"], model=r["model"], method=method, **{k: scores.get(k) for k in METRICS})
            for r in acc_rows for method, scores in (r.get("interpretability") or {}).items()]
