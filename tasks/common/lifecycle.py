"""The run lifecycle every training CLI shares: a task describes itself in a `Task`, `run_task` does the rest.

    TASK = Task(name="imagenet", module="tasks.imagenet.train", doc=__doc__, add_options=add_options,
                presets=Path(__file__).parent / "presets", choose_preset=lambda a: "digits" if a.data is None
                else "imagenet", run=train)

    def main(argv=None):                # tests call main([...]); the shell runs run_main(main)
        return run_task(TASK, argv)

For every task, in this order, `run_task`:

1. reads the options with one precedence: a flag on the command line > the `--config` file > the resumed run's
   config.yaml > the preset (`presets/<name>.yaml`, `--preset NAME` or `choose_preset(args)`) > the default;
2. calls `Task.resolve(args)` (checks and derived values), sets torch threads (`--threads`) and the seed;
3. makes the run directory (`--out`, else `runs/<name>/<timestamp>`; `--resume` reuses the run's own), the same
   one in every DDP process, and writes config.yaml there (the resolved options: `--config` it to repeat the run);
4. calls `Task.run(run)`: the task builds data and model, trains with `run.trainer(...)` and `run.fit(...)` (which
   resume from `checkpoints/last.ckpt` and keep `logs/metrics.csv` whole), evaluates, prints its summary and
   returns a `Summary`;
5. writes `metrics.json` (schema in `tasks/common/metrics.py`) from that `Summary` and returns its content;
6. turns SIGTERM and Ctrl-C into `RunStopped`: `run_main` prints the `--resume` command and exits 143 / 130.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .cli import RunStopped, TaskError, add_common_args, apply_threads, read_config_file
from .presets import Presets
from .rundir import resolve_resume, save_config, write_metrics

__all__ = ["Run", "Task", "TaskParser", "build_parser", "run_task"]

RUN_LOCATION_KEYS = ("config", "out", "resume")  # where a run is, not what it is: never read from or put in a config


@dataclass(frozen=True)
class Task:
    """What a training CLI supplies to the lifecycle.

    `name`: runs go to `runs/<name>/`, metrics.json says `"task": name`. `module`: what `python -m` runs (help,
    the printed `--resume` command). `doc`: the module docstring (first paragraph: description; the rest: epilog).
    `add_options(parser)`: the task's own options (argparse; groups welcome); options a preset sets should default
    to None. `presets`: the folder of `<name>.yaml` presets; `choose_preset(args)`: the preset for these options
    when `--preset` is not given (e.g. from `args.data`). `run(run)`: build, train, evaluate, print; return a
    `Summary` (or None on ranks other than 0; any other value is returned as is, without metrics.json).
    `resolve(args)`: optional checks / derived values before the run directory exists. `versions`: extra
    distributions whose versions metrics.json records (e.g. "monai"). A verb that applies a trained run
    (validate, predict, export) has no presets (`presets` None: no `--preset`, metrics.json `"preset": null`), and
    `trainer=False` leaves out the Lightning Trainer options where it runs no Trainer (export)."""

    name: str
    module: str
    doc: str
    add_options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Run], Any]
    presets: Path | None = None
    choose_preset: Callable[[argparse.Namespace], str] | None = None
    resolve: Callable[[argparse.Namespace], None] | None = None
    versions: tuple[str, ...] = ()
    trainer: bool = True


@dataclass
class Run:
    """One run, as the lifecycle hands it to `Task.run`: the resolved options, the run directory, and the way to
    build and fit Lightning Trainers in it."""

    task: Task
    args: argparse.Namespace
    dir: Path
    resumed: bool = False
    resume_checkpoint: Path | None = None  # an explicit `--resume X.ckpt`, for the trainer in `dir`
    train_seconds: float = 0.0
    resumed_from: list[Path] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed_seconds(self) -> float:
        """Seconds since the run started (options read, run directory made)."""
        return time.perf_counter() - self.started

    @property
    def is_rank_zero(self) -> bool:
        from .launch import is_rank_zero

        return is_rank_zero()

    def say(self, *parts: Any) -> None:
        """Print a progress line (rank 0 only)."""
        if self.is_rank_zero:
            print(*parts, flush=True)

    def trainer(self, max_epochs: int | None = None, monitor: str | None = None, mode: str = "max",
                callbacks: Sequence[Any] = (), dir: Path | None = None, **trainer_kwargs: Any):
        """A Lightning Trainer writing to `dir` (default: the run directory): `checkpoints/last.ckpt` every epoch,
        `checkpoints/best.ckpt` by `monitor`, `logs/`; Trainer settings from the common options, `trainer_kwargs`
        win (see `tasks.common.trainer.build_trainer`). Bad settings become one `TaskError`."""
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        from .trainer import build_trainer

        try:
            return build_trainer(self.args, Path(dir or self.dir), max_epochs, monitor, mode, callbacks,
                                 **trainer_kwargs)
        except (ValueError, TypeError, MisconfigurationException) as err:  # bad --strategy/--devices/--accelerator
            raise TaskError(f"trainer settings: {err}") from None

    def fit(self, trainer: Any, module: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: Any = None) -> float:
        """`trainer.fit`, resumed from the trainer directory's `checkpoints/last.ckpt` when the run is resumed (a
        trainer that had not saved one yet starts afresh), keeping the CSV log of the earlier part; returns the
        seconds it took (also summed in `train_seconds`)."""
        from .csvlog import merge_csv_logs, set_aside_csv_log

        trainer_dir = Path(trainer.default_root_dir)
        ckpt = self._checkpoint_for(trainer_dir)
        if ckpt is not None:
            self.resumed_from.append(ckpt)
            self.say(f"resuming from {ckpt}")
            if self.is_rank_zero:
                set_aside_csv_log(trainer_dir)  # Lightning's CSVLogger restarts metrics.csv; merged back below
        elif self.resumed:
            self.say(f"no checkpoint in {trainer_dir / 'checkpoints'} yet: this training starts from the beginning")
        start = time.perf_counter()
        try:
            trainer.fit(module, train_dataloaders, val_dataloaders, datamodule=datamodule, ckpt_path=ckpt)
        finally:
            seconds = time.perf_counter() - start
            self.train_seconds += seconds
            if self.is_rank_zero:
                merge_csv_logs(trainer_dir)
        return seconds

    def on_rank_zero_first(self, make: Callable[[], Any], ready: Callable[[], bool], what: str,
                           timeout_s: float = 900.0) -> None:
        """Rank 0 calls `make()` (e.g. writes the synthetic data set); the other processes of a multi-process run
        wait until `ready()` instead of writing the same files at the same time. `what` names it in the timeout
        error."""
        if self.is_rank_zero:
            make()
            return
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise TaskError(f"{what} was not written by rank 0 within {timeout_s:.0f} s")
            time.sleep(0.5)

    def _checkpoint_for(self, trainer_dir: Path) -> Path | None:
        if not self.resumed:
            return None
        if self.resume_checkpoint is not None and trainer_dir.resolve() == self.dir.resolve():
            return self.resume_checkpoint
        last = trainer_dir / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None


class TaskParser(argparse.ArgumentParser):
    """An `ArgumentParser` that keeps the actions it and its argument groups create (`options`), so the lifecycle
    can write each option's default or preset values into --help without argparse's private `_actions`; `presets`:
    the task's presets."""

    def __init__(self, *args: Any, presets: Presets | None = None, **kwargs: Any) -> None:
        self.options: list[argparse.Action] = []
        self.presets = presets
        super().__init__(*args, **kwargs)
        self._recording = True

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.options.append(action)
        return action

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        group = super().add_argument_group(*args, **kwargs)
        return _RecordingGroup(group, self.options) if getattr(self, "_recording", False) else group

    def add_mutually_exclusive_group(self, **kwargs: Any) -> Any:
        return _RecordingGroup(super().add_mutually_exclusive_group(**kwargs), self.options)


