"""Evaluate a UPerNet on an ADE20K-layout split: mIoU / mAcc / aAcc / per-class IoU, single- or multi-scale.

    python -m tasks.ade20k.eval                                     # newest synthetic run of tasks.ade20k.train
    python -m tasks.ade20k.eval --checkpoint runs/ade20k/<run> --multi-scale
    python -m tasks.ade20k.eval --checkpoint upernet_focalnet_tiny_srf.pth --model upernet_focalnet_tiny_srf \\
        --data ADEChallengeData2016 --multi-scale

The checkpoint is a `tasks.ade20k.train` run directory (its config.yaml gives the model, data and test settings;
its final checkpoints/last.ckpt is loaded) or a `.ckpt` inside one, or weights in any format `focalmod.load_checkpoint`
reads, e.g. the official mmseg release (then `--model` and `--data` are needed). Multi-scale = ratios 0.5 ... 1.75
of the test scale + flip, softmax averaged (mmseg ``aug_test``). Writes metrics.json, config.yaml and palette-PNG
predictions to the run directory.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import yaml

import focalmod
from focalmod.checkpoints import CheckpointError

from ..common import (
    Score,
    Summary,
    TaskError,
    apply_threads,
    make_run_dir,
    parse_key_values,
    run_main,
    save_config,
    write_metrics,
)
from ..common.metrics import build_metrics
from ..common.presets import Presets
from .data import ADE20KDataModule, ADE20KDataset, read_class_names, read_split
from .inference import MULTI_SCALE_RATIOS, InferenceConfig
from .models import build_model
from .module import SegmentationModule
from .transforms import EvalTransform

TASK = "ade20k-eval"
PRESETS = Path(__file__).parent / "presets"  # tasks.ade20k.train's; plain weights get the ade20k one
_FROM_RUN = ("model", "backbone", "model_arg", "img_scale", "crop_size", "test_mode", "test_stride", "num_classes")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.ade20k.eval", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="a tasks.ade20k.train run dir or .ckpt, or model weights (default: "
                   "the newest synthetic run under runs/ade20k/)")
    p.add_argument("--model", help="registered UPerNet for plain weights (default: the run's)")
    p.add_argument("--backbone", help="UPerNet on this backbone instead of --model (default: the run's)")
    p.add_argument("--model-arg", action="append", default=None, metavar="KEY=VALUE", help="constructor override")
    p.add_argument("--data", type=Path, help="ADEChallengeData2016 folder (default: the run's)")
    p.add_argument("--split", default="validation", help="images/<split>, annotations/<split>")
    p.add_argument("--num-classes", type=int, help="default: objectInfo150.txt rows, else 150")
    p.add_argument("--test-mode", choices=("whole", "slide"), help="default: the run's, else whole")
    p.add_argument("--img-scale", type=int, nargs=2, metavar=("LONG", "SHORT"), help="test scale (keep ratio)")
    p.add_argument("--crop-size", type=int, help="sliding window")
    p.add_argument("--test-stride", type=int, help="sliding-window stride")
    p.add_argument("--multi-scale", action="store_true", help="ratios 0.5-1.75 of the test scale + flip")
    p.add_argument("--ratios", type=float, nargs="+", help="explicit scale ratios (overrides --multi-scale's)")
    p.add_argument("--flip", action="store_true", help="also average the mirrored image")
    p.add_argument("--num-png", type=int, default=16, help="predictions written as palette PNGs")
    p.add_argument("--out", type=Path, help=f"run directory (default: runs/{TASK}/<timestamp>)")
    t = p.add_argument_group("Lightning")
    t.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    t.add_argument("--devices", default="auto", help="devices per node (each evaluates a share of the images)")
    t.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed")
    t.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per process")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return p


def latest_synthetic_run(runs: Path = Path("runs") / "ade20k") -> Path:
    """The newest `tasks.ade20k.train` run on the synthetic set that has a checkpoint."""
    found = [c.parent for c in runs.glob("*/config.yaml")
             if (c.parent / "checkpoints" / "last.ckpt").is_file() and _read_yaml(c).get("data") is None]
    if not found:
        raise TaskError(f"--checkpoint not given and no synthetic run with a checkpoint under {runs}/; train one "
                        "with `python -m tasks.ade20k.train` or pass --checkpoint")
    return max(found, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise TaskError(f"{path} is not valid YAML: {err}") from None
    return data if isinstance(data, dict) else {}


def resolve(args: argparse.Namespace) -> tuple[argparse.Namespace, Path]:
    """Fill unset options from the training run (if the checkpoint belongs to one) and pick the weights file."""
    checkpoint = args.checkpoint or latest_synthetic_run()
    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent.parent
    config = run_dir / "config.yaml"
    if checkpoint.is_dir() or (checkpoint.suffix == ".ckpt" and config.is_file()):
        if not config.is_file():
            raise TaskError(f"--checkpoint: {checkpoint} has no config.yaml (expected a tasks.ade20k.train run)")
        run = _read_yaml(config)
        for key in _FROM_RUN:
            if getattr(args, key) is None:
                setattr(args, key, run.get(key))
        if args.data is None:
            args.data = Path(run["data"]) if run.get("data") else run_dir / "data" / "ADEChallengeData2016"
        if checkpoint.is_dir():  # the final model, as the published numbers (best.ckpt: pass it explicitly)
            checkpoint = checkpoint / "checkpoints" / "last.ckpt"
    if args.data is None:
        raise TaskError("--data is needed with plain weights (the ADEChallengeData2016 folder)")
    preset = Presets.load(PRESETS).resolve("ade20k", vars(args))  # the official test settings
    args.model = args.model or (None if args.backbone else preset["model"])
    args.model_arg = args.model_arg or []
    args.img_scale = args.img_scale or list(preset["img_scale"])
    args.crop_size = args.crop_size or preset["crop_size"]
    args.test_mode = args.test_mode or preset["test_mode"]
    args.test_stride = args.test_stride or preset["test_stride"]
    if not checkpoint.is_file():
        raise TaskError(f"--checkpoint: file not found: {checkpoint}")
    return args, checkpoint


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate; returns the content of metrics.json (rank 0; `{}` on other ranks). `argv` None: the command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    apply_threads(args)
    args, checkpoint = resolve(args)
    start = time.perf_counter()
    class_names = read_class_names(args.data, args.num_classes)
    samples = read_split(args.data, args.split, len(class_names))
    model = build_model(args.model, args.backbone, len(class_names), parse_key_values(args.model_arg, "--model-arg"))
    try:
        report = focalmod.load_checkpoint(model, checkpoint)
    except (CheckpointError, FileNotFoundError) as err:
        raise TaskError(f"--checkpoint: {err}") from None
    ratios = tuple(args.ratios or (MULTI_SCALE_RATIOS if args.multi_scale else (1.0,)))
    try:
        test = InferenceConfig(args.test_mode, tuple(args.img_scale), ratios, args.flip or args.multi_scale,
                          args.crop_size, args.test_stride)
    except ValueError as err:
        raise TaskError(f"--test-mode/--test-stride: {err}") from None
    run_dir = make_run_dir(TASK, args.out)
    save_config(run_dir, {**vars(args), "checkpoint": str(checkpoint)})
    print(f"{checkpoint} ({report.format}, {len(report.loaded)} tensors) on {args.data}/images/{args.split}: "
          f"{len(samples)} images, {len(class_names)} classes, {test.mode}, ratios {list(ratios)}, flip {test.flip}",
          flush=True)
    module = SegmentationModule(model, class_names, test=test, samples=samples, prediction_dir=run_dir / "predictions",
                                max_predictions=args.num_png)
    data = ADE20KDataModule(None, ADE20KDataset(samples, EvalTransform()), num_workers=args.num_workers)
    trainer = pl.Trainer(accelerator=args.accelerator, devices=int(args.devices) if str(args.devices).isdigit()
                         else args.devices, precision=args.precision, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, default_root_dir=run_dir)
    trainer.validate(module, datamodule=data, verbose=False)
    if not trainer.is_global_zero:
        return {}
    val = module.last_val
    extras = {"mIoU": val["mIoU"], "mAcc": val["mAcc"], "aAcc": val["aAcc"], "IoU": val["IoU"], "Acc": val["Acc"],
              "checkpoint": str(checkpoint), "checkpoint_format": report.format, "images": len(samples),
              "test": {"mode": test.mode, "scale": list(test.scale), "ratios": list(ratios), "flip": test.flip},
              "seconds": round(time.perf_counter() - start, 1), "threads": torch.get_num_threads()}
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    summary = Summary(Score("mIoU", val["mIoU"]), data=str(args.data), split=args.split, params_m=params_m,
                      extras=extras)
    metrics = build_metrics(summary, TASK, None, {"wall_seconds": time.perf_counter() - start}, shlex.join(
        ["python", "-m", "tasks.ade20k.eval", *argv]), None, ("torchmetrics",))
    write_metrics(run_dir, metrics)
    print(f"mIoU {metrics['mIoU']:.4f}  mAcc {metrics['mAcc']:.4f}  aAcc {metrics['aAcc']:.4f} "
          f"({'multi-scale + flip' if args.multi_scale else 'single scale'}) -> {run_dir / 'metrics.json'}",
          flush=True)
    return metrics


if __name__ == "__main__":
    run_main(main)
