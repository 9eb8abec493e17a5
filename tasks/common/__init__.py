"""What every task shares: the run lifecycle (`Task`, `run_task`, `Run`, `Summary`), options and errors, run
directories, metrics.json, atomic files and tables, and the Lightning Trainer.

Importing this package does not import Lightning (the Trainer pieces load on first use); running a command through
the lifecycle (`run_task`) does (its seeding).
"""
from typing import Any

from .cli import (
    RunStopped,
    TaskError,
    add_common_args,
    apply_threads,
    bool_arg,
    parse_key_values,
    parse_with_config,
    run_main,
)
from .files import atomic_write, write_csv, write_table
from .lifecycle import Run, Task, build_parser, run_task
from .metrics import Score, Summary, read_metrics
from .rundir import make_run_dir, resolve_resume, save_config, write_metrics

_TRAINER = ("AtomicCheckpointIO", "ThroughputLogger", "build_trainer")

__all__ = [
    "AtomicCheckpointIO",
    "Run",
    "RunStopped",
    "Score",
    "Summary",
    "Task",
    "TaskError",
    "ThroughputLogger",
    "add_common_args",
    "apply_threads",
    "atomic_write",
    "bool_arg",
    "build_parser",
    "build_trainer",
    "make_run_dir",
    "parse_key_values",
    "parse_with_config",
    "read_metrics",
    "resolve_resume",
    "run_main",
    "run_task",
    "save_config",
    "write_csv",
    "write_metrics",
    "write_table",
]


def __getattr__(name: str) -> Any:
    if name in _TRAINER:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
