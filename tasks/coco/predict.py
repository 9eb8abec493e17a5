"""Detect objects in the user's images with a trained detector: detections in COCO's format, optionally drawn.

    python -m tasks.coco predict --run runs/coco/<run> --inputs photos/
    python -m tasks.coco predict --run runs/coco/<run> --inputs "shots/*.jpg" --score-threshold 0.5 --draw 8

Writes detections.json, a COCO-format file pycocotools reads (`images` with file names and sizes, the run's
`categories`, and one `annotations` entry per detection: bbox xywh, score, and an RLE `segmentation` for Mask
R-CNN), results_bbox.json / results_segm.json (the COCO results format, the same detections for COCOeval), drawn/
with `--draw N` (boxes and masks over the first N images), metrics.json and config.yaml. An unreadable image is
named and skipped; the others are written, and the command then exits non-zero listing the skipped files.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..common import Run, Score, Summary, Task, TaskError, atomic_write
from ..common.folders import IMAGE_EXTENSIONS
from ..common.verbs import add_run_option, find_inputs
from .data import detections_to_coco
from .trained import load_detector


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.coco fit")
    p.add_argument("--inputs", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--score-threshold", type=float, default=0.05, help="keep detections scoring at least this")
    p.add_argument("--draw", type=int, default=0, help="draw the detections of the first N images (drawn/*.png)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run whose detector reads the images")
    if not 0 <= args.score_threshold <= 1:
        raise TaskError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    find_inputs(args.inputs, IMAGE_EXTENSIONS)


@torch.no_grad()
def predict(run: Run) -> Summary:
    args = run.args
    trained, module = load_detector(args.run)
    device = torch.device("cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu")
    model = module.model.to(device)
    names = dict(zip(module.category_ids, module.hparams["category_names"]))
    images, bbox, segm, skipped = [], [], [], []
    for path in tqdm(find_inputs(args.inputs, IMAGE_EXTENSIONS), desc="detecting", disable=args.no_progress):
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        except Exception as err:  # PIL raises many types for a file that is not an image
            print(f"cannot read {path}: {type(err).__name__}: {err}; skipped", flush=True)
            skipped.append(str(path))
            continue
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)
        output = model([image.to(device)])[0]
        keep = output["scores"] >= args.score_threshold
        output = {k: v[keep] for k, v in output.items()}
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": str(path), "width": rgb.shape[1], "height": rgb.shape[0]})
        boxes, masks = detections_to_coco(image_id, output, module.category_ids)
        bbox += boxes
        segm += masks
        if image_id <= args.draw:
            _draw(run.dir / "drawn" / f"{image_id:04d}_{path.stem}.png", image, output, module, names)
    annotations = [{**b, "id": i, "area": b["bbox"][2] * b["bbox"][3], "iscrowd": 0,
                    **({"segmentation": segm[i - 1]["segmentation"]} if segm else {})}
                   for i, b in enumerate(bbox, 1)]
    categories = [{"id": c, "name": n} for c, n in names.items()]
    atomic_write(run.dir / "detections.json", json.dumps({"images": images, "categories": categories,
                                                           "annotations": annotations}))
    atomic_write(run.dir / "results_bbox.json", json.dumps(bbox))
    if module.has_masks:
        atomic_write(run.dir / "results_segm.json", json.dumps(segm))
    print(f"{len(bbox)} detection(s) in {len(images)} image(s): {run.dir / 'detections.json'}", flush=True)
    extras = dict(images=len(images), detections=len(bbox), score_threshold=args.score_threshold,
                  model=module.hparams["detector"]["backbone"], detector=module.hparams["detector"]["detector"],
                  run=str(trained.dir))
    return Summary(Score("detections_per_image", len(bbox) / len(images) if images else None),
                   data=", ".join(map(str, args.inputs)), split="predict",
                   params_m=sum(p.numel() for p in model.parameters()) / 1e6, extras=extras, skipped=skipped)


def _draw(path, image: torch.Tensor, output: dict, module, names: dict) -> None:
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    canvas = (image * 255).to(torch.uint8).cpu()
    if "masks" in output and len(output["masks"]):
        canvas = draw_segmentation_masks(canvas, output["masks"][:, 0].cpu() > 0.5, alpha=0.4)
    labels = [f"{names[module.category_ids[int(lbl) - 1]]} {float(s):.2f}"
              for lbl, s in zip(output["labels"], output["scores"])]
    canvas = draw_bounding_boxes(canvas, output["boxes"].cpu(), labels, width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(path)


TASK = Task(name="coco-predict", module="tasks.coco predict", doc=__doc__, add_options=add_options, run=predict,
            resolve=check, versions=("torchvision", "pycocotools"))
