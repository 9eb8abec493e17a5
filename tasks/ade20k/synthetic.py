"""A small ADE20K-layout scene set, written to disk so the real reader, pipeline and metrics run on it.

Two scene types of 96x128 pixels, seven classes in three colour groups, so that a pixel's colour alone cannot tell
most classes apart and a model has to use texture, shape and surroundings:

* outdoor: ``sky`` above a horizon, ``sea`` below it - the same blue (drawn per image) and noise, the sea with
  horizontal waves whose mean is that blue; 1-2 ``boat`` (hull + sail) on the sea;
* indoor: ``wall`` above, ``floor`` below - the same grey-beige, the floor with a chequered tile texture of the
  same mean; 1-2 ``window`` on the wall in the outdoor blue (a pane with a dark frame); one ``sofa`` on the floor
  in the boats' red.

Blue pixels are sky, sea or window; grey ones wall or floor; red ones boat or sofa. A few small discs of random
colour are label 0 ("other", ignored in training and evaluation, as in ADE20K). Images are JPEG, label maps
8-bit PNG, ``objectInfo150.txt`` lists the classes (ADE20K's file format).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..common.files import atomic_write

CLASSES = ("sky", "sea", "wall", "floor", "window", "boat", "sofa")
SKY, SEA, WALL, FLOOR, WINDOW, BOAT, SOFA = range(1, len(CLASSES) + 1)
HEIGHT, WIDTH = 96, 128
_MARKER = "synthetic.json"

__all__ = ["CLASSES", "make_scenes_dataset", "scenes_written"]


def _params(num_train: int, num_val: int, seed: int) -> dict:
    return dict(num_train=num_train, num_val=num_val, seed=seed, height=HEIGHT, width=WIDTH, version=1)


def scenes_written(root: str | Path, num_train: int = 400, num_val: int = 100, seed: int = 0) -> bool:
    """Whether `root` holds the complete set made with these arguments (its marker file is written last)."""
    marker = Path(root) / _MARKER
    return marker.is_file() and json.loads(marker.read_text()) == _params(num_train, num_val, seed)


def make_scenes_dataset(root: str | Path, num_train: int = 400, num_val: int = 100, seed: int = 0) -> Path:
    """Write the set under `root` (reused when `root` already holds one made with the same arguments)."""
    root = Path(root)
    if scenes_written(root, num_train, num_val, seed):
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("training", num_train), ("validation", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            image, label = draw_scene(rng)
            name = f"ADE_{'train' if split == 'training' else 'val'}_{i:08d}"
            Image.fromarray(image).save(root / "images" / split / f"{name}.jpg", quality=92)
            Image.fromarray(label, mode="L").save(root / "annotations" / split / f"{name}.png")
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0\t0\t0\t{name}" for i, name in enumerate(CLASSES, 1)]
    atomic_write(root / "objectInfo150.txt", "\n".join(rows) + "\n")
    atomic_write(root / _MARKER, json.dumps(_params(num_train, num_val, seed)))
    return root


def draw_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB uint8 `(H, W, 3)` and its ADE-style label map uint8 `(H, W)` (0 = other, 1..7)."""
    label = Image.new("L", (WIDTH, HEIGHT), 0)
    draw = ImageDraw.Draw(label)
    if rng.random() < 0.5:
        _outdoor(draw, rng)
    else:
        _indoor(draw, rng)
    for _ in range(int(rng.integers(0, 3))):  # clutter: "other"
        x, y, r = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(2, 5)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=0)
    label = np.asarray(label)
    return _render(label, rng), label


def _outdoor(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    horizon = int(rng.uniform(0.35, 0.6) * HEIGHT)
    draw.rectangle([0, 0, WIDTH, horizon - 1], fill=SKY)
    draw.rectangle([0, horizon, WIDTH, HEIGHT], fill=SEA)
    for _ in range(int(rng.integers(1, 3))):
        width = rng.uniform(22, 40)
        x = rng.uniform(2, WIDTH - width - 2)
        hull_top = rng.uniform(horizon + 2, HEIGHT - 14)
        hull_h = rng.uniform(6, 10)
        inset = width * 0.18
        draw.polygon([(x, hull_top), (x + width, hull_top), (x + width - inset, hull_top + hull_h),
                      (x + inset, hull_top + hull_h)], fill=BOAT)
        mast = x + width * rng.uniform(0.35, 0.6)
        sail_h = rng.uniform(12, 24)
        draw.polygon([(mast, hull_top - sail_h), (mast, hull_top - 1), (mast + width * 0.35, hull_top - 1)],
                     fill=BOAT)


def _indoor(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    skirting = int(rng.uniform(0.5, 0.7) * HEIGHT)
    draw.rectangle([0, 0, WIDTH, skirting - 1], fill=WALL)
    draw.rectangle([0, skirting, WIDTH, HEIGHT], fill=FLOOR)
    for _ in range(int(rng.integers(1, 3))):
        w, h = rng.uniform(16, 30), rng.uniform(16, 26)
        x, y = rng.uniform(2, WIDTH - w - 2), rng.uniform(2, max(skirting - h - 6, 3))
        draw.rectangle([x, y, x + w, y + h], fill=WINDOW)
    width, seat_h, back_h = rng.uniform(30, 50), rng.uniform(8, 12), rng.uniform(8, 14)
    x = rng.uniform(2, WIDTH - width - 2)
    bottom = rng.uniform(skirting + seat_h + 4, HEIGHT - 2)
    seat_top = bottom - seat_h
    arm = width * 0.12
    draw.rectangle([x, seat_top, x + width, bottom], fill=SOFA)  # seat
    draw.rectangle([x + arm, seat_top - back_h, x + width - arm, seat_top], fill=SOFA)  # back
    draw.rectangle([x, seat_top - 4, x + arm, seat_top], fill=SOFA)  # arms
    draw.rectangle([x + width - arm, seat_top - 4, x + width, seat_top], fill=SOFA)


def _render(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colours by class group (per-image base colour + noise) and same-mean textures that separate the pairs."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    blue = np.array([rng.uniform(50, 120), rng.uniform(110, 180), rng.uniform(180, 240)])
    grey = rng.uniform(120, 190) + rng.uniform(-12, 12, 3)
    red = np.array([rng.uniform(150, 220), rng.uniform(30, 80), rng.uniform(30, 80)])
    period, phase = rng.uniform(5, 8), rng.uniform(0, 2 * np.pi)
    waves = 28 * np.sin(2 * np.pi * yy / period + phase + 0.6 * np.sin(xx / 9))
    tile = int(rng.integers(7, 12))
    tiles = 22 * np.where(((yy // tile) + (xx // tile)) % 2 == 0, 1.0, -1.0)
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    for value, base, texture in (
        (SKY, blue, 0.0), (SEA, blue, waves), (WINDOW, blue, 0.0), (WALL, grey, 0.0), (FLOOR, grey, tiles),
        (BOAT, red, 0.0), (SOFA, red, 0.0),
    ):
        mask = label == value
        image[mask] = base + (texture[mask, None] if isinstance(texture, np.ndarray) else 0.0)
    frame = (label == WINDOW) & ~_erode(label == WINDOW)  # the window frame: dark grey, still "window"
    image[frame] = 60
    other = label == 0
    image[other] = rng.uniform(0, 255, 3)
    image *= rng.uniform(0.85, 1.15)  # global exposure
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _erode(mask: np.ndarray) -> np.ndarray:
    """`mask` shrunk by one pixel (4-neighbourhood)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner
