"""Evaluate a `tasks.coco.train` checkpoint with COCOeval (bbox, and segm for Mask R-CNN) on a COCO-format split.

    python -m tasks.coco.eval --checkpoint runs/coco/<run>/checkpoints/best.ckpt            # the data it trained on
    python -m tasks.coco.eval --checkpoint model.ckpt --data /data/coco --split val2017

The model is rebuilt from the checkpoint's hyper-parameters alone. Writes a run directory with config.yaml,
results_<split>_{bbox,segm}.json (COCO results format: bbox xywh, segm as RLE, original category ids) and
metrics.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from ..common import TaskError, build_trainer, make_run_dir, parse_with_config, run_main, save_config, write_metrics
from ..common.trainer import AtomicCheckpointIO
from .data import CocoInstances, resolve_split
from .module import DetectionModule
from .train import make_loader, print_summary, write_eval_outputs

TASK = "coco-eval"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.coco.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", type=Path, help="YAML file whose keys set defaults for the options below")
    p.add_argument("--checkpoint", type=Path, required=True, help="Lightning .ckpt written by tasks.coco.train")
    p.add_argument("--data", type=Path, help="COCO root (default: the data the checkpoint was trained on)")
    p.add_argument("--split", help="split to evaluate (default: the checkpoint's validation split)")
    p.add_argument("--out", type=Path, help=f"run directory (default: runs/{TASK}/<timestamp>)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    p.add_argument("--devices", default="1", help="devices (several: DDP, results gathered before COCOeval)")
    p.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--limit-val-batches", type=float, default=1.0,
                   help="fraction or count of batches (COCOeval then covers only those images, reported)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return p


def load_module(path: Path) -> DetectionModule:
    """Rebuild the `DetectionModule` from a checkpoint (weights-only read); backbone init weights are not re-read."""
    ckpt = AtomicCheckpointIO().load_checkpoint(path)
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict) or "detector" not in hp or "state_dict" not in ckpt:
        raise TaskError(f"--checkpoint: {path} is not a tasks.coco.train checkpoint (no detector hyper-parameters)")
    hp = dict(hp)
    hp["detector"] = {**hp["detector"], "backbone_checkpoint": None}
    module = DetectionModule(**hp)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise TaskError(f"--checkpoint: {path} does not match its own config: {str(err)[:300]}") from None
    return module


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_with_config(build_parser(), argv)
    module = load_module(args.checkpoint)
    data = module.hparams.get("data") or {}
    root = args.data or (Path(data["root"]) if data.get("root") else None)
    if root is None:
        raise TaskError("--data: the checkpoint records no dataset; pass --data")
    split = args.split or (data.get("val_split") if args.data is None else None) or "val2017"
    dataset = CocoInstances(*resolve_split(root, split), train=False, masks=False,
                            category_ids=module.category_ids)
    module.coco_gt = dataset.coco
    run_dir = make_run_dir(TASK, args.out)
    save_config(run_dir, {**vars(args), "data": str(root), "split": split})
    print(f"evaluating {args.checkpoint} on {root} / {split}: {dataset.summary()}", flush=True)
    trainer_args = argparse.Namespace(**vars(args), strategy="auto", num_nodes=1, limit_train_batches=1.0)
    trainer = build_trainer(trainer_args, run_dir, max_epochs=1)
    start = time.perf_counter()
    trainer.validate(module, make_loader(dataset, args, False), verbose=False)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {}
    if trainer.is_global_zero:
        metrics = write_eval_outputs(run_dir, split, module)
        metrics.update(checkpoint=str(args.checkpoint), model=module.hparams["detector"]["backbone"],
                       detector=module.hparams["detector"]["detector"], data=str(root), split=split,
                       eval_seconds=round(seconds, 1))
        write_metrics(run_dir, metrics)
        print_summary(f"evaluated in {seconds:.0f} s; run dir {run_dir}", metrics)
    return metrics


if __name__ == "__main__":
    run_main(main)
