"""A finished training run as the verbs that apply it read it (validate, predict, export): its directory, resolved
options (config.yaml), checkpoint (the Lightning `.ckpt`: weights and the module's hyper-parameters) and
metrics.json, all read without arbitrary unpickling (`torch.load(weights_only=True)`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .cli import TaskError, read_config_file
from .metrics import read_metrics

CHECKPOINT_ORDER = ("best", "last")  # the run's best validation checkpoint, else its last


@dataclass(frozen=True)
class TrainedRun:
    """`dir`: the run directory; `options`: its config.yaml; `checkpoint`: the .ckpt used; `hparams`: the
    LightningModule's saved hyper-parameters; `state_dict`: the module's weights; `metrics`: metrics.json or None
    (a run stopped before it finished)."""

    dir: Path
    options: dict[str, Any]
    checkpoint: Path
    hparams: dict[str, Any]
    state_dict: dict[str, Any]
    metrics: dict[str, Any] | None

    @classmethod
    def open(cls, path: Path | str, option: str = "--run") -> TrainedRun:
        """A run directory (its best.ckpt, else last.ckpt) or a .ckpt inside `<run>/checkpoints/`; one `TaskError`
        naming `option` when it is neither or its files cannot be read."""
        from .trainer import AtomicCheckpointIO

        path = Path(path)
        if path.is_file() and path.suffix == ".ckpt":
            run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            checkpoint = path
        elif path.is_dir():
            run_dir = path
            found = [path / "checkpoints" / f"{name}.ckpt" for name in CHECKPOINT_ORDER]
            checkpoint = next((c for c in found if c.is_file()), None)
            if checkpoint is None:
                raise TaskError(f"{option}: no checkpoints/best.ckpt or last.ckpt in {path} (expected the run "
                                "directory of a training command)")
        else:
            raise TaskError(f"{option}: {path} is neither a run directory nor a .ckpt file")
        options = read_options(run_dir, option)
        state = AtomicCheckpointIO().load_checkpoint(checkpoint)
        if not isinstance(state.get("hyper_parameters"), dict) or "state_dict" not in state:
            raise TaskError(f"{option}: {checkpoint} is not a checkpoint of a training command (no "
                            "hyper_parameters / state_dict)")
        metrics = None
        if (run_dir / "metrics.json").is_file():
            try:
                metrics = read_metrics(run_dir / "metrics.json")
            except ValueError:
                metrics = None  # an older or foreign file: the run is still usable
        return cls(run_dir, options, checkpoint, dict(state["hyper_parameters"]), state["state_dict"], metrics)

    def sub_state_dict(self, prefix: str = "model.") -> dict[str, Any]:
        """The weights under `prefix` in the module (the plain model of a LightningModule), without the prefix."""
        return {k[len(prefix):]: v for k, v in self.state_dict.items() if k.startswith(prefix)}

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


def read_options(run_dir: Path, option: str = "--run") -> dict[str, Any]:
    """A run's resolved options (its config.yaml); one `TaskError` naming `option` when it is missing or bad."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        raise TaskError(f"{option}: no config.yaml in {run_dir} (expected the run directory of a training command)")
    return read_config_file(config, None, option)


def newest_run(runs: Path, accept: Callable[[dict[str, Any]], bool], what: str, hint: str) -> Path:
    """The newest run directory under `runs` with a checkpoint whose config.yaml satisfies `accept`; `what` and
    `hint` phrase the error when there is none ("a digits run", "train one with ...")."""
    found = []
    for config in Path(runs).glob("*/config.yaml"):
        try:
            options = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError:
            continue
        has_checkpoint = any((config.parent / "checkpoints" / f"{n}.ckpt").is_file() for n in CHECKPOINT_ORDER)
        if isinstance(options, dict) and has_checkpoint and accept(options):
            found.append(config.parent)
    if not found:
        raise TaskError(f"--run not given and no {what} with a checkpoint under {runs}/; {hint}")
    return max(found, key=lambda d: (d / "config.yaml").stat().st_mtime)
