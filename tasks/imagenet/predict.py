"""Label the user's images with a trained classifier: a CSV of path, top-k labels and probabilities, optionally the
modulator maps of a FocalNet as PNGs.

    python -m tasks.imagenet predict --run runs/imagenet/<run> --inputs photos/           # a folder (recursive)
    python -m tasks.imagenet predict --run runs/imagenet/<run> --inputs a.jpg "shots/*.png" --maps 4

Images go through the run's evaluation transform, in batches, with a progress bar. A file that cannot be read is
named and skipped; the others are still labelled, and the command then exits non-zero listing the skipped files.
Writes predictions.csv (path, label_1, prob_1, ...), maps/<name>.png with `--maps N`, metrics.json and
config.yaml.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timm.data import ImageDataset
from torch.utils.data import DataLoader

from ..common import Run, Score, Summary, Task, TaskError, write_csv
from ..common.folders import IMAGE_EXTENSIONS, find_unreadable_images
from ..common.trained import TrainedRun
from ..common.verbs import add_run_option, find_inputs
from .data import eval_transform
from .trained import Classifier


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.imagenet fit")
    p.add_argument("--inputs", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--top-k", type=int, default=5, help="labels per image in predictions.csv")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--maps", type=int, default=0, help="draw the modulator and gate maps of the first N images "
                   "(maps/<name>.png; FocalNets only)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run whose model labels the images")
    if args.top_k < 1:
        raise TaskError(f"--top-k must be >= 1, got {args.top_k}")
    if args.maps < 0:
        raise TaskError(f"--maps must be >= 0, got {args.maps}")
    find_inputs(args.inputs, IMAGE_EXTENSIONS)  # one clear error before the run directory is made


def predict(run: Run) -> Summary:
    from ..common.predictor import Predictor

    args = run.args
    classifier = Classifier.from_run(TrainedRun.open(args.run))
    files = find_inputs(args.inputs, IMAGE_EXTENSIONS)
    skipped = find_unreadable_images(files)
    for path in skipped:
        print(f"cannot read {path}: skipped", flush=True)
    readable = [f for f in files if f not in set(skipped)]
    rows = []
    if readable:
        dataset = ImageDataset(str(readable[0].parent), transform=eval_transform(classifier.preprocess),
                               input_img_mode="RGB")
        dataset.reader.samples = [(str(f), -1) for f in readable]
        loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
        run.say(f"labelling {len(readable)} image(s) with {classifier.name} ({len(classifier.classes)} classes)")
        logits = torch.cat(run.trainer(logger=False).predict(Predictor(classifier.model), loader))
        k = min(args.top_k, len(classifier.classes))
        probs, labels = logits.float().softmax(1).topk(k, dim=1)
        for path, p, idx in zip(readable, probs.tolist(), labels.tolist()):
            row = {"path": str(path)}
            for rank, (prob, label) in enumerate(zip(p, idx), 1):
                row[f"label_{rank}"], row[f"prob_{rank}"] = classifier.classes[label], f"{prob:.6f}"
            rows.append(row)
        if args.maps:
            _draw_maps(classifier, dataset, readable, rows, args.maps, run.dir / "maps")
    write_csv(run.dir / "predictions.csv", rows,
              ["path", *[f"{c}_{r}" for r in range(1, min(args.top_k, len(classifier.classes)) + 1)
                         for c in ("label", "prob")]])
    print(f"{len(rows)} image(s) labelled: {run.dir / 'predictions.csv'}", flush=True)
    mean_top = sum(float(r["prob_1"]) for r in rows) / len(rows) if rows else None
    extras = dict(images=len(rows), model=classifier.name, run=str(args.run), classes=len(classifier.classes))
    return Summary(Score("mean_top1_probability", mean_top), data=", ".join(map(str, args.inputs)), split="predict",
                   params_m=sum(p.numel() for p in classifier.model.parameters()) / 1e6, extras=extras,
                   skipped=[str(p) for p in skipped])


def _draw_maps(classifier: Classifier, dataset: ImageDataset, files: list[Path], rows: list[dict], n: int,
               folder: Path) -> None:
    from focalmod.viz import find_modulations, modulation_maps, plot_modulation_maps

    if not find_modulations(classifier.model):
        raise TaskError(f"--maps: {classifier.name} has no focal modulation layers to draw")
    for i in range(min(n, len(files))):
        x = dataset[i][0].unsqueeze(0)
        maps = modulation_maps(classifier.model, x)
        title = f"{files[i].name}: {rows[i]['label_1']} ({float(rows[i]['prob_1']):.2f})"
        plot_modulation_maps(x, maps, folder / f"{i:04d}_{files[i].stem}.png", title=title)


TASK = Task(name="imagenet-predict", module="tasks.imagenet predict", doc=__doc__, add_options=add_options,
            run=predict, resolve=check)
