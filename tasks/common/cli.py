"""Argument parsing with YAML defaults (timm's two-stage `--config`), and one clear error instead of a trace."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import yaml


class TaskError(ValueError):
    """Bad user input (path, layout, file, argument): printed as one line naming what was expected."""


class RunStopped(BaseException):
    """A run stopped by a signal (SIGTERM from a scheduler, Ctrl-C): `run_main` prints how to resume it and exits
    with 128 + the signal number, so schedulers count it as failed. A `BaseException`, like `KeyboardInterrupt`, so
    `except Exception` in task code does not swallow it."""

    def __init__(self, signal_name: str, resume_command: str | None = None) -> None:
        super().__init__(signal_name)
        self.signal_name, self.resume_command = signal_name, resume_command

    @property
    def exit_code(self) -> int:
        return 128 + int(getattr(signal, self.signal_name, signal.SIGTERM))

    def __str__(self) -> str:
        if self.resume_command is None:
            return f"stopped by {self.signal_name} before the run directory was made; nothing to resume"
        return f"stopped by {self.signal_name}; continue the run with:\n  {self.resume_command}"


def add_common_args(parser: argparse.ArgumentParser, task: str, presets: Sequence[str] = (), trainer: bool = True
                    ) -> None:
    """Options every task command has: config, output, resume, seed, threads, the Lightning Trainer settings
    (unless `trainer` is False: a command that runs no Trainer) and, when the task has `presets`, `--preset`."""
    g = parser.add_argument_group("run")
    if presets:
        g.add_argument("--preset", choices=list(presets), default=None,
                       help="the preset whose option values the run starts from (listed at the end); default: "
                            "picked from the data")
    g.add_argument("-c", "--config", type=Path, help="YAML file whose keys set the options you do not give as flags")
    g.add_argument("--out", type=Path, default=None, help=f"run directory (default: runs/{task}/<timestamp>)")
    g.add_argument("--resume", type=Path, default=None,
                   help="continue a stopped run: its directory (or a .ckpt in its checkpoints/); outputs go to that "
                        "run, and its config.yaml supplies the options you do not give again")
    g.add_argument("--seed", type=int, default=0, help="global seed (Lightning seed_everything, workers too)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process; 0: torch's default (one per core). On a busy 2-core machine "
                        "use 1: two OpenMP threads spin-wait on each other")
    if not trainer:
        return
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


def bool_arg(text: str) -> bool:
    """argparse `type=` for true/false flags that YAML configs can also set: 1/true/yes/on, 0/false/no/off."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


class KeyValues(argparse.Action):
    """A repeatable `KEY=VALUE` option (`--model-arg`, `--backbone-arg`): each use appends one item; a default or
    preset value given as a mapping (`model_arg: {embed_dim: 32}`) is replaced by the items given, not extended
    (argparse's `append` would fail on a mapping). `parse_key_values` reads either form."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("metavar", "KEY=VALUE")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, (list, tuple)) else []
        setattr(namespace, self.dest, [*items, values])


def parse_key_values(items: Sequence[str] | Mapping[str, Any] | None, option: str) -> dict[str, Any]:
    """Constructor overrides given as a repeatable `KEY=VALUE` option (`--backbone-arg`, `--model-arg`):
    `["embed_dim=32", "depths=[1,1,2,1]"]` -> `{"embed_dim": 32, "depths": [1, 1, 2, 1]}` (values read as YAML,
    `-` in keys as `_`). Presets and config files may give the mapping itself (`model_arg: {embed_dim: 32}`). One
    `TaskError` naming `option` for an item that is not KEY=VALUE or a value that is not YAML."""
    if isinstance(items, Mapping):
        return {str(k).replace("-", "_"): v for k, v in items.items()}
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise TaskError(f"{option}: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise TaskError(f"{option}: the value of {key.strip()} is not YAML: {str(err).splitlines()[0]}") from None
    return out


def apply_threads(args: argparse.Namespace) -> None:
    """`torch.set_num_threads(args.threads)` when it is set and positive (None / 0: leave torch's default)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 0:
        raise TaskError(f"--threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def read_config_file(path: Path, known: Iterable[str] | None, option: str = "--config") -> dict[str, Any]:
    """The option values in the YAML file `path` (keys as in `--batch-size` or `batch_size`, returned as
    `batch_size`); one `TaskError` naming `option` and the file when it is missing, not YAML, not a mapping or
    sets options outside `known` (None: any)."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{option}: file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise TaskError(f"{option}: {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise TaskError(f"{option}: {path} must hold a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - set(known)) if known is not None else []
    if unknown:
        raise TaskError(f"{option}: unknown option(s) in {path}: {', '.join(unknown)}")
    return values


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv` (None: `sys.argv[1:]`); keys of the `--config` YAML become defaults that flags still override."""
    given = parser.parse_args(argv)
    if getattr(given, "config", None) is None:
        return given
    parser.set_defaults(**read_config_file(given.config, vars(given)))
    return parser.parse_args(argv)


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run a CLI `main`: a `TaskError` becomes `error: ...` on stderr and exit status 2, with no traceback; a
    `RunStopped` prints the command that resumes the run and exits 128 + the signal number (SIGTERM 143, Ctrl-C
    130)."""
    try:
        main(argv)
    except TaskError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except RunStopped as stop:
        print(stop, file=sys.stderr, flush=True)
        raise SystemExit(stop.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
