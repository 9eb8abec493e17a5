"""The `--data` default sized to the folder (issue #14): ImageNet-sized folders (`LARGE` training images or more)
get the official recipe (presets/imagenet.yaml); smaller ones presets/folder.yaml, whose input side, epochs and batch
size `size_to_data` chooses from the images when the run starts (before config.yaml is written, so it records the
choice). Flags and `--config` values win.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
from pathlib import Path

from PIL import Image

from ..common import TaskError
from ..common.folders import IMAGE_EXTENSIONS

__all__ = ["LARGE", "choose_preset", "count_images", "size_to_data"]

LARGE = 100_000  # training images from which a folder gets the official ImageNet recipe
IMAGE_PRESENTATIONS = 20_000
EPOCH_RANGE = (15, 100)
SMALL_SIDE = 40  # images whose median short side is at most this train at 32 px, others at 64 px


def count_images(split_dir: Path, stop_at: int | None = None) -> int:
    """Image files in `split_dir/<class>/` (one level, as timm reads them), or the rows of `split_dir/metadata.csv`
    (the Hugging Face imagefolder layout); counting stops at `stop_at`."""
    if (Path(split_dir) / "metadata.csv").is_file():
        with open(Path(split_dir) / "metadata.csv", newline="", encoding="utf-8-sig") as fh:
            return sum(1 for _ in csv.DictReader(fh))
    total = 0
    exts = set(IMAGE_EXTENSIONS)
    for class_dir in sorted(os.scandir(split_dir), key=lambda e: e.name) if Path(split_dir).is_dir() else []:
        if class_dir.is_dir():
            total += sum(1 for f in os.scandir(class_dir.path) if os.path.splitext(f.name)[1].lower() in exts)
            if stop_at is not None and total >= stop_at:
                break
    return total


def choose_preset(args: argparse.Namespace) -> str:
    """digits without --data, imagenet for folders of `LARGE` training images or more, else folder."""
    if args.data is None:
        return "digits"
    return "imagenet" if count_images(Path(args.data) / "train", stop_at=LARGE) >= LARGE else "folder"


def _median_short_side(split_dir: Path, sample: int = 64) -> int:
    files = sorted(p for p in Path(split_dir).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    step = max(len(files) // sample, 1)
    sides = []
    for path in files[::step][:sample]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except Exception:  # unreadable files are reported (and skipped) by the loader
            continue
    if not sides:
        raise TaskError(f"--data: no readable image under {split_dir}")
    return int(sorted(sides)[len(sides) // 2])


def size_to_data(args: argparse.Namespace, gpu: bool) -> str:
    """Fill the folder preset's unset options (input side, epochs, batch size) from the training folder; returns the
    line announcing the choice."""
    train_dir = Path(args.data) / "train"
    num_train = count_images(train_dir)
    chosen = {}
    if args.input_size is None:
        chosen["input_size"] = 32 if _median_short_side(train_dir) <= SMALL_SIDE else (128 if gpu else 64)
    if args.batch_size is None:
        chosen["batch_size"] = min(32 if num_train >= 256 else 16, max(num_train // 2, 1))  # >= 2 steps an epoch
    if args.epochs is None:
        epochs = math.ceil(IMAGE_PRESENTATIONS / max(num_train, 1))
        chosen["epochs"] = int(min(max(epochs, EPOCH_RANGE[0]), EPOCH_RANGE[1]))
    for name, value in chosen.items():
        setattr(args, name, value)
    what = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items())
    return (f"sized to the data: {num_train} training images on {'a GPU' if gpu else 'the CPU'} -> {what or 'as given'}"
            " (flags override; the official ImageNet recipe: --preset imagenet)")
