"""Medical Segmentation Decathlon folders: `dataset.json` checks, per-case validation and MONAI dictionary
transforms (load -> channel first -> orientation -> spacing -> intensity -> crop foreground -> random crops/flips).

Layout (as the MSD tasks ship): ``root/dataset.json`` with ``"labels": {"0": "background", ...}``,
``"modality": {"0": "CT", ...}``, ``"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]``
and optionally ``"test": ["./imagesTs/y.nii.gz"]``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
from monai import transforms as T

from tasks.common.cli import TaskError

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # nibabel's world axes (passing them silences a MONAI warning)
CROP_SAMPLERS = ("posneg", "classes", "balanced")  # --crop-sampler choices (see DataConfig.crop_sampler)

__all__ = ["CROP_SAMPLERS", "DataConfig", "DecathlonDataset", "build_transforms", "check_case", "data_config",
           "read_decathlon", "split_cases", "train_augmentation"]


@dataclass
class DecathlonDataset:
    """What `dataset.json` says, with absolute paths."""

    root: Path
    name: str
    labels: dict[int, str]
    modalities: list[str]
    training: list[dict[str, Any]]  # image: a path, or one path per channel (nnU-Net raw layout)
    test: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        """Output channels (background included): one per label value."""
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        return [self.labels[k] for k in sorted(self.labels)]


@dataclass
class DataConfig:
    """Transform and loader settings (the CLI flags of the same names)."""

    spatial_dims: int = 3
    roi_size: tuple[int, ...] = (32, 32, 32)
    pixdim: tuple[float, ...] | None = None
    orientation: str | None = "RAS"
    intensity: str = "range"  # 'range' (ScaleIntensityRanged, CT) or 'zscore' (NormalizeIntensityd, MRI)
    a_min: float = 0.0
    a_max: float = 1.0
    crop_foreground: bool = True
    crop_sampler: str = "posneg"  # one of CROP_SAMPLERS: 'posneg' (RandCropByPosNegLabeld), 'classes'
    # (RandCropByLabelClassesd, label values equal within a volume), 'balanced' (equal across volumes: sampling.py)
    num_classes: int = 2  # label values 0..num_classes-1 (the 'classes' / 'balanced' samplers draw each equally)
    num_samples: int = 2
    pos: float = 1.0
    neg: float = 1.0
    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] | None = None  # spatial axes RandFlipd may mirror; None: every axis
    rot90_prob: float = 0.2
    shift_intensity_prob: float = 0.3


def data_config(flags: dict[str, Any], num_classes: int = 2) -> DataConfig:
    """The transform settings of a resolved `tasks.medical.train` flag set (its config.yaml) for a dataset of
    `num_classes` label values."""
    orientation = flags["orientation"]
    return DataConfig(
        spatial_dims=flags["spatial_dims"], roi_size=tuple(flags["roi_size"]),
        pixdim=tuple(flags["pixdim"]) if flags["pixdim"] else None,
        orientation=None if str(orientation).lower() == "none" else orientation,
        intensity=flags["intensity"], a_min=flags["a_min"] or 0.0, a_max=flags["a_max"] or 1.0,
        crop_foreground=not flags["no_crop_foreground"], crop_sampler=flags.get("crop_sampler", "posneg"),
        num_classes=num_classes, num_samples=flags["num_samples"], pos=flags["pos"],
        neg=flags["neg"], flip_prob=flags["flip_prob"],
        flip_axes=tuple(flags["flip_axes"]) if flags.get("flip_axes") is not None else None,
        rot90_prob=flags["rot90_prob"],
        shift_intensity_prob=flags["shift_intensity_prob"],
    )


def _resolve(root: Path, entry: Any, where: str) -> Path:
    if not isinstance(entry, str) or not entry:
        raise TaskError(f"{root / 'dataset.json'}: {where} must be a file path string, got {entry!r}")
    path = (root / entry).resolve()
    if not path.is_file():
        raise TaskError(f"{root / 'dataset.json'}: {where} lists {entry}, which does not exist ({path})")
    return path


def read_decathlon(root: Path) -> DecathlonDataset:
    """Parse and check `root/dataset.json`: labels, modalities, and that every listed file exists. A folder in
    nnU-Net's raw layout (v2 dataset.json) is read by `tasks.medical.nnunet_raw` into the same structure."""
    root = Path(root)
    meta = root / "dataset.json"
    if not root.is_dir():
        raise TaskError(f"--data: {root} is not a directory (expected a Decathlon task folder with dataset.json)")
    if not meta.is_file():
        raise TaskError(f"--data: no dataset.json in {root} (expected the Medical Segmentation Decathlon layout)")
    try:
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TaskError(f"{meta} is not valid JSON: {err}") from None
    if isinstance(info, dict) and ("channel_names" in info or "file_ending" in info):  # nnU-Net v2 raw layout
        from .nnunet_raw import read_nnunet_raw

        return read_nnunet_raw(root, info)
    for key in ("labels", "training"):
        if key not in info:
            raise TaskError(f"{meta}: missing key {key!r} (Decathlon dataset.json has labels, modality, training)")
    try:
        labels = {int(k): str(v) for k, v in info["labels"].items()}
    except (AttributeError, ValueError):
        raise TaskError(f"{meta}: 'labels' must map integer label values to names, got {info['labels']!r}") from None
    if sorted(labels) != list(range(len(labels))):
        raise TaskError(f"{meta}: label values must be 0..K-1 (0 = background), got {sorted(labels)}")
    if len(labels) < 2:
        raise TaskError(f"{meta}: needs background and at least one foreground label, got {labels}")
    modality = info.get("modality", {"0": "image"})
    modalities = [str(modality[k]) for k in sorted(modality, key=int)]
    training = []
    for i, case in enumerate(info["training"]):
        if not isinstance(case, dict) or "image" not in case or "label" not in case:
            raise TaskError(f"{meta}: training[{i}] must be {{'image': ..., 'label': ...}}, got {case!r}")
        training.append({"image": str(_resolve(root, case["image"], f"training[{i}].image")),
                         "label": str(_resolve(root, case["label"], f"training[{i}].label"))})
    if not training:
        raise TaskError(f"{meta}: the training list is empty")
    test = [str(_resolve(root, entry, f"test[{i}]")) for i, entry in enumerate(info.get("test", []))]
    return DecathlonDataset(root, str(info.get("name", root.name)), labels, modalities, training, test)


