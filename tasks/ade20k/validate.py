"""Score a UPerNet on an ADE20K-layout split: mIoU / mAcc / aAcc / per-class IoU, single- or multi-scale.

    python -m tasks.ade20k validate                                 # the newest synthetic run of `fit`
    python -m tasks.ade20k validate --run runs/ade20k/<run> --multi-scale
    python -m tasks.ade20k validate --weights upernet_focalnet_tiny_srf.pth --model upernet_focalnet_tiny_srf \\
        --data ADEChallengeData2016 --multi-scale

`--run` takes a `fit` run directory (its config.yaml gives the model, data and test settings; its final
checkpoints/last.ckpt is loaded) or a `.ckpt` inside one; `--weights` takes weights in any format
`focalmod.load_checkpoint` reads, e.g. the official mmseg release (then `--data`, and `--model` unless the
official default fits). Multi-scale = ratios 0.5 ... 1.75 of the test scale + flip, softmax averaged (mmseg
``aug_test``). Writes metrics.json (shared schema), config.yaml and palette-PNG predictions to its run directory.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..common import Run, Score, Summary, Task
from .data import ADE20KDataModule, ADE20KDataset, read_split
from .inference import MULTI_SCALE_RATIOS
from .module import SegmentationModule
from .train import add_model_options, add_test_options
from .trained import add_source_options, load_segmenter
from .transforms import EvalTransform


def add_options(p: argparse.ArgumentParser) -> None:
    add_source_options(p)
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="ADEChallengeData2016 folder (default: the run's)")
    d.add_argument("--split", default="validation", help="images/<split>, annotations/<split>")
    d.add_argument("--num-classes", type=int, help="with --weights: default the rows of objectInfo150.txt, else 150")
    add_model_options(p.add_argument_group("model (default: the run's)"))
    t = p.add_argument_group("inference (default: the run's, else the official ade20k preset's)")
    add_test_options(t)
    t.add_argument("--multi-scale", action="store_true", help="ratios 0.5-1.75 of the test scale + flip")
    t.add_argument("--ratios", type=float, nargs="+", help="explicit scale ratios (overrides --multi-scale's)")
    t.add_argument("--flip", action="store_true", help="also average the mirrored image")


def validate(run: Run) -> Summary | None:
    args = run.args
    ratios = tuple(args.ratios or (MULTI_SCALE_RATIOS if args.multi_scale else (1.0,)))
    seg = load_segmenter(args, ratios, args.flip or args.multi_scale)
    samples = read_split(seg.data, args.split, len(seg.class_names))
    run.say(f"{seg.source} ({seg.format}) on {seg.data}/images/{args.split}: {len(samples)} images, "
            f"{len(seg.class_names)} classes, {seg.test.mode}, ratios {list(ratios)}, flip {seg.test.flip}")
    module = SegmentationModule(seg.model, seg.class_names, test=seg.test, samples=samples,
                                prediction_dir=run.dir / "predictions", max_predictions=args.num_png)
    data = ADE20KDataModule(None, ADE20KDataset(samples, EvalTransform()), num_workers=args.num_workers)
    trainer = run.trainer(logger=False)
    trainer.validate(module, datamodule=data, verbose=False)
    if not trainer.is_global_zero:
        return None
    val = module.last_val
    test = seg.test
    extras = {"mIoU": val["mIoU"], "mAcc": val["mAcc"], "aAcc": val["aAcc"], "IoU": val["IoU"], "Acc": val["Acc"],
              "model": seg.name, "checkpoint": str(seg.source), "checkpoint_format": seg.format,
              "images": len(samples), "threads": torch.get_num_threads(),
              "test": {"mode": test.mode, "scale": list(test.scale), "ratios": list(ratios), "flip": test.flip}}
    print(f"mIoU {val['mIoU']:.4f}  mAcc {val['mAcc']:.4f}  aAcc {val['aAcc']:.4f} "
          f"({'multi-scale + flip' if args.multi_scale else 'single scale'}) -> {run.dir / 'metrics.json'}",
          flush=True)
    params_m = sum(p.numel() for p in seg.model.parameters()) / 1e6
    return Summary(Score("mIoU", val["mIoU"]), data=str(seg.data), split=args.split, params_m=params_m, extras=extras)


TASK = Task(name="ade20k-validate", module="tasks.ade20k validate", doc=__doc__, add_options=add_options,
            run=validate, versions=("torchmetrics",))
