"""Checks for folder-per-class datasets (`<split>/<class>/<file>`), run before any loader touches the data, so
bad layouts give one clear error naming the folder instead of a trace from inside a DataLoader worker."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from .cli import TaskError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_class_files(split_dir: Path, arg: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> dict[str, list[Path]]:
    """`{class folder name: sorted files}` for `split_dir/<class>/**/<file>`; raises `TaskError` (naming `arg`)
    when the folder is missing, holds no class folders with matching files, or has files at its top level."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise TaskError(f"{arg}: folder not found: {split_dir} (expected {split_dir}/<class>/<image files>)")
    exts = {e.lower() for e in extensions}
    loose = sorted(p.name for p in split_dir.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if loose:
        raise TaskError(
            f"{arg}: {split_dir} holds {len(loose)} file(s) directly (e.g. {loose[0]}); expected one sub-folder per "
            f"class: {split_dir}/<class>/<file>"
        )
    classes: dict[str, list[Path]] = {}
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if files:
            classes[class_dir.name] = files
    if not classes:
        raise TaskError(
            f"{arg}: no files with extension {', '.join(sorted(exts))} under {split_dir}/<class>/ "
            f"(expected {split_dir}/<class>/<file>)"
        )
    return classes


def check_same_classes(train: Iterable[str], val: Iterable[str], train_dir: Path, val_dir: Path) -> None:
    """Train and validation must use the same class folders, else label indices would silently disagree."""
    train, val = set(train), set(val)
    if train == val:
        return
    only_train, only_val = sorted(train - val), sorted(val - train)
    parts = []
    if only_train:
        parts.append(f"only in {train_dir}: {_preview(only_train)}")
    if only_val:
        parts.append(f"only in {val_dir}: {_preview(only_val)}")
    raise TaskError("class folders differ between train and val (" + "; ".join(parts) + ")")


def find_unreadable_images(paths: Sequence[Path]) -> list[Path]:
    """Files PIL cannot open and verify (wrong format, truncated header, empty); cheap: pixels are not decoded."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
        except Exception:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError, ...)
            bad.append(Path(path))
    return bad


def describe_unreadable(bad: Sequence[Path], total: int, arg: str, shown: int = 3) -> str:
    """One line: how many files could not be read and the first few paths."""
    first = ", ".join(str(p) for p in bad[:shown])
    more = f" (+{len(bad) - shown} more)" if len(bad) > shown else ""
    return f"{arg}: {len(bad)} of {total} image(s) unreadable and skipped: {first}{more}"


def _preview(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} total)" if len(names) > n else "")
