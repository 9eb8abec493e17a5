"""Folder-per-class image data (`<root>/train/<class>/*`, `<root>/val/<class>/*`) through timm's dataset and
transform factories: the official FocalNet train transform (bicubic RandomResizedCrop + flip, RandAugment, random
erasing) and evaluation transform (resize to size / crop_pct, center crop, bicubic, ImageNet mean/std)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from timm.data import ImageDataset, create_transform
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


def checked_dataset(split_dir: Path, arg: str, transform: Any) -> ImageDataset:
    """timm `ImageDataset` over `split_dir/<class>/*` after checking the layout; a few unreadable files are dropped
    with a warning naming the count and the first paths, a folder where none is readable is an error."""
    files = list_class_files(split_dir, arg)
    all_files = [f for fs in files.values() for f in fs]
    bad = find_unreadable_images(all_files)
    if len(bad) == len(all_files):
        raise TaskError(f"{arg}: none of the {len(all_files)} images under {split_dir} can be read "
                        f"(e.g. {bad[0]})")
    if bad:
        warnings.warn(describe_unreadable(bad, len(all_files), arg), stacklevel=2)
    dataset = ImageDataset(str(split_dir), transform=transform, input_img_mode="RGB")
    bad_set = {str(p) for p in bad}
    dataset.reader.samples = [s for s in dataset.reader.samples if str(s[0]) not in bad_set]
    return dataset


@dataclass
class FolderData:
    """Where the two splits are; `classes` is filled from the train split."""

    train_dir: Path
    val_dir: Path
    classes: list[str] = field(default_factory=list)

    @classmethod
    def from_root(cls, root: Path) -> FolderData:
        root = Path(root)
        if not root.is_dir():
            expected = f"{root}/train/<class>/ and {root}/val/<class>/"
            raise TaskError(f"--data: folder not found: {root} (expected {expected})")
        data = cls(root / "train", root / "val")
        train_classes = sorted(list_class_files(data.train_dir, "--data (train)"))
        check_same_classes(train_classes, list_class_files(data.val_dir, "--data (val)"), data.train_dir, data.val_dir)
        data.classes = train_classes
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
