"""mmseg's ADE20K pipelines (``configs/_base_/datasets/ade20k.py``) on uint8 numpy images, randomness from torch.

Train: ``Resize(img_scale, ratio_range)`` keeping the aspect ratio -> ``RandomCrop(crop, cat_max_ratio=0.75)`` ->
``RandomFlip(0.5)`` -> ``PhotoMetricDistortion`` -> ``Normalize`` -> ``Pad(crop, image 0, label 255)``.
Test: ``Normalize`` only; `inference.py` resizes to the test scale and back.

Resizing is bilinear without antialiasing for images (OpenCV ``INTER_LINEAR``, mmcv's default) and nearest for
labels. PhotoMetricDistortion as mmseg: each step with probability 0.5 - brightness +U(-32, 32), contrast
xU(0.5, 1.5) (before or after the colour steps, chosen at random), saturation xU(0.5, 1.5) in HSV, hue
+randint(-18, 18) of 180 (OpenCV's hue range); values clipped to 0..255 after each step. HSV conversion is PIL's
(hue in 256 steps instead of OpenCV's 180).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import IGNORE_INDEX

__all__ = ["EvalTransform", "TrainTransform", "rescale_size"]


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``imrescale``: the largest size with the same aspect ratio that fits `scale` (long, short edges)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 `(H, W, 3)` -> float `(3, H, W)`, `(x / 255 - mean) / std`."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def _coin() -> bool:
    return torch.rand(()).item() < 0.5


@dataclass
class TrainTransform:
    """`(image uint8 HWC, label uint8 HW)` -> `(float (3, crop, crop), long (crop, crop))`."""

    img_scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: int = 512
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = _uniform(*self.ratio_range)
        size = rescale_size(*label.shape, (int(self.img_scale[0] * ratio), int(self.img_scale[1] * ratio)))
        image, label = self._resize(image, label, size)
        image, label = self._crop(image, label)
        if torch.rand(()).item() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.photometric:
            image = photometric_distortion(image)
        x, y = _normalize(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64))
        pad_h, pad_w = self.crop_size - y.shape[0], self.crop_size - y.shape[1]
        return F.pad(x, (0, pad_w, 0, pad_h)), F.pad(y, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)

    @staticmethod
    def _resize(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if size == label.shape:
            return image, label
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        y = F.interpolate(torch.from_numpy(label)[None, None].float(), size=size, mode="nearest")
        image = x[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()
        return image, y[0, 0].to(torch.uint8).numpy()

    def _crop(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mmseg ``RandomCrop``: up to 10 tries for a crop whose largest class covers < cat_max_ratio of it."""
        height, width = label.shape
        crop = self.crop_size

        def window() -> tuple[slice, slice]:
            top = int(torch.randint(max(height - crop, 0) + 1, ()).item())
            left = int(torch.randint(max(width - crop, 0) + 1, ()).item())
            return slice(top, top + crop), slice(left, left + crop)

        rows, cols = window()
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                values, counts = np.unique(label[rows, cols], return_counts=True)
                counts = counts[values != IGNORE_INDEX]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                rows, cols = window()
        return image[rows, cols], label[rows, cols]


def photometric_distortion(image: np.ndarray) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion`` (brightness 32, contrast 0.5-1.5, saturation 0.5-1.5, hue 18) on uint8."""

    def convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def contrast(x: np.ndarray) -> np.ndarray:
        return convert(x, alpha=_uniform(0.5, 1.5)) if _coin() else x

    if _coin():
        image = convert(image, beta=_uniform(-32, 32))
    contrast_first = _coin()
    if contrast_first:
        image = contrast(image)
    saturate, shift_hue = _coin(), _coin()
    if saturate or shift_hue:
        hsv = np.array(Image.fromarray(np.ascontiguousarray(image)).convert("HSV"))
        if saturate:
            hsv[..., 1] = convert(hsv[..., 1], alpha=_uniform(0.5, 1.5))
        if shift_hue:
            delta = int(torch.randint(-18, 18, ()).item())  # of OpenCV's 180 hue steps; PIL has 256
            hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(delta * 256 / 180)) % 256
        image = np.array(Image.fromarray(hsv, mode="HSV").convert("RGB"))
    if not contrast_first:
        image = contrast(image)
    return image


@dataclass
class EvalTransform:
    """`(image uint8 HWC, label uint8 HW)` -> `(float (3, H, W), long (H, W))` at the original size."""

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _normalize(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64))
