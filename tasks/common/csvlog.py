"""Keep the CSV log of a resumed run whole: Lightning's `CSVLogger` starts `logs/metrics.csv` afresh when a run is
resumed into the same directory, which would drop the epochs logged before the stop."""
from __future__ import annotations

import csv
from pathlib import Path

from .files import write_csv


def set_aside_csv_log(run_dir: Path, name: str = "logs/metrics.csv") -> Path | None:
    """Before resuming: move `metrics.csv` to `metrics.part<N>.csv` (first free N) so the new run cannot erase it."""
    log = Path(run_dir) / name
    if not log.is_file():
        return None
    n = 0
    while (part := log.with_name(f"{log.stem}.part{n}{log.suffix}")).exists():
        n += 1
    log.rename(part)
    return part


def merge_csv_logs(run_dir: Path, name: str = "logs/metrics.csv") -> Path | None:
    """After a run finishes: fold the set-aside parts (oldest first) and the current log into one `metrics.csv`
    with the union of their columns; the parts are removed once the merged file is in place."""
    log = Path(run_dir) / name
    parts = sorted(log.parent.glob(f"{log.stem}.part*{log.suffix}"), key=lambda p: int(p.stem.rsplit("part", 1)[1]))
    if not parts:
        return None
    rows, columns = [], []
    for path in [*parts, log] if log.is_file() else parts:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns += [c for c in reader.fieldnames or [] if c not in columns]
            rows += list(reader)
    write_csv(log, rows, columns)
    for path in parts:
        path.unlink()
    return log

