"""Image data through timm's dataset and transform factories: the official FocalNet train transform (bicubic
RandomResizedCrop + flip, RandAugment, random erasing) and evaluation transform (resize to size / crop_pct, center
crop, bicubic, ImageNet mean/std).

Two layouts of `--data`, read into the same timm `ImageDataset` (reader samples `(path, class index)`, class indices
in natural-sort order of the class names, as timm numbers class folders):

- folder per class (ImageFolder): `<root>/train/<class>/*`, `<root>/val/<class>/*`;
- Hugging Face `imagefolder` with metadata: `<root>/train/metadata.csv` and `<root>/val/metadata.csv` (or
  `<root>/validation/metadata.csv`), columns `file_name` (relative to the CSV's folder) and `label`.

A split folder holding `metadata.csv` is read from it; `val/` is looked for before `validation/`.
"""
from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from timm.data import ImageDataset, create_transform
from timm.data.readers.reader import Reader
from timm.utils.misc import natural_key
from torch.utils.data import DataLoader

from ..common import TaskError
from ..common.folders import check_same_classes, describe_unreadable, find_unreadable_images, list_class_files


@dataclass
class Augment:
    """Train-time augmentation (timm `create_transform` arguments)."""

    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    re_prob: float = 0.25
    hflip: float = 0.5
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    color_jitter: float = 0.4


@dataclass
class Preprocess:
    """Input geometry and normalisation, shared by training and evaluation."""

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


def eval_transform(pre: Preprocess):
    return create_transform(pre.input_size, is_training=False, crop_pct=pre.crop_pct,
                            interpolation=pre.interpolation, mean=pre.mean, std=pre.std)


def train_transform(pre: Preprocess, aug: Augment):
    return create_transform(
        pre.input_size, is_training=True, auto_augment=aug.auto_augment, re_prob=aug.re_prob, re_mode="pixel",
        hflip=aug.hflip, scale=tuple(aug.scale), ratio=tuple(aug.ratio), color_jitter=aug.color_jitter,
        interpolation=pre.interpolation, mean=pre.mean, std=pre.std,
    )


METADATA = "metadata.csv"
VAL_NAMES = ("val", "validation")  # the folder layout's name, then the Hugging Face split name
METADATA_COLUMNS = ("file_name", "label")


def val_dir_of(root: Path) -> Path:
    """The validation split of `root`: `root/val`, else `root/validation`, else `root` itself (a val folder given
    directly)."""
    root = Path(root)
    return next((root / n for n in VAL_NAMES if (root / n).is_dir()), root)


def read_metadata(split_dir: Path, arg: str) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """`(samples, class_to_idx)` of `split_dir/metadata.csv` as timm's folder reader gives them for a class folder
    tree: samples `(path, class index)` in natural-sort order of the paths, classes numbered in natural-sort order
    of the labels. One `TaskError` naming `arg` and the file for missing columns, empty cells, repeated or missing
    files."""
    meta = Path(split_dir) / METADATA
    with open(meta, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in METADATA_COLUMNS if c not in header]
        if missing:
            raise TaskError(f"{arg}: {meta}: missing column(s) {', '.join(missing)}; expected file_name (relative to "
                            f"{split_dir}) and label, found {', '.join(header) or 'no header'}")
        reader.fieldnames = header
        rows = []
        for line, row in enumerate(reader, start=2):
            name, label = (row["file_name"] or "").strip(), (row["label"] or "").strip()
            if not name or not label:
                raise TaskError(f"{arg}: {meta} line {line}: empty {'file_name' if not name else 'label'}")
            rows.append((os.path.normpath(os.path.join(split_dir, name)), label))
    if not rows:
        raise TaskError(f"{arg}: {meta} lists no images")
    paths = [p for p, _ in rows]
    repeated = sorted(p for p, n in Counter(paths).items() if n > 1)
    if repeated:
        raise TaskError(f"{arg}: {meta} lists {len(repeated)} file(s) more than once: {_preview(repeated, split_dir)}")
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise TaskError(f"{arg}: {len(absent)} file(s) listed in {meta} are missing: {_preview(absent, split_dir)}")
    class_to_idx = {c: i for i, c in enumerate(sorted({label for _, label in rows}, key=natural_key))}
    samples = sorted(((p, class_to_idx[label]) for p, label in rows), key=lambda s: natural_key(s[0]))
    return samples, class_to_idx


def _preview(paths: list[str], folder: Path, n: int = 5) -> str:
    names = [os.path.relpath(p, folder) for p in paths]
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")


def split_classes(split_dir: Path, arg: str) -> list[str]:
    """The class names of a split folder in either layout (its metadata.csv labels, else its class folders)."""
    if (Path(split_dir) / METADATA).is_file():
        return list(read_metadata(split_dir, arg)[1])
    return list(list_class_files(split_dir, arg))