def _load(path: str) -> nib.spatialimages.SpatialImage:
    try:
        return nib.load(path)
    except Exception as err:  # nibabel raises many types for unreadable files
        raise TaskError(f"cannot read {path} as NIfTI: {type(err).__name__}: {err}") from None


def check_case(case: dict[str, Any], labels: dict[int, str], spatial_dims: int, num_modalities: int) -> None:
    """Raise a TaskError naming the file unless image and label agree (spatial shape, affine), the image has
    `spatial_dims` spatial axes (+ one modality axis when there are several) and every label value is declared.
    An image given as a list (nnU-Net's raw layout: one file per channel) is checked file by file."""
    if isinstance(case["image"], list):
        if len(case["image"]) != num_modalities:
            raise TaskError(f"{case['label']}: {len(case['image'])} channel file(s), dataset.json declares "
                            f"{num_modalities}")
        for channel in case["image"]:
            check_case({"image": channel, "label": case["label"]}, labels, spatial_dims, 1)
        return
    image, label = _load(case["image"]), _load(case["label"])
    img_shape, lbl_shape = tuple(image.shape), tuple(label.shape)
    expected_ndim = spatial_dims + (num_modalities > 1)
    if len(img_shape) != expected_ndim or (num_modalities > 1 and img_shape[-1] != num_modalities):
        raise TaskError(
            f"{case['image']}: shape {img_shape}, expected {spatial_dims} spatial axes"
            + (f" + {num_modalities} modalities last" if num_modalities > 1 else "")
            + f" (--spatial-dims {spatial_dims}, {num_modalities} modalit{'ies' if num_modalities > 1 else 'y'} in "
            "dataset.json)"
        )
    if lbl_shape != img_shape[:spatial_dims]:
        raise TaskError(f"{case['label']}: label shape {lbl_shape} differs from its image {case['image']} "
                        f"{img_shape[:spatial_dims]}")
    if not np.allclose(image.affine, label.affine, atol=1e-3, rtol=1e-4):
        raise TaskError(f"{case['label']}: affine differs from its image {case['image']} (label "
                        f"{np.round(label.affine, 4).tolist()} vs image {np.round(image.affine, 4).tolist()})")
    values = np.unique(np.asanyarray(label.dataobj))
    unknown = [v.item() for v in values if float(v) not in labels or float(v) != int(v)]
    if unknown:
        raise TaskError(f"{case['label']}: label values {unknown[:10]} are not in dataset.json labels "
                        f"{sorted(labels)}")


