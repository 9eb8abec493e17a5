"""The embedded default: a small noisy synthetic segmentation set written as a Medical Segmentation Decathlon
folder (`dataset.json`, `imagesTr/`, `labelsTr/`, `imagesTs/`, NIfTI), so the real loader is what trains on it.

Images come from MONAI's `create_test_image_2d/3d` (random discs/spheres, each of class 1..C whose intensity
is its class) with two kinds of noise: MONAI's uniform `noise_max` (background up to the class-1 level) and
added Gaussian noise, so no intensity threshold separates the classes (`intensity_threshold_dice` measures
the best one can do) and the network must use shape and context.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data.synthetic import create_test_image_2d, create_test_image_3d

from tasks.common.files import atomic_write

from .baseline import best_windows

__all__ = ["SYNTHETIC_AFFINE_DIAG", "intensity_threshold_dice", "write_synthetic_decathlon"]

# Voxel spacing (mm) and axis flips of the files: L and P flipped (an LPS-like affine, as scanners write), so
# `Orientationd` really reorients and the prediction writer must undo it.
SYNTHETIC_AFFINE_DIAG = (-1.5, -1.5, 2.0)


def _affine(spatial_dims: int) -> np.ndarray:
    affine = np.eye(4)
    for i in range(spatial_dims):
        affine[i, i] = SYNTHETIC_AFFINE_DIAG[i]
    affine[:3, 3] = (40.0, 30.0, -20.0)
    return affine


def _case(rng: np.random.RandomState, spatial_dims: int, size: int, num_classes: int, noise_max: float,
          noise_std: float) -> tuple[np.ndarray, np.ndarray]:
    rad_max = max(3, size // 4)
    kwargs = dict(num_objs=8, rad_max=rad_max, rad_min=max(2, size // 10), noise_max=noise_max,
                  num_seg_classes=num_classes, random_state=rng)
    if spatial_dims == 3:
        image, label = create_test_image_3d(size, size, size, **kwargs)
    else:
        image, label = create_test_image_2d(size, size, **kwargs)
    image = image + rng.normal(0.0, noise_std, size=image.shape)
    return image.astype(np.float32), label.astype(np.uint8)


def write_synthetic_decathlon(
    root: Path,
    spatial_dims: int = 3,
    size: int = 48,
    num_train: int = 20,
    num_test: int = 2,
    num_classes: int = 2,
    noise_max: float = 0.5,
    noise_std: float = 0.15,
    seed: int = 0,
) -> Path:
    """Write `num_train` labelled and `num_test` unlabelled cases of side `size` under `root`; returns `root`.

    Reuses the folder if its `dataset.json` was written with the same settings (so `--resume` and `--compare`
    train on identical files).
    """
    root = Path(root)
    settings = dict(spatial_dims=spatial_dims, size=size, num_train=num_train, num_test=num_test,
                    num_classes=num_classes, noise_max=noise_max, noise_std=noise_std, seed=seed)
    meta = root / "dataset.json"
    if meta.is_file() and json.loads(meta.read_text()).get("synthetic") == settings:
        return root
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    affine = _affine(spatial_dims)
    training, test = [], []
    for i in range(num_train + num_test):
        image, label = _case(rng, spatial_dims, size, num_classes, noise_max, noise_std)
        name = f"synth_{i:03d}.nii.gz"
        if i < num_train:
            nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / name)
            nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            nib.save(nib.Nifti1Image(image, affine), root / "imagesTs" / name)
            test.append(f"./imagesTs/{name}")
    dataset = {
        "name": f"Synthetic{spatial_dims}D",
        "description": "noisy discs/spheres from monai.data.synthetic (focalmod embedded default)",
        "tensorImageSize": f"{spatial_dims}D",
        "modality": {"0": "synthetic"},
        "labels": {"0": "background", **{str(c): f"class{c}" for c in range(1, num_classes + 1)}},
        "numTraining": num_train,
        "numTest": num_test,
        "training": training,
        "test": test,
        "synthetic": settings,
    }
    atomic_write(meta, json.dumps(dataset, indent=2) + "\n")  # written last: other ranks wait for it
    return root


def intensity_threshold_dice(images: list[np.ndarray], labels: list[np.ndarray], num_classes: int,
                             bins: int = 128) -> float:
    """Mean foreground Dice of the best intensity-window classifier: for each class, the window [lo, hi) of
    intensity quantiles with the highest Dice, chosen on the evaluated data itself (an optimistic reference for
    what intensity alone can do; the task's baseline chooses on the training cases, `tasks.medical.baseline`)."""
    return float(np.mean([dice for *_, dice in best_windows(images, labels, num_classes, bins)]))
