"""Pieces every task shares: CLI/config handling, run directories, atomic checkpoints, the Lightning Trainer."""
from .cli import TaskError, add_common_args, apply_threads, bool_arg, parse_with_config, run_main
from .rundir import make_run_dir, resolve_resume, save_config, write_metrics
from .trainer import AtomicCheckpointIO, ThroughputLogger, build_trainer

__all__ = [
    "AtomicCheckpointIO",
    "TaskError",
    "ThroughputLogger",
    "add_common_args",
    "apply_threads",
    "bool_arg",
    "build_trainer",
    "make_run_dir",
    "parse_with_config",
    "resolve_resume",
    "run_main",
    "save_config",
    "write_metrics",
]
