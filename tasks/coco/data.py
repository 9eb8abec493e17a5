"""COCO-format instances (JSON + image folder) read through pycocotools, and COCOeval for `bbox` / `segm`.

Bad input is handled the way COCO tools do, never silently: images listed in the JSON but missing on disk, an
unknown `category_id`/`image_id` or a malformed file -> one `TaskError` naming the file; crowd regions, boxes
outside the image (clipped) or of zero area after clipping, and unusable segmentations are left out of the
training targets and counted (`CocoInstances.report`); images without a usable annotation are skipped for
training (counted) but kept for evaluation. Category ids need not be contiguous: labels are 1..K in sorted id
order and results are written with the original ids.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import Dataset

from ..common import TaskError

__all__ = ["CocoInstances", "coco_evaluate", "collate", "detections_to_coco", "resolve_split", "STAT_NAMES"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def resolve_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation JSON, image folder) for `split` under a COCO root: `annotations/instances_<split>.json` and
    `<split>/` (e.g. `val2017`)."""
    root = Path(root)
    if not root.is_dir():
        raise TaskError(f"--data: {root} is not a directory (expected a COCO root with annotations/ and images)")
    ann = root / "annotations" / f"instances_{split}.json"
    images = root / split
    if not ann.is_file():
        found = sorted(p.name for p in (root / "annotations").glob("instances_*.json"))
        raise TaskError(f"--data: no {ann.relative_to(root)} in {root} (found: {', '.join(found) or 'none'})")
    if not images.is_dir():
        raise TaskError(f"--data: image folder {images} for split {split!r} does not exist")
    return ann, images