class _RecordingGroup:
    """An argument group that also records the actions it creates."""

    def __init__(self, group: Any, options: list[argparse.Action]) -> None:
        self._group, self._options = group, options

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = self._group.add_argument(*args, **kwargs)
        self._options.append(action)
        return action

    def add_mutually_exclusive_group(self, **kwargs: Any) -> _RecordingGroup:
        return _RecordingGroup(self._group.add_mutually_exclusive_group(**kwargs), self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)


def build_parser(task: Task) -> TaskParser:
    """The task's parser: its options, the common ones, `--preset`; every option's help ends with its default or
    the values the presets give it, and the epilog lists the presets and the precedence of option sources."""
    presets = Presets.load(task.presets) if task.presets is not None else Presets.none()
    description, _, rest = task.doc.strip().partition("\n\n")
    parser = TaskParser(prog=f"python -m {task.module}", description=description, presets=presets,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    task.add_options(parser)
    add_common_args(parser, task.name, presets.names, trainer=task.trainer)
    presets.check(vars(parser.parse_args([])))
    for action in parser.options:
        if action.help in (None, argparse.SUPPRESS) or action.dest == "help":
            continue
        by_preset = presets.describe(action.dest)
        if by_preset:
            action.help += f" (preset {by_preset})".replace("%", "%%")
        elif not (action.default is None or action.default is False or action.default == argparse.SUPPRESS):
            action.help += f" (default: {_show(action.default)})".replace("%", "%%")
    precedence = textwrap.fill(
        (f"Presets ({_relative(presets.folder)}/<name>.yaml): {', '.join(presets.names)}; --preset picks one, else "
         "the data does. " if presets.names else "") + "An option takes the first value found in: the command line, "
        "--config, the resumed run's config.yaml" + (", the preset" if presets.names else "") + ", its default.",
        width=115)
    parser.epilog = "\n\n".join(filter(None, [rest, precedence]))
    return parser


def run_task(task: Task, argv: Sequence[str] | None = None) -> Any:
    """Run `task` with the command line `argv` (None: `sys.argv[1:]`, as from a shell); returns the content of
    metrics.json (rank 0), or what `task.run` returned when it is not a `Summary`. Bad input raises `TaskError`,
    SIGTERM / Ctrl-C raise `RunStopped`; `run_main` turns both into an exit status."""
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .launch import release_run_dir, shared_run_dir
    from .metrics import Summary, build_metrics

    start = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    run: Run | None = None
    with _StopSignals() as signals:
        try:
            args, resume_dir, checkpoint = resolve_options(task, argv)
            if task.resolve is not None:
                task.resolve(args)
            apply_threads(args)
            pl.seed_everything(args.seed, workers=True, verbose=False)
            run_dir = shared_run_dir(task.name, resume_dir or args.out)
            run = Run(task, args, run_dir, resumed=resume_dir is not None, resume_checkpoint=checkpoint)
            try:
                if run.is_rank_zero:  # without location keys: the file can seed a new run as well as --resume this
                    save_config(run_dir, {k: v for k, v in vars(args).items() if k not in RUN_LOCATION_KEYS})
                result = task.run(run)
            finally:
                release_run_dir()
        except SIGTERMException:  # Lightning stopped the loop at a batch boundary; it would exit 0
            raise _stopped("SIGTERM", task, run) from None
        except KeyboardInterrupt:
            raise _stopped("SIGINT", task, run) from None
        except RunStopped as stop:
            raise _stopped(stop.signal_name, task, run) from None
        except SystemExit:
            if signals.received == "SIGINT":  # Lightning turns Ctrl-C inside fit/validate into sys.exit(1)
                raise _stopped("SIGINT", task, run) from None
            raise
    if not isinstance(result, Summary):
        return result
    timing = {"wall_seconds": time.perf_counter() - start, "train_seconds": run.train_seconds}
    metrics = build_metrics(result, task.name, args.preset, timing, _command(task, argv),
                            str(run.resumed_from[0]) if run.resumed_from else None, task.versions)
    write_metrics(run.dir, metrics)
    if result.skipped:
        raise TaskError(f"{len(result.skipped)} input(s) could not be read and were skipped (the results of the "
                        f"others are in {run.dir}): {', '.join(result.skipped)}")
    return metrics


def resolve_options(task: Task, argv: Sequence[str]) -> tuple[argparse.Namespace, Path | None, Path | None]:
    """The options of a run with their precedence applied (flag > --config > resumed config.yaml > preset >
    default), the resumed run's directory and the checkpoint `--resume` named (None, None when not resuming)."""
    parser = build_parser(task)
    known = vars(parser.parse_args(argv))  # --help and bad flags exit here
    # Parsed into a namespace that already holds every option (as None), argparse sets only the flags given.
    flags = {k: v for k, v in vars(parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(known)))).items()
             if v is not None}
    layers: dict[str, Any] = {}
    resume_dir = checkpoint = None
    if flags.get("resume") is not None:
        resume_dir, checkpoint = find_resume(flags["resume"])
        if (resume_dir / "config.yaml").is_file():
            saved = read_config_file(resume_dir / "config.yaml", known, "--resume")
            layers.update(_options_added_since(parser, known, saved, resume_dir))
            layers.update({k: v for k, v in saved.items() if k not in RUN_LOCATION_KEYS})
    if flags.get("config") is not None:
        from_file = read_config_file(flags["config"], known)
        for key in ("config", "resume"):
            if from_file.pop(key, None) is not None:
                raise TaskError(f"--config: {flags['config']} sets {key}; give --{key} on the command line")
        layers.update(from_file)
    args = _parse(parser, argv, layers, flags)
    if not parser.presets.names:
        args.preset = None
        return args, resume_dir, checkpoint
    name = args.preset or task.choose_preset(args)
    args = _parse(parser, argv, {**parser.presets.resolve(name, vars(args)), **layers}, flags)
    args.preset = name
    return args, resume_dir, checkpoint


