"""Score one fold's trained model(s) on a labelled ESC-50-format set: accuracy (torchmetrics) on the fold's test
clips, read and featurised exactly as training did, beside the run's MFCC baseline on the same fold.

    python -m tasks.audio validate --run runs/esc50/<run>                    # first trained fold, on the run's data
    python -m tasks.audio validate --run runs/esc50/<run> --fold 2 --data /data/ESC-50-master

`--data` (default: the run's `--data`, or the synthetic set in the run directory) is any layout `fit` reads (an ESC-50
root, a folder per class, or an audiofolder metadata.csv; folds as the run split them); the clips of the split's test
fold are scored (`--test-fold` another), an ensemble on its members' averaged probabilities. Writes metrics.json (the
shared schema: accuracy, with clips and the accuracy training reported for the fold), per_class.csv and config.yaml.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_accuracy

from ..common import Run, Score, Summary, Task, TaskError, write_csv
from .data import read_run_data
from .predict import add_run_options, predict_probabilities
from .protocol import plan_splits
from .trained import SYNTH_DIR, SoundClassifier


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_options(p)
    p.add_argument("--data", type=Path, help="sounds in a layout fit reads (ESC-50, a folder per class, audiofolder "
                   "metadata.csv) with the run's classes (default: the run's data)")
    p.add_argument("--test-fold", type=int, help="the data fold to score (default: the split's test fold)")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to score")
    if args.test_fold is not None and not 1 <= args.test_fold <= 5:
        raise TaskError(f"--test-fold must be in 1..5, got {args.test_fold}")


def validate(run: Run) -> Summary:
    args = run.args
    classifier = SoundClassifier.from_run(args.run, args.fold)
    config = classifier.config
    root = args.data or (Path(config["data"]) if config.get("data") else classifier.run / SYNTH_DIR)
    index = read_run_data(root, config)
    if index.class_names != classifier.classes:
        raise TaskError(f"--data: {root} has other classes than the model ({len(index.class_names)}: "
                        f"{', '.join(index.class_names[:5])}...; the model knows {len(classifier.classes)}: "
                        f"{', '.join(classifier.classes[:5])}...)")
    split = next(s for s in plan_splits(config["protocol"], config.get("folds") or [1, 2, 3, 4, 5])
                 if s.name == classifier.split)
    fold = args.test_fold or split.test
    picked = [i for i, c in enumerate(index.clips) if c.fold == fold]
    if not picked:
        raise TaskError(f"--data: {root} has no clips in fold {fold}")
    run.say(f"validating {classifier.split} of {classifier.run} ({classifier.name}) on fold {fold} of {root} "
            f"({len(picked)} clips)")
    probs = predict_probabilities(run, classifier, [index.path(index.clips[i]) for i in picked], args.batch_size)
    targets = torch.from_numpy(index.labels[picked])
    n = len(classifier.classes)
    accuracy = float(multiclass_accuracy(probs, targets, n, average="micro"))
    per_class = multiclass_accuracy(probs, targets, n, average="none")
    counts = torch.bincount(targets, minlength=n)
    write_csv(run.dir / "per_class.csv", [{"class": c, "clips": int(k), "accuracy": f"{float(a):.6f}" if k else ""}
                                          for c, k, a in zip(classifier.classes, counts, per_class)])
    own_data = args.data is None and fold == split.test
    result = classifier.run / classifier.split / "result.json"
    trained_accuracy = json.loads(result.read_text())["accuracy"] if own_data and result.is_file() else None
    base = ((classifier.metrics or {}).get("baseline_fold_accuracy") or {}).get(str(fold)) if own_data else None
    base_name = ((classifier.metrics or {}).get("baseline") or {}).get("name") or "MFCC statistics baseline"
    baseline = Score(base_name, base) if base is not None else None
    print(f"{classifier.split} on fold {fold} of {root}: accuracy {accuracy:.4f} ({len(picked)} clips)"
          + (f"; training reported {trained_accuracy:.4f}" if trained_accuracy is not None else "")
          + (f"; baseline {base_name} {base:.4f}" if base is not None else "") + f"\nrun dir: {run.dir}",
          flush=True)
    extras = dict(accuracy=accuracy, clips=len(picked), test_fold=fold, run=str(classifier.run),
                  fold=classifier.split, model=classifier.name, members=len(classifier.members),
                  trained_accuracy=trained_accuracy, checkpoints=[str(c) for c in classifier.checkpoints])
    return Summary(Score("accuracy", accuracy), data=str(root), split=f"test fold {fold}",
                   params_m=classifier.params_m, extras=extras, baseline=baseline)


TASK = Task(name="esc50-validate", module="tasks.audio validate", doc=__doc__, add_options=add_options,
            run=validate, resolve=check, versions=("torchaudio", "soundfile"))
