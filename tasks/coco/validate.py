"""Score a trained detector with COCOeval (bbox, and segm for Mask R-CNN) on a COCO-format split.

    python -m tasks.coco validate --run runs/coco/<run>                     # the data and split it trained on
    python -m tasks.coco validate --run runs/coco/<run>/checkpoints/last.ckpt --data /data/coco --split val2017

The model is rebuilt from the checkpoint's hyper-parameters alone. Writes results_<split>_{bbox,segm}.json (COCO
results format: bbox xywh, segm as RLE, original category ids), metrics.json (shared schema: bbox/AP50) and
config.yaml.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..common import Run, Score, Summary, Task, TaskError
from ..common.verbs import add_run_option
from .data import CocoInstances, resolve_split
from .train import make_loader, print_summary, write_eval_outputs
from .trained import load_detector


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.coco fit")
    p.add_argument("--data", type=Path, help="COCO root (default: the data the run trained on)")
    p.add_argument("--split", help="split to evaluate (default: the run's validation split, else val2017)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to evaluate")


def validate(run: Run) -> Summary | None:
    args = run.args
    trained, module = load_detector(args.run)
    data = module.hparams.get("data") or {}
    root = args.data or (Path(data["root"]) if data.get("root") else None)
    if root is None:
        raise TaskError("--data: the checkpoint records no dataset; pass --data")
    split = args.split or (data.get("val_split") if args.data is None else None) or "val2017"
    dataset = CocoInstances(*resolve_split(root, split), train=False, masks=False, category_ids=module.category_ids)
    module.coco_gt = dataset.coco
    run.say(f"evaluating {trained.checkpoint} on {root} / {split}: {dataset.summary()}")
    trainer = run.trainer(1, logger=False)
    start = time.perf_counter()
    trainer.validate(module, make_loader(dataset, args, False), verbose=False)
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return None
    extras = write_eval_outputs(run.dir, split, module)
    extras.update(checkpoint=str(trained.checkpoint), model=module.hparams["detector"]["backbone"],
                  detector=module.hparams["detector"]["detector"], eval_seconds=round(seconds, 1))
    print_summary(f"evaluated in {seconds:.0f} s; run dir {run.dir}", extras)
    params_m = sum(p.numel() for p in module.model.parameters()) / 1e6
    return Summary(Score("bbox/AP50", extras.get("bbox", {}).get("AP50")), data=str(root), split=split,
                   params_m=params_m, extras=extras)


TASK = Task(name="coco-validate", module="tasks.coco validate", doc=__doc__, add_options=add_options, run=validate,
            resolve=check, versions=("torchvision", "pycocotools"))