def _options_added_since(parser: argparse.ArgumentParser, known: Sequence[str], saved: dict[str, Any],
                         resume_dir: Path) -> dict[str, Any]:
    """The options a resumed run's config.yaml does not record, at their argparse defaults.

    config.yaml records every option (None included), so one it lacks did not exist when the run started; its
    argparse default is the behaviour before it existed (the rule for new options), where the preset may now
    choose something else (e.g. `--pad repeat` for audio `--data`). A flag or `--config` still wins."""
    added = {k: parser.get_default(k) for k in known
             if k not in saved and k not in RUN_LOCATION_KEYS and parser.get_default(k) is not None}
    if added:
        from .launch import is_rank_zero

        if is_rank_zero():
            what = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(added.items()))
            print(f"--resume: {resume_dir / 'config.yaml'} predates {what}: the run keeps the behaviour it "
                  "started with (give a flag to change it)", flush=True)
    return added


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str], defaults: dict[str, Any], flags: dict[str, Any]
           ) -> argparse.Namespace:
    """`argv` parsed over `defaults` (argparse converts their strings with each option's `type`); the flags' own
    values are put back last, so a repeatable flag (`action="append"`) replaces a lower layer's list instead of
    extending it."""
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    vars(args).update(flags)
    return args


def find_resume(path: Path) -> tuple[Path, Path | None]:
    """`--resume` -> (run directory, checkpoint or None). A run directory holds config.yaml (written when the run
    starts) or `checkpoints/last.ckpt`; a `.ckpt` file names its run by its `<run>/checkpoints/` folder."""
    path = Path(path)
    if path.is_dir() and (path / "config.yaml").is_file():
        last = path / "checkpoints" / "last.ckpt"
        return path, last if last.is_file() else None
    return resolve_resume(path)


def _stopped(signal_name: str, task: Task, run: Run | None) -> RunStopped:
    if run is None:
        return RunStopped(signal_name)
    return RunStopped(signal_name, f"python -m {task.module} --resume {shlex.quote(_relative(run.dir))}")


def _command(task: Task, argv: Sequence[str]) -> str:
    return " ".join(["python", "-m", task.module, *map(shlex.quote, argv)])


def _relative(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter commands), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


class _StopSignals:
    """SIGTERM and Ctrl-C while a run is set up or written up: `RunStopped` / `KeyboardInterrupt` at once. Inside
    Lightning's fit/validate, Lightning's own SIGTERM handler (installed over this one) stops the loop at the next
    batch boundary and raises `SIGTERMException`, and a Ctrl-C becomes `sys.exit(1)`: `received` tells them apart."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        self._handler = self._handle  # one bound method object, to recognise it with `signal.getsignal`

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signal.getsignal(signal.SIGTERM) is self._handler:  # not inside Lightning (it composes its own handler)
            raise RunStopped("SIGTERM")

