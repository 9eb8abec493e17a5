"""Score a trained segmentation run on labelled Decathlon cases: Dice per class (MONAI `DiceMetric`, foreground
classes, empty ones ignored, as training validates) by sliding-window inference, beside the run's baseline.

    python -m tasks.medical validate --run runs/medical/<run>                  # its own held-out validation cases
    python -m tasks.medical validate --run runs/medical/<run> --data /data/Task09_Spleen   # every labelled case there

Without `--data` the cases are the run's validation split (its dataset, --val-frac and --seed), so the Dice
reproduces the run's; with `--data` every case of that folder's `training` list. The baseline (the best intensity
window per class, fitted on the run's training cases) is re-scored on the same cases when those are still there.
Writes metrics.json (the shared schema: dice, with dice_per_class, cases), per_case.csv and config.yaml.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from ..common import Run, Score, Summary, Task, TaskError, write_csv
from ..common.baseline import compare_with_baseline
from ..common.trained import TrainedRun
from ..common.verbs import add_run_option
from .baseline import network_view, scan_baseline
from .data import build_transforms, check_case, read_decathlon, split_cases


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.medical fit")
    p.add_argument("--data", help="a Decathlon folder whose labelled cases are scored (default: the run's own "
                   "validation split)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to score")


@torch.no_grad()
def validate(run: Run) -> Summary:
    from .predict import quiet_transform_warnings
    from .trained import Segmenter, data_root

    args = run.args
    quiet_transform_warnings()
    segmenter = Segmenter.from_run(TrainedRun.open(args.run))
    trained, cfg, hp = segmenter.trained, segmenter.cfg, segmenter.hparams
    own = _own_split(trained)
    if args.data is None:
        if own is None:
            raise TaskError(f"--run: the training data of {trained.dir} ({data_root(trained)}) is gone: pass --data")
        train_cases, cases, dataset = own
    else:
        dataset = read_decathlon(args.data)
        cases, train_cases = dataset.training, own[0] if own else None
    if dataset.num_classes != hp["num_classes"]:
        raise TaskError(f"--data: {dataset.root} has {dataset.num_classes} label values, the run's network "
                        f"{hp['num_classes']}")
    for case in cases:
        check_case(case, dataset.labels, cfg.spatial_dims, len(dataset.modalities))
    transforms = build_transforms(cfg, train=False)
    device = torch.device("cuda" if args.accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    module, k = segmenter.module.to(device).eval(), hp["num_classes"]
    total = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
    single = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    rows = []
    run.say(f"validating {hp['model_name']} on {len(cases)} case(s) of {dataset.root}")
    for case in cases:
        data = transforms(case)
        pred = module.infer(data["image"][None].to(device)).argmax(1, keepdim=True).cpu()
        pred_1h, label_1h = one_hot(pred, k), one_hot(data["label"][None].long(), k)
        total(pred_1h, label_1h)
        scores = single(pred_1h, label_1h)[0].tolist()
        rows.append({"image": case["image"], **{f"dice_{n}": "" if np.isnan(v) else f"{v:.6f}"
                                                for n, v in zip(dataset.class_names[1:], scores)}})
    per_class = [float(v) for v in total.aggregate()]
    mean = float(np.nanmean(per_class)) if not all(np.isnan(per_class)) else None
    write_csv(run.dir / "per_case.csv", rows)
    baseline = None
    if train_cases is not None:
        view = build_transforms(cfg, train=False)
        base = scan_baseline(network_view(train_cases, view), network_view(cases, view), k - 1,
                             trained.option("seed", 0))
        baseline = Score(base.name, base.dice)
    metric = Score("dice", mean)
    print(f"{hp['model_name']}: Dice {mean if mean is None else round(mean, 4)} ("
          + ", ".join(f"{n} {v:.3f}" for n, v in zip(dataset.class_names[1:], per_class)) + f") on {len(cases)} "
          f"case(s)\n{compare_with_baseline(metric, baseline, 'not computed (the run training cases are gone)')}"
          f"\nrun dir: {run.dir}", flush=True)
    extras = dict(dice=mean, dice_per_class=dict(zip(dataset.class_names[1:], per_class)), cases=len(cases),
                  model=hp["model_name"], checkpoint=str(trained.checkpoint))
    split = "val" if args.data is None else "training list"
    return Summary(metric, data=str(dataset.root), split=split, params_m=segmenter.params_m, extras=extras,
                   baseline=baseline)


def _own_split(trained: TrainedRun):
    """(training cases, validation cases, dataset) of the run as it split them, or None when its data is gone."""
    from .trained import data_root

    try:
        dataset = read_decathlon(data_root(trained))
    except TaskError:
        return None
    train_cases, val_cases = split_cases(dataset.training, trained.option("val_frac", 0.2), trained.option("seed", 0))
    return train_cases, val_cases, dataset


TASK = Task(name="medical-validate", module="tasks.medical validate", doc=__doc__, add_options=add_options,
            run=validate, resolve=check, versions=("monai", "nibabel"))
