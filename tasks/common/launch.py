"""Multi-process launches (Lightning's `ddp` launcher, torchrun, SLURM srun): every process must agree on one
run directory and only rank 0 should print or write summaries."""
from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from .cli import TaskError
from .rundir import make_run_dir

RUN_DIR_ENV = "FOCALMOD_RUN_DIR"


def is_rank_zero() -> bool:
    """True in the process that prints and writes summaries (reads RANK / LOCAL_RANK / SLURM_PROCID)."""
    return rank_zero_only.rank == 0


def launched_world_size() -> int:
    """Processes started by an external launcher (torchrun `WORLD_SIZE`, SLURM `SLURM_NTASKS`); 1 otherwise."""
    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 1


def shared_run_dir(task: str, out: Path | None = None, root: Path = Path("runs")) -> Path:
    """The run directory, the same in every process of a run.

    `out` wins. Otherwise processes started by Lightning's `ddp` launcher inherit the directory rank 0 chose (via
    the `FOCALMOD_RUN_DIR` environment variable, set here); under SLURM or a torchrun with `--rdzv-id` the job id
    names it; other multi-process launches must pass `--out`. Call `release_run_dir()` when the run is over."""
    if out is None and os.environ.get(RUN_DIR_ENV):
        return make_run_dir(task, Path(os.environ[RUN_DIR_ENV]))
    if out is None and launched_world_size() > 1:
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if job == "none":
            raise TaskError(
                "--out is required when torchrun/srun starts several processes: they must share one run directory"
            )
        out = root / task / f"job-{job}"
    run_dir = make_run_dir(task, out, root)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes Lightning's `ddp` launcher starts
    return run_dir


def release_run_dir() -> None:
    """Forget the shared run directory (so a later run in the same Python process gets a fresh one)."""
    os.environ.pop(RUN_DIR_ENV, None)
