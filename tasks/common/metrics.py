"""`metrics.json`: the one schema every training task writes (built and checked by `tasks.common.lifecycle`).

    {
      "schema": 1,
      "task": "imagenet",                      # Task.name
      "preset": "digits",                      # the preset the options came from (tasks/<task>/presets/<name>.yaml)
      "data": "/data/imagenet",                # what was trained and evaluated on (a path or a description)
      "split": "val",                          # the split the metric was measured on
      "metric": {"name": "top1", "value": 0.97},        # the primary metric; value null if it could not be computed
      "baseline": {"name": "logistic regression", "value": 0.91} | null,  # a simple model on the same split, in
                                                                          # the same metric
      "params_m": 0.81,                        # trained model parameters, millions
      "timing": {"wall_seconds": 95.1, "train_seconds": 80.3},  # whole run; inside Trainer.fit (all fits summed)
      "versions": {"python": "3.11.7", "torch": "2.11.0", ...},
      "git_commit": "<40 hex>[-dirty]" | null, # the checkout the code ran from; -dirty: with uncommitted changes
      "command": "python -m tasks.imagenet.train --epochs 2",
      "resumed_from": "<run>/checkpoints/last.ckpt" | null,
      "interpretability": {method: {metric: value}} | null,
      ...                                      # task-specific numbers (top5, per-class Dice, COCO stats, ...)
    }

Readers take the score from `metrics["metric"]["value"]` (`read_metrics` checks the file first). Task-specific keys
sit beside the shared ones and may not reuse their names.
"""
from __future__ import annotations

import json
import math
import platform
import subprocess
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable, Mapping

SCHEMA_VERSION = 1
SHARED_KEYS = ("schema", "task", "preset", "data", "split", "metric", "baseline", "params_m", "timing", "versions",
               "git_commit", "command", "resumed_from", "interpretability")
BASE_DISTRIBUTIONS = ("lightning", "timm", "numpy")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Score:
    """A named number: the primary metric (`Score("top1", 0.97)`) or a baseline (`Score("MFCC + LR", 0.61)`, in the
    primary metric's units). `value` None: it could not be computed (e.g. no object detected for COCO AP)."""

    name: str
    value: float | None


@dataclass
class Summary:
    """What a task's `run` returns: the final numbers of the run, written to `metrics.json` by the lifecycle.

    `extras` holds the task-specific numbers (any JSON-able values) that go beside the shared keys;
    `interpretability` is `{method: {metric: value}}` where a task measures explanations. `skipped`: inputs a
    verb could not read (predict); metrics.json lists them under "skipped" and the command then exits non-zero."""

    metric: Score
    data: str
    split: str
    params_m: float | None
    extras: dict[str, Any] = field(default_factory=dict)
    baseline: Score | None = None
    interpretability: dict[str, dict[str, float | None]] | None = None
    skipped: list[str] = field(default_factory=list)


def build_metrics(summary: Summary, task: str, preset: str | None, timing: Mapping[str, float], command: str,
                  resumed_from: str | None, distributions: Iterable[str] = ()) -> dict[str, Any]:
    """The `metrics.json` content for `summary` (checked with `check_metrics`)."""
    clash = sorted(set(summary.extras) & set(SHARED_KEYS))
    if clash:
        raise ValueError(f"task extras may not reuse the shared metrics.json keys: {', '.join(clash)}")
    metrics = {
        "schema": SCHEMA_VERSION, "task": task, "preset": preset, "data": str(summary.data), "split": summary.split,
        "metric": _score(summary.metric), "baseline": _score(summary.baseline) if summary.baseline else None,
        "params_m": None if summary.params_m is None else round(float(summary.params_m), 4),
        "timing": {k: round(float(v), 3) for k, v in timing.items()},
        "versions": library_versions(distributions), "git_commit": git_commit(), "command": command,
        "resumed_from": resumed_from, "interpretability": summary.interpretability, **summary.extras,
    }
    if summary.skipped:
        metrics["skipped"] = list(summary.skipped)
    return check_metrics(metrics)


def _score(score: Score) -> dict[str, Any]:
    value = None if score.value is None or not math.isfinite(float(score.value)) else float(score.value)
    return {"name": score.name, "value": value}


def check_metrics(metrics: Mapping[str, Any], source: str = "metrics.json") -> dict[str, Any]:
    """`metrics` if it follows the schema above; else a `ValueError` naming `source` and the first bad field."""

    def fail(what: str) -> None:
        raise ValueError(f"{source}: {what} (schema {SCHEMA_VERSION}, see tasks/common/metrics.py)")

    if not isinstance(metrics, Mapping):
        fail(f"expected a JSON object, got {type(metrics).__name__}")
    missing = [k for k in SHARED_KEYS if k not in metrics]
    if missing:
        fail(f"missing key(s) {', '.join(missing)}")
    if metrics["schema"] != SCHEMA_VERSION:
        fail(f"schema is {metrics['schema']!r}, this reader knows {SCHEMA_VERSION}")
    for key in ("task", "data", "split", "command"):
        if not isinstance(metrics[key], str) or not metrics[key]:
            fail(f"{key} must be a non-empty string, got {metrics[key]!r}")
    for key in ("metric", "baseline"):
        score = metrics[key]
        if score is None and key == "baseline":
            continue
        if not isinstance(score, Mapping) or set(score) != {"name", "value"} or not isinstance(score["name"], str):
            fail(f"{key} must be {{'name': str, 'value': number or null}}, got {score!r}")
        if score["value"] is not None and not _is_number(score["value"]):
            fail(f"{key}.value must be a number or null, got {score['value']!r}")
    if metrics["params_m"] is not None and not _is_number(metrics["params_m"]):
        fail(f"params_m must be a number or null, got {metrics['params_m']!r}")
    for key in ("timing", "versions"):
        if not isinstance(metrics[key], Mapping):
            fail(f"{key} must be an object, got {metrics[key]!r}")
    if not all(_is_number(v) for v in metrics["timing"].values()):
        fail(f"timing values must be seconds, got {metrics['timing']!r}")
    explained = metrics["interpretability"]
    if explained is not None and not (isinstance(explained, Mapping) and all(
            isinstance(per_method, Mapping) and all(v is None or _is_number(v) for v in per_method.values())
            for per_method in explained.values())):
        fail(f"interpretability must be {{method: {{metric: number or null}}}}, got {explained!r}")
    return dict(metrics)


def read_metrics(path: Path | str) -> dict[str, Any]:
    """A run's `metrics.json`, checked against the schema (`ValueError` naming the file if it is not)."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None
    return check_metrics(metrics, str(path))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def library_versions(distributions: Iterable[str] = ()) -> dict[str, str]:
    """Python, focalmod, torch (with its build tag) and CUDA, and the installed versions of the base libraries plus
    `distributions` (the task's own)."""
    import torch

    import focalmod

    versions = {"python": platform.python_version(), "focalmod": focalmod.__version__, "torch": torch.__version__,
                "cuda": str(torch.version.cuda)}
    for name in dict.fromkeys([*BASE_DISTRIBUTIONS, *distributions]):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """The commit of the checkout `repo` ('-dirty' appended with uncommitted changes to tracked files); None when
    it is not a git checkout (an installed package) or git is missing."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
