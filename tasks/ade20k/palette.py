"""Predictions as palette PNGs: pixel value = ADE20K label value (class index + 1, like the annotations), colours
from the PASCAL VOC colour map, so the files are both viewable and machine-readable like the annotations.

The VOC map (VOCdevkit's ``labelcolormap.m``) gives label value v the colour whose R, G, B bits are v's bits taken
in turn (bit 0 -> R, 1 -> G, 2 -> B, then the next three) and written from the top bit of each channel down: value
0 is black and neighbouring values get clearly different colours, for any number of classes up to 255.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["save_palette_png", "voc_colormap"]


def voc_colormap(size: int = 256) -> np.ndarray:
    """`(size, 3)` uint8 RGB colours of label values 0..size-1 (the PASCAL VOC bit-interleave colour map)."""
    values = np.arange(size)
    colours = np.zeros((size, 3), dtype=np.int64)
    for bit in range(8):  # bits 3*bit .. 3*bit+2 of the value go to bit 7-bit of R, G, B
        for channel in range(3):
            colours[:, channel] |= ((values >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


_PALETTE = voc_colormap(256).reshape(-1).tolist()  # PIL's flat 768-entry palette, built once


def save_palette_png(path: Path, prediction: np.ndarray, num_classes: int) -> Path:
    """Write class indices `(H, W)` in 0..K-1 as a mode-P PNG holding label values 1..K (VOC colours)."""
    if num_classes > 255:
        raise ValueError(f"a palette PNG holds at most 255 classes, got {num_classes}")
    image = Image.fromarray((np.asarray(prediction, dtype=np.int64) + 1).astype(np.uint8), mode="P")
    image.putpalette(_PALETTE)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
