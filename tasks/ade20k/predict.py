"""Segment the user's images with a trained UPerNet: one palette PNG per image (pixel value = class index + 1, as
ADE20K annotations; VOC colours), at the image's own size, with the run's inference settings.

    python -m tasks.ade20k predict --run runs/ade20k/<run> --inputs street_photos/
    python -m tasks.ade20k predict --run runs/ade20k/<run> --inputs "shots/*.jpg" --multi-scale

An unreadable image is named and skipped; the others are written, and the command then exits non-zero listing the
skipped files. Writes masks/<name>.png, classes.csv (value, class), metrics.json and config.yaml.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from ..common import Run, Score, Summary, Task, TaskError, write_csv
from ..common.folders import IMAGE_EXTENSIONS
from ..common.verbs import add_run_option, find_inputs
from .data import load_image
from .inference import MULTI_SCALE_RATIOS, predict_probs
from .palette import save_palette_png
from .train import add_test_options
from .transforms import EvalTransform


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.ade20k fit", "; its last.ckpt is the default")
    p.add_argument("--inputs", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    t = p.add_argument_group("inference (default: the run's)")
    add_test_options(t)
    t.add_argument("--multi-scale", action="store_true", help="ratios 0.5-1.75 of the test scale + flip")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run whose model segments the images")
    find_inputs(args.inputs, IMAGE_EXTENSIONS)


def predict(run: Run) -> Summary:
    from .trained import load_segmenter

    args = run.args
    args.weights = args.model = args.backbone = args.model_arg = args.num_classes = None  # all from the run
    seg = load_segmenter(args, MULTI_SCALE_RATIOS if args.multi_scale else (1.0,), args.multi_scale)
    files = find_inputs(args.inputs, IMAGE_EXTENSIONS)
    device = torch.device("cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu")
    model, normalise = seg.model.to(device), EvalTransform()
    skipped, written = [], 0
    for path in tqdm(files, desc="segmenting", disable=args.no_progress):
        try:
            image = load_image(path)
        except Exception as err:  # PIL raises many types for a file that is not an image
            print(f"cannot read {path}: {type(err).__name__}: {err}; skipped", flush=True)
            skipped.append(str(path))
            continue
        x, _ = normalise(image, np.zeros(image.shape[:2], np.uint8))
        pred = predict_probs(model, x.unsqueeze(0).to(device), seg.test).argmax(1)[0].cpu().numpy()
        save_palette_png(run.dir / "masks" / f"{path.stem}.png", pred, len(seg.class_names))
        written += 1
    write_csv(run.dir / "classes.csv", [{"value": i + 1, "class": c} for i, c in enumerate(seg.class_names)])
    print(f"{written} mask(s) written to {run.dir / 'masks'}", flush=True)
    extras = dict(images=written, model=seg.name, run=str(seg.source),
                  test={"mode": seg.test.mode, "scale": list(seg.test.scale), "ratios": list(seg.test.ratios),
                        "flip": seg.test.flip})
    return Summary(Score("images", written), data=", ".join(map(str, args.inputs)), split="predict",
                   params_m=sum(p.numel() for p in seg.model.parameters()) / 1e6, extras=extras, skipped=skipped)


TASK = Task(name="ade20k-predict", module="tasks.ade20k predict", doc=__doc__, add_options=add_options,
            run=predict, resolve=check)
