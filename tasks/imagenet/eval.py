"""Evaluate a classifier checkpoint on a folder-per-class validation set with the official evaluation transform
(resize to size / crop_pct, center crop, bicubic, ImageNet mean/std).

    python -m tasks.imagenet.eval                          # best.ckpt of the latest digits run, on the digits val split
    python -m tasks.imagenet.eval --checkpoint runs/imagenet/<run>/checkpoints/best.ckpt     # digits val split
    python -m tasks.imagenet.eval --checkpoint focalnet_tiny_srf.pth --model focalnet_tiny_srf --data /data/imagenet

The checkpoint may be a run of `tasks.imagenet.train` (model name and classes are read from it) or weights in any
format `focalmod.load_checkpoint` reads (official Microsoft, timm, HF, safetensors; then `--model` is needed).
Writes metrics.json (top1, top5, images, images_per_sec), per_class.csv and config.yaml to the run directory.
With `--explain N` (default 16 on the digits set, 0 with --data) it also scores the explanations of N validation
images (one class after another): the modulator and gate maps of a FocalNet beside Grad-CAM, integrated gradients
and random masks (metrics.json "interpretability", explanations.png).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from torch.utils.data import DataLoader

from focalmod.checkpoints import CheckpointError, load_checkpoint, read_checkpoint
from focalmod.interpret import scores_table

from ..common import TaskError, make_run_dir, run_main, save_config, write_metrics
from ..common.explain import explain_dataset
from ..common.folders import list_class_files
from .data import Preprocess, checked_dataset, eval_transform
from .digits import default_cache_dir, digits_image_folder
from .recipe import build_model

TASK = "imagenet-eval"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.imagenet.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="a tasks.imagenet.train .ckpt or model weights (default, "
                   "without --data: best.ckpt of the newest digits run under runs/imagenet/)")
    p.add_argument("--model", help="model name (default: the one stored in a tasks.imagenet.train checkpoint)")
    p.add_argument("--data", type=Path, help="a root holding val/<class>/*, or the val folder itself "
                   "(default: the digits val split)")
    p.add_argument("--input-size", type=int, help="eval side (default: the model's / the training run's)")
    p.add_argument("--crop-pct", type=float, help="center-crop fraction (default: the model's / the training run's)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, help=f"run directory (default: runs/{TASK}/<timestamp>)")
    p.add_argument("--explain", type=int, default=None, help="score the explanations of N validation images "
                   "(focalmod.interpret; default: 16 on the digits set, 0 with --data)")
    p.add_argument("--quantile", type=float, default=0.9,
                   help="explanation mask: the positions at or above this quantile of a map (default: 0.9)")
    return p


def latest_digits_checkpoint(runs: Path = Path("runs") / "imagenet") -> Path:
    """best.ckpt (else last.ckpt) of the newest `tasks.imagenet.train` run on the embedded digits set."""
    found = []
    for config in runs.glob("*/config.yaml"):
        try:
            data = yaml.safe_load(config.read_text()).get("data")
        except (yaml.YAMLError, AttributeError):
            continue
        ckpts = [config.parent / "checkpoints" / n for n in ("best.ckpt", "last.ckpt")]
        ckpt = next((c for c in ckpts if c.is_file()), None)
        if data is None and ckpt is not None:
            found.append(ckpt)
    if not found:
        raise TaskError(f"--checkpoint not given and no digits run with a checkpoint under {runs}/; "
                        "train one with `python -m tasks.imagenet.train` or pass --checkpoint")
    return max(found, key=lambda c: c.stat().st_mtime)


def _training_run(raw: Any) -> dict[str, Any]:
    """Hyper-parameters of a tasks.imagenet.train checkpoint, or {} for plain weights."""
    if isinstance(raw, dict) and isinstance(raw.get("hyper_parameters"), dict):
        return raw["hyper_parameters"]
    return {}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.explain is None:
        args.explain = 16 if args.data is None else 0
    if args.explain < 0:
        raise TaskError(f"--explain must be >= 0, got {args.explain}")
    if not 0 < args.quantile < 1:
        raise TaskError(f"--quantile must be in (0, 1), got {args.quantile}")
    if args.checkpoint is None:
        if args.data is not None:
            raise TaskError("--checkpoint is required with --data")
        args.checkpoint = latest_digits_checkpoint()
        print(f"checkpoint: {args.checkpoint} (newest digits run)")
    if not args.checkpoint.exists():
        raise TaskError(f"--checkpoint: file not found: {args.checkpoint}")
    try:
        hparams = _training_run(read_checkpoint(args.checkpoint))
    except CheckpointError as err:
        raise TaskError(f"--checkpoint: {err}") from None
    name = args.model or hparams.get("model")
    if args.model and hparams.get("model") and args.model != hparams["model"]:
        raise TaskError(f"--model {args.model}: {args.checkpoint} was trained as {hparams['model']}; "
                        "leave --model out for tasks.imagenet.train checkpoints")
    if name is None:
        raise TaskError(f"--model is required: {args.checkpoint} holds plain weights without a model name")

    digits_size = args.input_size or hparams.get("preprocess", {}).get("input_size", 32)
    root = args.data if args.data is not None else digits_image_folder(default_cache_dir(), digits_size)
    val_dir = root / "val" if (Path(root) / "val").is_dir() else Path(root)
    classes = sorted(list_class_files(val_dir, "--data"))
    model = build_model(name, len(classes), **hparams.get("model_overrides", {}))
    try:
        report = load_checkpoint(model, args.checkpoint)
    except (CheckpointError, ValueError, KeyError, RuntimeError) as err:  # converters raise ValueError too
        raise TaskError(f"--checkpoint does not fit --model {name}: {err}") from None
    if any(k.startswith("head.") for k in report.initialised):
        raise TaskError(f"--checkpoint: its classifier does not have {len(classes)} classes (the folders in {val_dir})")

    cfg = {**model.pretrained_cfg, **hparams.get("preprocess", {})}
    size = cfg["input_size"] if isinstance(cfg["input_size"], int) else cfg["input_size"][-1]
    pre = Preprocess(args.input_size or size, args.crop_pct or cfg.get("crop_pct") or 0.875,
                     cfg.get("interpolation") or "bicubic", tuple(cfg.get("mean") or Preprocess.mean),
                     tuple(cfg.get("std") or Preprocess.std))
    dataset = checked_dataset(val_dir, "--data", eval_transform(pre))
    index = dataset.reader.class_to_idx  # timm's natural-sort order ("2" before "10"): the label indices
    classes = sorted(index, key=index.get)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    run_dir = make_run_dir(TASK, args.out)
    save_config(run_dir, {**vars(args), "model": name, "preprocess": vars(pre)})
    metrics, per_class = evaluate(model.eval(), loader, len(classes))
    metrics.update(model=name, checkpoint=str(args.checkpoint), data=str(val_dir), checkpoint_format=report.format)
    if args.explain:
        labels = [label for _, label in dataset.reader.samples]
        metrics["interpretability"] = explain_dataset(model, dataset, labels, args.explain,
                                                      run_dir / "explanations.png", args.quantile)
    write_metrics(run_dir, metrics)
    with open(run_dir / "per_class.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", "images", "top1"])
        for cls, (n, correct) in zip(classes, per_class):
            writer.writerow([cls, n, f"{correct / n:.6f}" if n else ""])
    print(f"{name} on {val_dir}: top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  "
          f"({metrics['images']} images, {metrics['images_per_sec']:.1f} img/s)\nrun dir: {run_dir}")
    if args.explain:
        print(f"explanations of {args.explain} validation images (mask: top {1 - args.quantile:.0%} of each map; "
              f"figure: explanations.png):\n{scores_table(metrics['interpretability'])}")
    return metrics


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, num_classes: int) -> tuple[dict[str, Any], list]:
    """Top-1/top-5 over the loader, model throughput (forward passes only) and per-class (images, correct)."""
    k = min(5, num_classes)
    top1 = top5 = seen = 0
    per_class = torch.zeros(num_classes, 2, dtype=torch.long)
    forward_seconds = 0.0
    for images, targets in loader:
        start = time.perf_counter()
        logits = model(images)
        forward_seconds += time.perf_counter() - start
        best = logits.topk(k, dim=1).indices
        hit1 = best[:, 0] == targets
        top1 += int(hit1.sum())
        top5 += int((best == targets[:, None]).any(1).sum())
        seen += len(targets)
        per_class.index_add_(0, targets, torch.stack([torch.ones_like(targets), hit1.long()], 1))
    if seen == 0:
        raise TaskError("--data: no readable images to evaluate")
    metrics = dict(top1=top1 / seen, top5=top5 / seen, images=seen, images_per_sec=seen / max(forward_seconds, 1e-9))
    return metrics, per_class.tolist()


if __name__ == "__main__":
    run_main(main)
