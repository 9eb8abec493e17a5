"""Writing files: one atomic writer and one table writer (CSV + Markdown) for runs, reports and benchmarks.

Atomic: the bytes go to a temporary file in the target's folder, are flushed to disk, then renamed over the target,
so a crash (or a full disk) never leaves a half-written file and never destroys the previous version. The writer
lives in the library (`focalmod.checkpoints.io.atomic_write`, which saves checkpoints with it) because the library
imports nothing from `tasks/`; it is re-exported here.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Sequence

from focalmod.checkpoints.io import atomic_write

__all__ = ["atomic_write", "csv_text", "markdown_table", "write_csv", "write_table"]


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV of `rows` (dicts); `columns` fixes the header and drops other keys, else the union of keys in order."""
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path | str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """`csv_text(rows, columns)` written atomically to `path`."""
    return atomic_write(path, csv_text(rows, columns))


def significant(value: Any) -> str:
    """Table cell: floats to 4 significant digits (NaN: n/a), None: empty, anything else `str`."""
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]], cell: Callable[[Any], str] = significant
                   ) -> str:
    """A Markdown table (no trailing newline); `cell` turns each body value into text."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_table(rows: Sequence[dict[str, Any]], out_dir: Path | str, stem: str = "results", title: str = "",
                notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """`<stem>.csv` and `<stem>.md` (a Markdown table, floats to 4 significant digits, then `notes` lines)."""
    out_dir = Path(out_dir)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    csv_path = write_csv(out_dir / f"{stem}.csv", rows, columns)
    lines = [f"# {title}", ""] if title else []
    lines.append(markdown_table(columns, [[row.get(c) for c in columns] for row in rows]))
    if notes:
        lines += ["", *notes]
    md_path = atomic_write(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    return csv_path, md_path
