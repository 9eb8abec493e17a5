"""Training loaders of the three `--crop-sampler`s. `posneg` and `classes` pick crop centres within each volume
(`RandCropByPosNegLabeld`, `RandCropByLabelClassesd`), volumes shuffled uniformly; a label value that lives in few
volumes is then a centre in few crops. `balanced` draws every label value equally often across the whole training
set: a `WeightedRandomSampler` draws (volume, label value) pairs, each value with probability 1/K (K: the values
present in any training volume) shared equally among the volumes holding it, and the pair's crops are centred on
voxels of that value (`RandCropByLabelClassesd` with one-hot ratios). The volumes are cached once, not per pair.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, list_data_collate
from torch.utils.data import Dataset, WeightedRandomSampler

from .data import DataConfig, build_transforms, train_augmentation

__all__ = ["ClassCentredCrops", "balanced_pairs", "label_presence", "training_loader"]


def label_presence(labels: Sequence[np.ndarray | torch.Tensor], num_classes: int) -> np.ndarray:
    """Boolean (volumes, num_classes): which label values each volume holds."""
    present = np.zeros((len(labels), num_classes), bool)
    for i, label in enumerate(labels):
        values = np.unique(np.asarray(label)).astype(int)
        present[i, values[(values >= 0) & (values < num_classes)]] = True
    return present


def balanced_pairs(present: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The (volume, label value) pairs of a presence matrix and their draw probabilities: every value present in
    some volume gets the same share, split equally among the volumes that hold it."""
    holders = present.sum(axis=0)
    values = np.flatnonzero(holders)
    if not len(values):
        raise ValueError("no label value is present in any training volume")
    pairs = [(int(v), int(c)) for c in values for v in np.flatnonzero(present[:, c])]
    weights = np.array([1.0 / (len(values) * holders[c]) for _, c in pairs])
    return pairs, weights


class ClassCentredCrops(Dataset):
    """Item i: the random crops of pair i's volume, centred on pair i's label value (`augment[value]`; a list, so
    that MONAI's DataLoader seeds the random transforms in it)."""

    def __init__(self, volumes: Dataset, pairs: Sequence[tuple[int, int]],
                 augment: Sequence[Callable[[dict], Any] | None]) -> None:
        self.volumes, self.pairs, self.augment = volumes, list(pairs), augment

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Any:
        volume, value = self.pairs[index]
        return self.augment[value](copy.deepcopy(self.volumes[volume]))


def training_loader(cases: Sequence[dict], cfg: DataConfig, batch_size: int, cache_rate: float, num_workers: int,
                    class_names: Sequence[str]) -> tuple[DataLoader, str]:
    """The training DataLoader of `cfg.crop_sampler` (an epoch: as many draws as `cases`) and a line saying how it
    draws crop centres."""
    drop_last = len(cases) > batch_size
    if cfg.crop_sampler != "balanced":
        data = CacheDataset(cases, build_transforms(cfg, train=True), cache_rate=cache_rate,
                            num_workers=max(num_workers, 1), progress=False)
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                            collate_fn=list_data_collate, drop_last=drop_last)
        how = ("RandCropByPosNegLabeld, --pos : --neg" if cfg.crop_sampler == "posneg"
               else "RandCropByLabelClassesd, label values equally often within each volume")
        return loader, f"crop centres ({cfg.crop_sampler}): {how}, volumes shuffled uniformly"
    volumes = CacheDataset(cases, build_transforms(cfg, train=False), cache_rate=cache_rate,
                           num_workers=max(num_workers, 1), progress=False)
    present = label_presence([volumes[i]["label"] for i in range(len(volumes))], cfg.num_classes)
    pairs, weights = balanced_pairs(present)
    values = sorted({c for _, c in pairs})
    augment = [train_augmentation(cfg, crop_class=c) if c in values else None for c in range(cfg.num_classes)]
    data = ClassCentredCrops(volumes, pairs, augment)
    sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(cases),
                                    replacement=True)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=list_data_collate, drop_last=drop_last)
    held = ", ".join(f"{class_names[c]} in {int(present[:, c].sum())}" for c in values)
    missing = [class_names[c] for c in range(cfg.num_classes) if c not in values]
    return loader, (f"crop centres (balanced): each of {len(values)} label values on 1/{len(values)} of the crops "
                    f"across the {len(cases)} training volumes ({held} of them; WeightedRandomSampler over "
                    f"(volume, label value) pairs)" + (f"; absent from training: {', '.join(missing)}" if missing
                                                        else ""))
