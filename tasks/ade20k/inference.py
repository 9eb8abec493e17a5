"""mmseg's test-time inference (``EncoderDecoder.whole_inference / slide_inference / aug_test``) for any model
mapping `(B, 3, h, w)` to logits of the same size.

For each scale ratio (single-scale: 1.0; multi-scale: 0.5 ... 1.75) the image is resized to fit
``(scale[0] * r, scale[1] * r)`` keeping its aspect ratio, run whole or by sliding windows (logits of overlapping
windows averaged), the logits resized back to the original size and turned into softmax probabilities; with flip
the mirrored image's probabilities are mirrored back. The probabilities of all passes are averaged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from focalmod.models.upernet import resize

from .transforms import rescale_size

__all__ = ["MULTI_SCALE_RATIOS", "InferenceConfig", "predict_probs", "slide_logits"]

MULTI_SCALE_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclass
class InferenceConfig:
    """How to evaluate: mmseg ``test_cfg`` + the test pipeline's scale / ratios / flip."""

    mode: str = "whole"  # 'whole' or 'slide'
    scale: tuple[int, int] = (2048, 512)
    ratios: tuple[float, ...] = (1.0,)
    flip: bool = False
    crop_size: int = 512
    stride: int = 341

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"test mode must be 'whole' or 'slide', got {self.mode!r}")
        if self.mode == "slide" and not 0 < self.stride <= self.crop_size:
            raise ValueError(f"slide stride must be in 1..crop_size ({self.crop_size}), got {self.stride}")


def slide_logits(model: nn.Module, image: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """Logits of `(1, 3, H, W)` from overlapping `crop` windows `stride` apart (the last flush with the border)."""
    height, width = image.shape[-2:]
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    total = count = None
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, height), min(c * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            logits = model(image[..., y1:y2, x1:x2])
            if total is None:
                total = image.new_zeros((image.shape[0], logits.shape[1], height, width))
                count = image.new_zeros((1, 1, height, width))
            total[..., y1:y2, x1:x2] += logits
            count[..., y1:y2, x1:x2] += 1
    return total / count


@torch.no_grad()
def predict_probs(model: nn.Module, image: torch.Tensor, cfg: InferenceConfig) -> torch.Tensor:
    """Class probabilities `(B, K, H, W)` for normalised images `(B, 3, H, W)` at their original size."""
    height, width = image.shape[-2:]
    probs = None
    passes = 0
    for ratio in cfg.ratios:
        scale = (int(cfg.scale[0] * ratio), int(cfg.scale[1] * ratio))
        size = rescale_size(height, width, scale)
        scaled = resize(image, size) if size != (height, width) else image
        for flip in (False, True) if cfg.flip else (False,):
            x = scaled.flip(-1) if flip else scaled
            logits = model(x) if cfg.mode == "whole" else slide_logits(model, x, cfg.crop_size, cfg.stride)
            p = resize(logits, (height, width)).softmax(1)
            p = p.flip(-1) if flip else p
            probs = p if probs is None else probs + p
            passes += 1
    return probs / passes

