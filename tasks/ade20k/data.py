"""The ADE20K scene-parsing layout (``ADEChallengeData2016``), checked before training, and its datasets.

Layout (as the release ships)::

    <root>/images/{training,validation}/<name>.jpg
    <root>/annotations/{training,validation}/<name>.png   8-bit label map: 0 = other (ignored), 1..K = classes
    <root>/objectInfo150.txt                             optional: "Idx Ratio Train Val Name" rows, one per class

Labels are read with mmseg's ``reduce_zero_label``: 0 -> 255 (ignored), 1..K -> 0..K-1. `read_split` checks every
pair before any loader runs (each image has its annotation, both are readable images of the same size, the label
is single-channel and no value exceeds K) and raises one `TaskError` naming the file.
"""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..common import TaskError

IGNORE_INDEX = 255
SPLITS = ("training", "validation")
CLASS_FILE = "objectInfo150.txt"
ADE20K_CLASSES = 150
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

__all__ = [
    "ADE20KDataModule", "ADE20KDataset", "IGNORE_INDEX", "Sample", "load_image", "load_label", "read_class_names",
    "read_split",
]


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path


def read_class_names(root: Path, num_classes: int | None = None) -> list[str]:
    """Class names from ``objectInfo150.txt`` (tab-separated ``Idx Ratio Train Val Name``; the first of the
    comma-separated synonyms), else ``class_1..class_K``."""
    path = Path(root) / CLASS_FILE
    if not path.is_file():
        return [f"class_{i}" for i in range(1, (num_classes or ADE20K_CLASSES) + 1)]
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "Name" not in rows[0]:
        raise TaskError(f"{path}: expected tab-separated columns 'Idx Ratio Train Val Name' with one row per class")
    try:
        indices = [int(row["Idx"]) for row in rows]
    except (KeyError, TypeError, ValueError):
        raise TaskError(f"{path}: the 'Idx' column must hold the class values 1..K") from None
    if indices != list(range(1, len(rows) + 1)):
        raise TaskError(f"{path}: class values must be 1..{len(rows)} in order, got {indices[:10]}")
    names = [row["Name"].split(",")[0].strip() for row in rows]  # "windowpane, window " -> "windowpane"
    if num_classes is not None and num_classes != len(names):
        raise TaskError(f"--num-classes {num_classes} disagrees with the {len(names)} classes in {path}")
    return names


def read_split(root: Path, split: str, num_classes: int) -> list[Sample]:
    """Image/annotation pairs of one split, sorted by name, after checking every file (see module docstring)."""
    root = Path(root)
    image_dir, label_dir = root / "images" / split, root / "annotations" / split
    expected = f"{root}/images/{split}/*.jpg and {root}/annotations/{split}/*.png"
    if not root.is_dir():
        raise TaskError(f"--data: folder not found: {root} (expected the ADEChallengeData2016 layout: {expected})")
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise TaskError(f"--data: folder not found: {folder} (expected {expected})")
    files = sorted(p for p in image_dir.iterdir() if not p.name.startswith("."))
    samples = []
    for path in files:
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            raise TaskError(f"{path}: not an image file (expected {image_dir}/<name>.jpg)")
        label = label_dir / f"{path.stem}.png"
        if not label.is_file():
            raise TaskError(f"{path}: no annotation {label} for this image")
        samples.append(Sample(path, label))
    if not samples:
        raise TaskError(f"--data: no images in {image_dir} (expected {expected})")
    with ThreadPoolExecutor(max_workers=8) as pool:  # PIL decodes without the GIL
        for problem in pool.map(lambda s: _check_pair(s, num_classes), samples):
            if problem:
                raise TaskError(problem)
    return samples


def _check_pair(sample: Sample, num_classes: int) -> str | None:
    """An error message naming the file, or None when the pair is usable."""
    try:
        with Image.open(sample.image) as img:
            img.verify()
        with Image.open(sample.image) as img:
            image_size = img.size
    except Exception as err:  # PIL raises many types for non-images and broken files
        return f"{sample.image}: not a readable image ({type(err).__name__}: {err})"
    try:
        with Image.open(sample.label) as lbl:
            mode, label_size = lbl.mode, lbl.size
            if mode not in ("L", "P"):
                return f"{sample.label}: label map must be an 8-bit single-channel PNG (mode L or P), got mode {mode}"
            top = int(np.asarray(lbl).max())
    except Exception as err:
        return f"{sample.label}: not a readable PNG label map ({type(err).__name__}: {err})"
    if label_size != image_size:
        return (f"{sample.label}: size {label_size[0]}x{label_size[1]} differs from its image {sample.image} "
                f"({image_size[0]}x{image_size[1]})")
    if top > num_classes:
        return (f"{sample.label}: label value {top} is above the class count {num_classes} "
                f"(0 = other/ignored, 1..{num_classes} = classes)")
    return None


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 `(H, W, 3)` (grayscale and palette JPEGs converted)."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except Exception as err:  # a file that passed the header check but fails to decode (truncated data)
        raise TaskError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None


def load_label(path: Path) -> np.ndarray:
    """uint8 `(H, W)` with mmseg's ``reduce_zero_label``: 0 -> 255 (ignored), v -> v - 1."""
    with Image.open(path) as lbl:
        label = np.asarray(lbl, dtype=np.uint8)
    return np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.uint8)


class ADE20KDataset(Dataset):
    """`(image, label, index)` after `transform(image uint8 HWC, label uint8 HW) -> (float CHW, long HW)`."""

    def __init__(self, samples: list[Sample], transform: Callable[[np.ndarray, np.ndarray], tuple]) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        sample = self.samples[index]
        image, label = self.transform(load_image(sample.image), load_label(sample.label))
        return image, label, index


class ADE20KDataModule(pl.LightningDataModule):
    """Train loader (shuffled, `total_batch_size` split over the processes) and validation loader (one image per
    step at its own size; under DDP every image is evaluated by exactly one process)."""

    def __init__(self, train: ADE20KDataset | None, val: ADE20KDataset, total_batch_size: int = 16,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.total_batch_size, self.num_workers = total_batch_size, num_workers

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        world = self._world_size()
        if self.total_batch_size % world:
            raise TaskError(f"--batch-size {self.total_batch_size} (the total) is not divisible by {world} processes")
        per_process = self.total_batch_size // world
        if len(self.train) < self.total_batch_size:
            raise TaskError(f"--batch-size {self.total_batch_size} is larger than the {len(self.train)} training "
                            f"images")
        return DataLoader(self.train, batch_size=per_process, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        sampler = None
        if self._world_size() > 1:
            sampler = UnrepeatedDistributedSampler(self.val, num_replicas=self.trainer.world_size,
                                                   rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(self.val, batch_size=1, sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)
