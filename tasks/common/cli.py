"""Argument parsing with YAML defaults (timm's two-stage `--config`), and one clear error instead of a trace."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
import yaml


class TaskError(ValueError):
    """Bad user input (path, layout, file, argument): printed as one line naming what was expected."""


def add_common_args(parser: argparse.ArgumentParser, task: str) -> None:
    """Options every training CLI has: config, output, resume, seed and the Lightning Trainer settings."""
    g = parser.add_argument_group("run")
    g.add_argument("-c", "--config", type=Path, help="YAML file whose keys set defaults for the options below")
    g.add_argument("--out", type=Path, default=None, help=f"run directory (default: runs/{task}/<timestamp>)")
    g.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue a run: its directory (uses checkpoints/last.ckpt) or a .ckpt file; outputs go to that run",
    )
    g.add_argument("--seed", type=int, default=0, help="global seed (Lightning seed_everything, workers too)")
    t = parser.add_argument_group("trainer (Lightning)")
    t.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    t.add_argument("--devices", default="auto", help="number of devices per node or 'auto'")
    t.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, fsdp, ...")
    t.add_argument("--num-nodes", type=int, default=1, help="nodes (torchrun --nnodes / SLURM --nodes)")
    t.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed")
    t.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per process")
    t.add_argument("--limit-train-batches", type=float, default=1.0, help="fraction or count of train batches")
    t.add_argument("--limit-val-batches", type=float, default=1.0, help="fraction or count of val batches")
    t.add_argument("--no-progress", action="store_true", help="disable the progress bar (logs still written)")
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process; 0: torch's default (one per core); unset: the task's default "
                        "(1 for the ImageNet-digits and ESC-50 synthetic presets: on a busy 2-core machine two "
                        "OpenMP threads spin-wait on each other)")


def bool_arg(text: str) -> bool:
    """argparse `type=` for true/false flags that YAML configs can also set: 1/true/yes/on, 0/false/no/off."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def apply_threads(args: argparse.Namespace) -> None:
    """`torch.set_num_threads(args.threads)` when it is set and positive (None / 0: leave torch's default)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 0:
        raise TaskError(f"--threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; keys of the `--config` YAML become defaults that explicit flags still override."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        if not known.config.is_file():
            raise TaskError(f"--config: file not found: {known.config}")
        try:
            values = yaml.safe_load(known.config.read_text()) or {}
        except yaml.YAMLError as err:
            raise TaskError(f"--config: {known.config} is not valid YAML: {err}") from None
        if not isinstance(values, dict):
            raise TaskError(f"--config: {known.config} must hold a mapping of option: value")
        dests = {a.dest for a in parser._actions}
        unknown = sorted(k for k in (k.replace("-", "_") for k in values) if k not in dests)
        if unknown:
            raise TaskError(f"--config: unknown option(s) in {known.config}: {', '.join(unknown)}")
        parser.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})
    return parser.parse_args(argv)


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run a CLI `main`; a `TaskError` becomes `error: ...` on stderr and exit status 2, with no traceback."""
    try:
        main(argv)
    except TaskError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: resume with --resume <run dir>", file=sys.stderr)
        raise SystemExit(130) from None
