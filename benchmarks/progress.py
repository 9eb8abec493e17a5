"""Completed measurements of a report run, one JSON line each in `<run>/progress.jsonl`, so that
`python -m benchmarks.report ... --resume <run>` redoes only what is missing after a crash or a timeout.

Each line holds a stage ('model', 'sweep', 'accuracy'), a key (model name, series, run directory), the signature
of everything the result depends on (settings, time limit, command line) and the result rows. A stored result
is reused only when its signature equals the current one, so a resumed run with other settings re-measures.
Lines are appended and fsynced one at a time; a line cut by a crash is ignored.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Progress"]


def _canonical(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, paths and dtypes strings)."""
    return json.loads(json.dumps(value, default=str))


class Progress:
    """The results already measured in a run directory (`resume=True`), or a fresh record (`resume=False`)."""

    FILENAME = "progress.jsonl"

    def __init__(self, run_dir: Path, resume: bool) -> None:
        self.path = Path(run_dir) / self.FILENAME
        self._done: dict[tuple[str, str], dict[str, Any]] = {}
        self.reused = 0
        self.reused_seconds: float | None = 0.0  # what the reused results took to measure (None: not recorded)
        if resume:
            for line in self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []:
                try:
                    entry = json.loads(line)
                    self._done[(entry["stage"], entry["key"])] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # the last line of a crashed run may be cut short
        else:
            self.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._done)

    def get(self, stage: str, key: str, signature: Any) -> list[dict[str, Any]] | None:
        """The stored rows for (stage, key) when they were measured with this signature, else None."""
        entry = self._done.get((stage, key))
        if entry is None or entry.get("signature") != _canonical(signature):
            return None
        self.reused += 1
        seconds = entry.get("seconds")
        self.reused_seconds = None if seconds is None or self.reused_seconds is None else self.reused_seconds + seconds
        return entry["rows"]

    def add(self, stage: str, key: str, signature: Any, rows: list[dict[str, Any]], seconds: float) -> None:
        """Record a finished measurement that took `seconds` (appended and fsynced at once)."""
        entry = _canonical(dict(stage=stage, key=key, signature=signature, rows=rows, seconds=round(seconds, 2)))
        self._done[(stage, key)] = entry
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
