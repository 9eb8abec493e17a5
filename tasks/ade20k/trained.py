"""A trained UPerNet as the verbs apply it: the network with its weights, the class names and the inference settings,
read from a `fit` run (or from plain weights, e.g. an official mmseg release, with --model and --data)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

import focalmod
from focalmod.checkpoints import CheckpointError

from ..common import TaskError, parse_key_values
from ..common.presets import Presets
from ..common.trained import TrainedRun, newest_run
from .data import read_class_names
from .inference import InferenceConfig
from .models import build_model

PRESETS = Path(__file__).parent / "presets"  # fit's; plain weights get the official (ade20k) test settings
FROM_RUN = ("model", "backbone", "model_arg", "img_scale", "crop_size", "test_mode", "test_stride", "num_classes")


@dataclass
class Segmenter:
    """`model` (eval mode), `class_names` in label order (value - 1), `test`: how it infers, `data`: the
    ADEChallengeData2016 folder it was trained on (None: unknown), `source`: the weights file, `format`: their
    format (Lightning checkpoint, mmseg, ...), `name`: the model for messages."""

    model: nn.Module
    class_names: list[str]
    test: InferenceConfig
    data: Path | None
    source: Path
    format: str
    name: str


def add_source_options(p: argparse.ArgumentParser) -> None:
    from ..common.verbs import add_run_option

    add_run_option(p, "python -m tasks.ade20k fit", " (default: the newest synthetic run under runs/ade20k/; the "
                   "run's last.ckpt, the final model, as published numbers are)")
    p.add_argument("--weights", type=Path, help="instead of --run: weights in any format focalmod.load_checkpoint "
                   "reads (e.g. an official mmseg release); needs --data, and --model unless the default fits")


def load_segmenter(args: argparse.Namespace, ratios: Sequence[float] = (1.0,), flip: bool = False) -> Segmenter:
    """The segmenter `args` name (`--run` / `--weights`, with the model and test options the user gave winning over
    the run's), inferring at `ratios` with `flip`."""
    if args.run is not None and args.weights is not None:
        raise TaskError("--run and --weights: give one")
    trained = None
    if args.weights is None:
        path = args.run or newest_run(Path("runs") / "ade20k", lambda o: o.get("data") is None, "synthetic run",
                                      "train one with `python -m tasks.ade20k fit` or pass --run")
        trained = TrainedRun.open(path / "checkpoints" / "last.ckpt" if Path(path).is_dir() else path)
        for key in FROM_RUN:
            if getattr(args, key, None) is None:
                setattr(args, key, trained.option(key))
    data = getattr(args, "data", None) or _run_data(trained)
    if data is None:
        raise TaskError("--data is needed with --weights (the ADEChallengeData2016 folder with the class names)")
    preset = Presets.load(PRESETS).resolve("ade20k", vars(args))  # the official test settings for plain weights
    model_name = args.model or (None if args.backbone else preset["model"])
    settings = {k: getattr(args, k) or preset[k] for k in ("img_scale", "crop_size", "test_mode", "test_stride")}
    class_names = list(trained.hparams["class_names"]) if trained and "class_names" in trained.hparams else \
        read_class_names(data, args.num_classes)
    model = build_model(model_name, args.backbone, len(class_names), parse_key_values(args.model_arg, "--model-arg"))
    if trained is not None:
        model.load_state_dict(trained.sub_state_dict("model."))
        source, fmt = trained.checkpoint, "lightning"
    else:
        try:
            fmt = focalmod.load_checkpoint(model, args.weights).format
        except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as err:
            raise TaskError(f"--weights: {err}") from None
        source = args.weights
    try:
        test = InferenceConfig(settings["test_mode"], tuple(settings["img_scale"]), tuple(ratios), flip,
                               settings["crop_size"], settings["test_stride"])
    except ValueError as err:
        raise TaskError(f"--test-mode/--test-stride: {err}") from None
    name = f"upernet+{args.backbone}" if args.backbone else model_name
    return Segmenter(model.eval(), class_names, test, Path(data), Path(source), fmt, name)


def _run_data(trained: TrainedRun | None) -> Any:
    if trained is None:
        return None
    return trained.option("data") or trained.dir / "data" / "ADEChallengeData2016"