def load_coco(ann_file: str | Path) -> COCO:
    """pycocotools `COCO` for a file, with a clear error for unreadable / malformed JSON (and no stdout chatter)."""
    ann_file = Path(ann_file)
    try:
        data = json.loads(ann_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TaskError(f"{ann_file}: not a readable JSON file ({err})") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise TaskError(f"{ann_file}: not a COCO instances file (missing {', '.join(missing)})")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoInstances(Dataset):
    """(image float tensor 3xHxW in [0, 1], target) pairs; target has `boxes` (xyxy, pixels), `labels` (1..K),
    `masks` (N, H, W uint8, with `masks=True`) and `image_id`.

    Args:
        train: drop crowd / degenerate annotations and images left without any (counted in `report`); with
            `train=False` every image is kept (targets are only used by COCOeval through `coco`).
        flip: random horizontal flip (training augmentation).
        category_ids: fix the label order to these ids (e.g. a checkpoint's); default: the file's, sorted.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        train: bool = True,
        masks: bool = True,
        flip: bool = False,
        category_ids: Sequence[int] | None = None,
    ) -> None:
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        self.train, self.masks, self.flip = train, masks, flip
        self.coco = load_coco(self.ann_file)
        file_ids = sorted(self.coco.cats)
        if not file_ids:
            raise TaskError(f"{self.ann_file}: no categories")
        if category_ids is not None and sorted(category_ids) != file_ids:
            raise TaskError(f"{self.ann_file}: categories {file_ids} differ from the model's {sorted(category_ids)}")
        self.category_ids = list(category_ids) if category_ids is not None else file_ids
        self.category_names = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self._check_references()
        self.report: Counter = Counter(images=len(self.coco.imgs))
        self._targets = {img_id: self._clean(img_id) for img_id in sorted(self.coco.imgs)}
        self.ids = [i for i, anns in self._targets.items() if anns or not train]
        self.report["kept"] = len(self.ids)

    def _check_references(self) -> None:
        anns = self.coco.dataset["annotations"]
        refs = (("category_id", self.coco.cats, "categories"), ("image_id", self.coco.imgs, "images"))
        for field, table, where in refs:
            bad = [a for a in anns if a.get(field) not in table]
            if bad:
                raise TaskError(f"{self.ann_file}: {len(bad)} annotation(s) have a {field} not in '{where}' "
                                f"(first: annotation {bad[0].get('id')} with {field} {bad[0].get(field)})")
        images = self.coco.imgs.values()
        missing = [img["file_name"] for img in images if not (self.image_dir / img["file_name"]).is_file()]
        if missing:
            raise TaskError(f"{len(missing)} of {len(self.coco.imgs)} images listed in {self.ann_file} are missing "
                            f"under {self.image_dir} (first: {missing[0]})")

    def _clean(self, img_id: int) -> list[tuple[list[float], int, dict]]:
        """Training annotations of an image as (clipped xyxy box, label, annotation); the rest counted."""
        info = self.coco.imgs[img_id]
        w, h = info["width"], info["height"]
        kept = []
        anns = self.coco.imgToAnns.get(img_id, [])
        if not anns:
            self.report["images_without_annotations"] += 1
        for ann in anns:
            self.report["annotations"] += 1
            if ann.get("iscrowd", 0):
                self.report["crowd"] += 1
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                self.report["degenerate_boxes"] += 1
                continue
            x, y, bw, bh = (float(v) for v in bbox)
            box = [max(x, 0.0), max(y, 0.0), min(x + bw, w), min(y + bh, h)]
            if box[2] <= box[0] or box[3] <= box[1]:
                self.report["degenerate_boxes"] += 1
                continue
            if box != [x, y, x + bw, y + bh]:
                self.report["clipped_boxes"] += 1
            if self.masks and not _valid_segmentation(ann.get("segmentation")):
                self.report["invalid_segmentations"] += 1
                continue
            kept.append((box, self.label_of[ann["category_id"]], ann))
        if anns and not kept:
            self.report["images_without_usable_annotations"] += 1
        return kept

    def summary(self) -> str:
        r = self.report
        parts = [f"{r['kept']} of {r['images']} images", f"{r['annotations']} annotations"]
        skipped = r["images"] - r["kept"]
        if skipped:
            parts.append(f"{skipped} images without usable annotations skipped")
        for key in ("crowd", "degenerate_boxes", "clipped_boxes", "invalid_segmentations"):
            if r[key]:
                parts.append(f"{r[key]} {key.replace('_', ' ')}" + (" dropped" if key != "clipped_boxes" else ""))
        return ", ".join(parts)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        path = self.image_dir / info["file_name"]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except OSError as err:
            raise TaskError(f"cannot read image {path}: {err}") from None
        if image.size != (info["width"], info["height"]):
            raise TaskError(f"{path}: size {image.size} differs from width/height {info['width']}x{info['height']} "
                            f"in {self.ann_file}")
        tensor = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        anns = self._targets[img_id]
        target: dict[str, Any] = {
            "image_id": img_id,
            "boxes": torch.tensor([a[0] for a in anns], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([a[1] for a in anns], dtype=torch.int64),
        }
        if self.masks:
            h, w = info["height"], info["width"]
            masks = [self.coco.annToMask(a[2]) for a in anns]
            target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.uint8)
        if self.flip and torch.rand(()) < 0.5:
            tensor, target = _hflip(tensor, target)
        return tensor, target


def _valid_segmentation(segm: Any) -> bool:
    """Polygons need >= 3 points (detectron2's rule); RLE needs `size` and `counts`."""
    if isinstance(segm, list):
        return bool(segm) and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segm)
    return isinstance(segm, dict) and "size" in segm and "counts" in segm


def _hflip(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def collate(batch: list) -> tuple[tuple[torch.Tensor, ...], tuple[dict, ...]]:
    """Detection batches stay lists: images differ in size (torchvision's transform resizes and pads them)."""
    return tuple(zip(*batch))


def detections_to_coco(
    image_id: int, output: dict[str, torch.Tensor], category_ids: Sequence[int], mask_threshold: float = 0.5
) -> tuple[list[dict], list[dict]]:
    """One image's torchvision detections -> COCO results (bbox xywh; segm as compressed RLE with str counts),
    labels mapped back to the dataset's original category ids."""
    boxes = output["boxes"].detach().float().cpu()
    scores = output["scores"].detach().float().cpu().tolist()
    cats = [category_ids[int(label) - 1] for label in output["labels"].cpu()]
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    bbox = [{"image_id": image_id, "category_id": c, "bbox": [round(v, 2) for v in b], "score": round(s, 5)}
            for c, b, s in zip(cats, xywh, scores)]
    segm = []
    if "masks" in output:
        binary = (output["masks"].detach()[:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
        for c, s, m in zip(cats, scores, binary):
            rle = mask_utils.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            segm.append({"image_id": image_id, "category_id": c, "segmentation": rle, "score": round(s, 5)})
    return bbox, segm


def coco_evaluate(
    coco_gt: COCO, results: list[dict], iou_type: str, image_ids: Sequence[int] | None = None
) -> tuple[dict[str, float | None], str]:
    """COCOeval on `image_ids` (default: all GT images) -> ({AP, AP50, AP75, APs, APm, APl} as fractions, printed
    table). No detections give 0.0; a metric whose area range has no ground truth is None (COCOeval's -1)."""
    image_ids = sorted(image_ids) if image_ids is not None else sorted(coco_gt.getImgIds())
    if not results:
        stats = [0.0 if _has_gt(coco_gt, image_ids, i) else None for i in range(len(STAT_NAMES))]
        return dict(zip(STAT_NAMES, stats)), f"no {iou_type} detections on {len(image_ids)} images"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds keys (area, id) to each dict
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [None if v < 0 else float(v) for v in ev.stats[: len(STAT_NAMES)]]
    table = "\n".join(line for line in out.getvalue().splitlines() if "Average Precision" in line or "Recall" in line)
    return dict(zip(STAT_NAMES, stats)), table


_AREAS = [(0, 1e10), (0, 1e10), (0, 1e10), (0, 32**2), (32**2, 96**2), (96**2, 1e10)]


def _has_gt(coco_gt: COCO, image_ids: Sequence[int], stat: int) -> bool:
    lo, hi = _AREAS[stat]
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=list(image_ids), iscrowd=False))
    return any(lo <= a.get("area", 0) < hi for a in anns)
