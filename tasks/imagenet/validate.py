"""Score a trained classifier on a labelled folder with the official evaluation transform (resize to size / crop_pct,
center crop, bicubic, the model's mean/std): top-1 / top-5 / per-class accuracy (torchmetrics) beside the run's
baseline.

    python -m tasks.imagenet validate                                # the newest digits run, on the digits val split
    python -m tasks.imagenet validate --run runs/imagenet/<run> --data /data/imagenet
    python -m tasks.imagenet validate --weights focalnet_tiny_srf.pth --model focalnet_tiny_srf --data /data/imagenet

`--run` takes a training run (model, classes and preprocessing are read from it); `--weights` takes weights in any
format `focalmod.load_checkpoint` reads (official Microsoft, timm, HF, safetensors) with `--model`. Writes
metrics.json (the shared schema: top1, with top5, images, images_per_sec), per_class.csv and config.yaml; with
`--explain N` also the scores of N validation images' explanations (explanations.png).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multiclass_accuracy

from focalmod.interpret import scores_table

from ..common import Run, Score, Summary, Task, TaskError, write_csv
from ..common.baseline import compare_with_baseline
from ..common.explain import explain_dataset
from ..common.trained import TrainedRun, newest_run
from ..common.verbs import add_run_option
from .baseline import image_baseline
from .data import checked_dataset, eval_transform, split_classes, val_dir_of
from .digits import default_cache_dir, digits_image_folder
from .trained import Classifier, label_order


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.imagenet fit", " (default: the newest run on the embedded digits set)")
    p.add_argument("--weights", type=Path, help="instead of --run: model weights in any format "
                   "focalmod.load_checkpoint reads; needs --model")
    p.add_argument("--model", help="with --weights: the registered model name the weights are for")
    p.add_argument("--data", type=Path, help="a root holding val/<class>/*, or that folder itself (default: the "
                   "training run's val split)")
    p.add_argument("--input-size", type=int, help="eval side (default: the run's / the model's)")
    p.add_argument("--crop-pct", type=float, help="center-crop fraction (default: the run's / the model's)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--baseline-max-train", type=int, default=None, help="the baseline fits on at most this many "
                   "images of the run's training folder (default: the run's setting; 0: no baseline)")
    p.add_argument("--explain", type=int, default=None, help="score the explanations of N validation images "
                   "(default: 16 on the digits set, else 0)")
    p.add_argument("--quantile", type=float, default=0.9,
                   help="explanation mask: the positions at or above this quantile of a map")


def validate(run: Run) -> Summary:
    args = run.args
    trained, classifier = _classifier(args)
    pre = classifier.preprocess
    pre.input_size, pre.crop_pct = args.input_size or pre.input_size, args.crop_pct or pre.crop_pct
    root = args.data or (trained.option("data") if trained else None)
    if root is None:
        root = digits_image_folder(default_cache_dir(), pre.input_size)
    val_dir = val_dir_of(root)
    dataset = checked_dataset(val_dir, "--data", eval_transform(pre))
    found = label_order(list(dataset.reader.class_to_idx))
    if found != classifier.classes:
        raise TaskError(f"--data: the classifier does not have the classes of {val_dir} ({len(found)} folders: "
                        f"{', '.join(found[:5])}...; the model knows {len(classifier.classes)}: "
                        f"{', '.join(classifier.classes[:5])}...)")
    from ..common.predictor import Predictor

    module = Predictor(classifier.model)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    run.say(f"validating {classifier.name} on {val_dir} ({len(dataset)} images)")
    start = time.perf_counter()
    logits = torch.cat(run.trainer(logger=False).predict(module, loader))
    seconds = time.perf_counter() - start
    targets = torch.tensor([label for _, label in dataset.reader.samples])
    n = len(classifier.classes)
    top1 = float(multiclass_accuracy(logits, targets, n, top_k=1, average="micro"))
    top5 = float(multiclass_accuracy(logits, targets, n, top_k=min(5, n), average="micro"))
    per_class = multiclass_accuracy(logits, targets, n, average="none")
    counts = torch.bincount(targets, minlength=n)
    write_csv(run.dir / "per_class.csv", [dict(**{"class": c, "images": int(k)}, top1=f"{float(a):.6f}" if k else "")
                                          for c, k, a in zip(classifier.classes, counts, per_class)])
    baseline = _baseline(args, trained, dataset)
    metric = Score("top1", top1)
    print(f"{classifier.name} on {val_dir}: top-1 {top1:.4f}  top-5 {top5:.4f}  ({len(targets)} images, "
          f"{len(targets) / seconds:.1f} img/s)\n"
          f"{compare_with_baseline(metric, baseline, 'not computed (no training folder or --baseline-max-train 0)')}"
          f"\nrun dir: {run.dir}", flush=True)
    interpretability = None
    if _explain(args):
        labels = targets.tolist()
        interpretability = explain_dataset(classifier.model, dataset, labels, _explain(args),
                                           run.dir / "explanations.png", args.quantile, args.seed)
        print(f"explanations of {_explain(args)} validation images (mask: top {1 - args.quantile:.0%} of each map; "
              f"figure: explanations.png):\n{scores_table(interpretability)}", flush=True)
    extras = dict(top1=top1, top5=top5, images=len(targets), images_per_sec=len(targets) / seconds,
                  model=classifier.name, checkpoint=str(trained.checkpoint if trained else args.weights))
    params = sum(p.numel() for p in classifier.model.parameters()) / 1e6
    return Summary(metric, data=str(val_dir), split="val", params_m=params, extras=extras, baseline=baseline,
                   interpretability=interpretability)


def check(args: argparse.Namespace) -> None:
    if args.weights is not None and args.run is not None:
        raise TaskError("--weights and --run: give one (a training run, or weights with --model)")
    if args.weights is not None and not args.model:
        raise TaskError(f"--model is required with --weights (the model {args.weights} holds weights for)")
    if args.weights is not None and args.data is None:
        raise TaskError("--data is required with --weights (the labelled folder to score on)")
    if args.model and args.weights is None:
        raise TaskError("--model goes with --weights; a training run (--run) names its own model")
    if args.weights is not None and not args.weights.is_file():
        raise TaskError(f"--weights: file not found: {args.weights}")
    if _explain(args) < 0:
        raise TaskError(f"--explain must be >= 0, got {args.explain}")
    if not 0 < args.quantile < 1:
        raise TaskError(f"--quantile must be in (0, 1), got {args.quantile}")


def _explain(args: argparse.Namespace) -> int:
    if args.explain is not None:
        return args.explain
    return 16 if args.data is None and args.weights is None else 0


def _classifier(args: argparse.Namespace) -> tuple[TrainedRun | None, Classifier]:
    if args.weights is not None:
        classes = label_order(split_classes(val_dir_of(args.data), "--data"))
        return None, Classifier.from_weights(args.weights, args.model, classes)
    path = args.run
    if path is None:
        if args.data is not None:
            raise TaskError("--run is required with --data (or --weights with --model)")
        path = newest_run(Path("runs") / "imagenet", lambda options: options.get("data") is None, "digits run",
                          "train one with `python -m tasks.imagenet fit` or pass --run")
        print(f"run: {path} (the newest digits run)", flush=True)
    trained = TrainedRun.open(path)
    return trained, Classifier.from_run(trained)


def _baseline(args: argparse.Namespace, trained: TrainedRun | None, dataset) -> Score | None:
    """The training run's baseline (logistic regression on the features cross-validation picks on its training
    folder), re-scored on the validated images; None for plain weights, a vanished training folder or
    `--baseline-max-train 0`."""
    if trained is None:
        return None
    max_train = args.baseline_max_train
    if max_train is None:
        max_train = trained.option("baseline_max_train", 20000)
    root = trained.option("data")
    if root is None:
        root = digits_image_folder(default_cache_dir(), (trained.hparams.get("preprocess") or {}).get("input_size", 32))
    train_dir = Path(root) / "train"
    if not max_train or not train_dir.is_dir():
        return None
    train_set = checked_dataset(train_dir, "--run (its training folder)", None)
    chosen = image_baseline(train_set.reader.samples, dataset.reader.samples, max_train, trained.option("seed", 0))
    return Score(chosen.name, chosen.accuracy)


TASK = Task(name="imagenet-validate", module="tasks.imagenet validate", doc=__doc__, add_options=add_options,
            run=validate, resolve=check)
