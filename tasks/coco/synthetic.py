"""A small COCO-format instance set of drawn shapes, written to disk so the real loader and COCOeval run on it.

Layout (as COCO): `<root>/annotations/instances_{train,val}.json`, `<root>/{train,val}/*.jpg`. Shapes (circle,
square, triangle) of varied scale (18 px to nearly the image side), colour and rotation on random backgrounds
(colour + gentle gradient + noise), each colour far from the background's and the other shapes'; later shapes may
occlude earlier ones (at most 40 % of any shape is hidden). Fully visible instances are stored as polygons,
occluded ones as compressed RLE of their visible pixels (both are COCO segmentation formats). Category ids have
gaps (1, 3, 5) like COCO's, so the contiguous-label mapping is exercised.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from ..common.files import atomic_write

CATEGORIES = [
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
    {"id": 5, "name": "triangle", "supercategory": "shape"},
]
_MARKER = "synthetic.json"
MIN_VISIBLE = 0.6  # a later shape may hide at most 40 % of an earlier one


@dataclass(frozen=True)
class Shapes:
    """The synthetic shapes set: how many images of which size, drawn with which seed. `write(root)` writes it
    (reusing `root` when it already holds this set); `written(root)` says whether it does (the marker file
    `synthetic.json` is written last, so other processes can wait for it)."""

    num_train: int = 400
    num_val: int = 80
    image_size: int = 128
    max_objects: int = 4
    min_extent: int = 18
    max_extent: int | None = None
    seed: int = 0

    def written(self, root: str | Path) -> bool:
        marker = Path(root) / _MARKER
        return marker.is_file() and json.loads(marker.read_text()) == self._marker()

    def write(self, root: str | Path) -> Path:
        root = Path(root)
        if self.written(root):
            return root
        # circles above ~108 px reach COCO's "large" (> 96^2 px)
        max_extent = self.image_size - 4 if self.max_extent is None else self.max_extent
        rng = np.random.default_rng(self.seed)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        for split, count in (("train", self.num_train), ("val", self.num_val)):
            _write_split(root, split, count, self.image_size, self.max_objects, self.min_extent, max_extent, rng)
        atomic_write(root / _MARKER, json.dumps(self._marker()))
        return root

    def _marker(self) -> dict[str, Any]:
        return {**asdict(self), "version": 3}


def make_shapes_dataset(root: str | Path, **shapes: Any) -> Path:
    """Write the dataset under `root` (reused when `root` already holds one made with the same arguments);
    `shapes`: the fields of `Shapes`."""
    return Shapes(**shapes).write(root)


def _write_split(
    root: Path, split: str, count: int, size: int, max_objects: int, min_ext: int, max_ext: int,
    rng: np.random.Generator,
) -> None:
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        file_name = f"{image_id:06d}.jpg"
        image, instances = _draw_image(size, int(rng.integers(1, max_objects + 1)), min_ext, max_ext, rng)
        image.save(image_dir / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for cat_id, polygon, visible, full in instances:
            ann = _annotation(len(annotations) + 1, image_id, cat_id, polygon, visible, full)
            annotations.append(ann)
    dataset = {
        "info": {"description": f"focalmod synthetic shapes ({split})", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    atomic_write(root / "annotations" / f"instances_{split}.json", json.dumps(dataset))


def _annotation(ann_id: int, image_id: int, cat_id: int, polygon: list[float], visible: np.ndarray,
                full: np.ndarray) -> dict:
    if visible.sum() == full.sum():  # fully visible: the polygon it was drawn from
        polygon = [round(v, 2) for v in polygon]
        xs, ys = polygon[0::2], polygon[1::2]
        h, w = visible.shape
        area = float(mask_utils.area(mask_utils.frPyObjects([polygon], h, w))[0])
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        segmentation: list | dict = [polygon]
    else:  # occluded: RLE of what is left visible
        rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
        area, bbox = float(mask_utils.area(rle)), mask_utils.toBbox(rle).tolist()
        segmentation = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    return {"id": ann_id, "image_id": image_id, "category_id": cat_id, "segmentation": segmentation,
            "area": area, "bbox": [round(v, 2) for v in bbox], "iscrowd": 0}


def _draw_image(size: int, num_objects: int, min_ext: int, max_ext: int, rng: np.random.Generator):
    background = _background(size, rng)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    used = [background.reshape(-1, 3).mean(0)]  # colours a new shape must differ from: background + shapes
    placed: list[tuple[int, list[float], np.ndarray, np.ndarray]] = []  # cat id, polygon, visible, full
    for _ in range(num_objects):
        for _attempt in range(20):
            cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]["id"]
            polygon = _shape(cat, size, min_ext, max_ext, rng)
            full = _raster(polygon, size)
            if full.sum() < 16:
                continue
            if all((vis & ~full).sum() >= MIN_VISIBLE * f.sum() for _, _, vis, f in placed):
                break
        else:
            continue
        placed = [(c, p, vis & ~full, f) for c, p, vis, f in placed]
        placed.append((cat, polygon, full.copy(), full))
        colour = _colour(used, rng)
        used.append(np.asarray(colour, dtype=np.float64))
        draw.polygon(polygon, fill=colour)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), placed


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random colour with a gentle linear gradient (at most +-30 per channel) in a random direction."""
    base, delta = rng.uniform(30, 225, 3), rng.uniform(-30, 30, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6) - 0.5
    return np.clip(base + 2 * delta * t[..., None], 0, 255).astype(np.uint8)


def _colour(used: list[np.ndarray], rng: np.random.Generator) -> tuple[int, int, int]:
    """A random colour at least 100 (RGB distance) from the background and the shapes already drawn (the best of
    50 draws otherwise), so every shape and every occlusion edge is visible."""
    best, best_dist = None, -1.0
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        dist = min(float(np.linalg.norm(c - u)) for u in used)
        if dist > best_dist:
            best, best_dist = c, dist
        if dist >= 100:
            break
    return tuple(int(v) for v in best)


def _shape(cat_id: int, size: int, min_ext: int, max_ext: int, rng: np.random.Generator) -> list[float]:
    """Flat polygon [x0, y0, x1, y1, ...] of a shape whose extent (diameter) is log-uniform, inside the image."""
    extent = math.exp(rng.uniform(math.log(min_ext), math.log(max_ext)))
    r = extent / 2
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    theta = rng.uniform(0, 2 * math.pi)
    n = {1: 32, 3: 4, 5: 3}[cat_id]
    return [v for k in range(n) for v in (cx + r * math.cos(theta + 2 * math.pi * k / n),
                                           cy + r * math.sin(theta + 2 * math.pi * k / n))]


def _raster(polygon: list[float], size: int) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=1)
    return np.asarray(mask, dtype=bool)