class MetadataReader(Reader):
    """A timm reader over given `(path, class index)` samples: what `ReaderImageFolder` holds for a class folder
    tree, for a split described by metadata.csv."""

    def __init__(self, root: Path, samples: list[tuple[str, int]], class_to_idx: dict[str, int]) -> None:
        super().__init__()
        self.root, self.samples, self.class_to_idx = str(root), samples, class_to_idx

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        return open(path, "rb"), target

    def __len__(self) -> int:
        return len(self.samples)

    def _filename(self, index: int, basename: bool = False, absolute: bool = False) -> str:
        filename = self.samples[index][0]
        if basename:
            return os.path.basename(filename)
        return filename if absolute else os.path.relpath(filename, self.root)


def checked_dataset(split_dir: Path, arg: str, transform: Any) -> ImageDataset:
    """timm `ImageDataset` over `split_dir/<class>/*`, or over the images `split_dir/metadata.csv` lists, after
    checking the layout; a few unreadable files are dropped with a warning naming the count and the first paths, a
    folder where none is readable is an error."""
    metadata = (Path(split_dir) / METADATA).is_file()
    if metadata:
        samples, class_to_idx = read_metadata(split_dir, arg)
        all_files = [Path(p) for p, _ in samples]
    else:
        files = list_class_files(split_dir, arg)
        all_files = [f for fs in files.values() for f in fs]
    bad = find_unreadable_images(all_files)
    if len(bad) == len(all_files):
        raise TaskError(f"{arg}: none of the {len(all_files)} images under {split_dir} can be read "
                        f"(e.g. {bad[0]})")
    if bad:
        warnings.warn(describe_unreadable(bad, len(all_files), arg), stacklevel=2)
    reader = MetadataReader(Path(split_dir), samples, class_to_idx) if metadata else None
    dataset = ImageDataset(str(split_dir), reader=reader, transform=transform, input_img_mode="RGB")
    bad_set = {str(p) for p in bad}
    dataset.reader.samples = [s for s in dataset.reader.samples if str(s[0]) not in bad_set]
    return dataset


@dataclass
class FolderData:
    """Where the two splits are; `classes` is filled from the train split. `layout`: "folders" (ImageFolder) or
    "metadata" (Hugging Face imagefolder with metadata.csv)."""

    train_dir: Path
    val_dir: Path
    classes: list[str] = field(default_factory=list)
    layout: str = "folders"

    @classmethod
    def from_root(cls, root: Path) -> FolderData:
        root = Path(root)
        expected = (f"{root}/train/<class>/ and {root}/val/<class>/, or {root}/train/{METADATA} and "
                    f"{root}/val/{METADATA} (or validation/) with columns file_name and label")
        if not root.is_dir():
            raise TaskError(f"--data: folder not found: {root} (expected {expected})")
        train_dir = root / "train"
        if (train_dir / METADATA).is_file():
            val_dir = next((root / n for n in VAL_NAMES if (root / n / METADATA).is_file()), None)
            if val_dir is None:
                raise TaskError(f"--data: {train_dir / METADATA} found but no {root}/val/{METADATA} or "
                                f"{root}/validation/{METADATA} (expected {expected})")
            data = cls(train_dir, val_dir, layout="metadata")
            train_classes = split_classes(train_dir, "--data (train)")
            check_same_classes(train_classes, split_classes(val_dir, "--data (val)"), train_dir / METADATA,
                               val_dir / METADATA)
        else:
            data = cls(train_dir, next((root / n for n in VAL_NAMES if (root / n).is_dir()), root / "val"))
            train_classes = list(list_class_files(data.train_dir, "--data (train)"))
            check_same_classes(train_classes, list_class_files(data.val_dir, "--data (val)"), data.train_dir,
                               data.val_dir)
        data.classes = sorted(train_classes)
        return data


class ImageFolderDataModule(pl.LightningDataModule):
    """Train/val loaders for a `FolderData`; the class index is the sorted class-folder order (timm's)."""

    def __init__(self, folders: FolderData, pre: Preprocess, aug: Augment, batch_size: int,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.folders, self.pre, self.aug = folders, pre, aug
        self.batch_size, self.num_workers = batch_size, num_workers

    def setup(self, stage: str | None = None) -> None:
        self.train_set = checked_dataset(self.folders.train_dir, "--data (train)", train_transform(self.pre, self.aug))
        self.val_set = checked_dataset(self.folders.val_dir, "--data (val)", eval_transform(self.pre))
        world = self.trainer.world_size if self.trainer is not None else 1
        if len(self.train_set) < self.batch_size * world:  # drop_last would leave no batch at all
            raise TaskError(f"--batch-size {self.batch_size} x {world} process(es) is larger than the "
                            f"{len(self.train_set)} training images in {self.folders.train_dir}")

    def train_dataloader(self) -> DataLoader:
        # drop_last as in the official recipe (and Mixup's batch mode needs equal, even batches).
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        # Under DDP each image is evaluated by exactly one process (Lightning's default sampler pads the last
        # ranks with repeated images), so the reduced top-1 is the accuracy over the whole val folder.
        sampler = None
        if self.trainer is not None and self.trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=self.trainer.world_size,
                                                   rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(self.val_set, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