def split_cases(cases: Sequence[dict], val_frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic shuffled split; at least one case on each side."""
    if len(cases) < 2:
        raise TaskError(f"need at least 2 training cases to hold one out for validation, got {len(cases)}")
    if not 0.0 < val_frac < 1.0:
        raise TaskError(f"--val-frac must be in (0, 1), got {val_frac}")
    order = np.random.RandomState(seed).permutation(len(cases))
    num_val = min(max(1, round(val_frac * len(cases))), len(cases) - 1)
    return [cases[i] for i in order[num_val:]], [cases[i] for i in order[:num_val]]


def build_transforms(cfg: DataConfig, train: bool, keys: Sequence[str] = ("image", "label")) -> T.Compose:
    """MONAI dictionary transforms; the deterministic prefix is invertible (`Invertd` maps predictions back).
    `train=True` appends `train_augmentation` (for --crop-sampler posneg / classes)."""
    keys = list(keys)
    has_label = "label" in keys
    interp = ["bilinear", "nearest"] if has_label else ["bilinear"]
    steps: list[T.Transform] = [T.LoadImaged(keys, reader="NibabelReader", image_only=True),
                                T.EnsureChannelFirstd(keys)]
    if cfg.orientation:
        steps.append(T.Orientationd(keys, axcodes=cfg.orientation[: cfg.spatial_dims], labels=_RAS_LABELS))
    if cfg.pixdim:
        steps.append(T.Spacingd(keys, pixdim=cfg.pixdim, mode=interp))
    if cfg.intensity == "zscore":
        steps.append(T.NormalizeIntensityd("image", nonzero=True, channel_wise=True))
    else:
        steps.append(T.ScaleIntensityRanged("image", a_min=cfg.a_min, a_max=cfg.a_max, b_min=0.0, b_max=1.0,
                                            clip=True))
    if cfg.crop_foreground:
        steps.append(T.CropForegroundd(keys, source_key="image", allow_smaller=True))
    if train:
        steps += train_augmentation(cfg, keys).transforms
    return T.Compose(steps)


def train_augmentation(cfg: DataConfig, keys: Sequence[str] = ("image", "label"),
                       crop_class: int | None = None) -> T.Compose:
    """The random part of the training transforms: pad to the ROI, `num_samples` crops, flips, intensity shift,
    rot90. `crop_class` (--crop-sampler balanced) centres every crop on a voxel of that label value."""
    keys = list(keys)
    axes = tuple(range(cfg.spatial_dims)) if cfg.flip_axes is None else cfg.flip_axes
    if cfg.crop_sampler == "balanced":  # the label value is drawn across volumes (tasks/medical/sampling.py)
        if crop_class is None:
            raise ValueError("--crop-sampler balanced draws the label value per volume: give crop_class")
        ratios = [float(k == crop_class) for k in range(cfg.num_classes)]
        crop = T.RandCropByLabelClassesd(keys, label_key="label", spatial_size=cfg.roi_size, ratios=ratios,
                                         num_classes=cfg.num_classes, num_samples=cfg.num_samples, warn=False)
    elif cfg.crop_sampler == "classes":  # crop centres on every label value equally often (small ones included)
        crop = T.RandCropByLabelClassesd(keys, label_key="label", spatial_size=cfg.roi_size,
                                         num_classes=cfg.num_classes, num_samples=cfg.num_samples,
                                         image_key="image", image_threshold=0, warn=False)
    else:
        crop = T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=cfg.roi_size, pos=cfg.pos,
                                        neg=cfg.neg, num_samples=cfg.num_samples, image_key="image",
                                        image_threshold=0)
    steps: list[T.Transform] = [
        T.SpatialPadd(keys, spatial_size=cfg.roi_size),
        crop,
        *[T.RandFlipd(keys, prob=cfg.flip_prob, spatial_axis=a) for a in axes],
        T.RandShiftIntensityd("image", offsets=0.1, prob=cfg.shift_intensity_prob),
    ]
    if cfg.rot90_prob > 0 and cfg.roi_size[0] == cfg.roi_size[1]:  # a 90-degree turn keeps the crop shape
        steps.append(T.RandRotate90d(keys, prob=cfg.rot90_prob, max_k=3, spatial_axes=(0, 1)))
    return T.Compose(steps)
