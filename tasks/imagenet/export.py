"""Carry a trained classifier into the tools where it is used: a timm / Hugging Face model folder and ONNX.

    python -m tasks.imagenet export --run runs/imagenet/<run>                     # both formats into the run dir
    python -m tasks.imagenet export --run runs/imagenet/<run> --format onnx --out exported/
    python -m tasks.imagenet export --run runs/imagenet/<run> --push me/focalnet-digits   # also upload the folder

`timm/` is written by timm's `save_for_hf` (config.json with the architecture, its arguments, the class names and
the preprocessing; model.safetensors) plus a README.md model card with the run's metric, baseline, data and
command. It loads with `timm.create_model("local-dir:DIR", pretrained=True)` after `import focalmod` (which
registers the `focalmod_*` architectures in timm), and with transformers'
`AutoModelForImageClassification.from_pretrained(DIR)` (its TimmWrapper, same condition). `model.onnx` comes from
the dynamo exporter (dynamic batch). Both are loaded back here and compared with the trained model on the run's own
preprocessing of the validation images (max abs difference in metrics.json). `--push REPO_ID` uploads the folder
with huggingface_hub (needs network and a token; not tested offline).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import focalmod

from ..common import Run, Score, Summary, Task, TaskError, atomic_write
from ..common.export import export_onnx, model_card, write_model_card
from ..common.trained import TrainedRun
from ..common.verbs import add_run_option
from .data import checked_dataset, eval_transform, val_dir_of
from .digits import default_cache_dir, digits_image_folder
from .recipe import resolve_model
from .trained import Classifier

FORMATS = ("timm", "onnx")
TIMM_TOLERANCE = 1e-5


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.imagenet fit")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="what to write")
    p.add_argument("--push", metavar="REPO_ID", help="upload the timm folder to this Hugging Face Hub repository "
                   "(needs network access and a token; cannot be tested offline)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to export")
    if args.push and "timm" not in args.format:
        raise TaskError("--push uploads the timm folder: add timm to --format")


def export(run: Run) -> Summary:
    args = run.args
    trained = TrainedRun.open(args.run)
    classifier = Classifier.from_run(trained)
    example = _example_batch(trained, classifier)
    extras: dict = dict(model=classifier.name, run=str(trained.dir), checkpoint=str(trained.checkpoint))
    if "timm" in args.format:
        folder = run.dir / "timm"
        extras["timm"] = dict(folder=str(folder), max_abs_diff=_timm_folder(trained, classifier, folder, example))
        run.say(f"timm / Hugging Face folder: {folder} (loads back with max abs diff "
                f"{extras['timm']['max_abs_diff']:.1e})")
        if args.push:
            from huggingface_hub import upload_folder

            extras["timm"]["pushed_to"] = upload_folder(repo_id=args.push, folder_path=str(folder))
    if "onnx" in args.format:
        extras["onnx"] = export_onnx(classifier.model, [example], run.dir / "model.onnx",
                                     input_names=["pixel_values"], output_names=["logits"])
        run.say(f"ONNX: {extras['onnx']['file']} (onnxruntime max abs diff {extras['onnx']['max_abs_diff']:.1e})")
    worst = max(extras[f]["max_abs_diff"] for f in args.format)
    return Summary(Score("max_abs_diff", worst), data=str(trained.dir), split="export",
                   params_m=sum(p.numel() for p in classifier.model.parameters()) / 1e6, extras=extras)


def _timm_folder(trained: TrainedRun, classifier: Classifier, folder: Path, example: torch.Tensor) -> float:
    """timm's `save_for_hf` folder + model card; returns the max abs difference of the folder reloaded by timm."""
    import timm

    base, preset_args, _ = resolve_model(classifier.name)
    architecture = f"focalmod_{base}" if base in focalmod.list_models() else base  # else a timm baseline preset
    model_args = {k: v for k, v in {**preset_args, **classifier.overrides}.items() if not k.endswith("_rate")}
    pre = classifier.preprocess
    timm.models.save_for_hf(
        classifier.model, str(folder), safe_serialization=True, model_args=model_args,
        model_config={"pretrained_cfg": {"architecture": architecture}, "label_names": classifier.classes},
        data_config=dict(input_size=(3, pre.input_size, pre.input_size), crop_pct=pre.crop_pct,
                         interpolation=pre.interpolation, mean=pre.mean, std=pre.std))
    config = json.loads((folder / "config.json").read_text())
    # transformers' TimmWrapper passes num_classes itself (from the label names) and fails on a second one in
    # model_args; timm takes it from the config's root and pretrained_cfg, so the folder loads in both without it.
    config.get("model_args", {}).pop("num_classes", None)
    atomic_write(folder / "config.json", json.dumps(config, indent=2))
    usage = (f'import focalmod, timm  # focalmod registers the focalmod_* architectures in timm\n'
             f'model = timm.create_model("local-dir:{folder.name}", pretrained=True).eval()\n'
             f'# or: transformers.AutoModelForImageClassification.from_pretrained("{folder.name}")\n'
             f'cfg = timm.data.resolve_data_config({{}}, model=model)\n'
             f'transform = timm.data.create_transform(**cfg)  # {pre.input_size} px, crop_pct {pre.crop_pct}\n'
             f'labels = model.pretrained_cfg.get("label_names")  # {len(classifier.classes)} classes')
    write_model_card(folder, model_card(f"{classifier.name} ({config['architecture']})", trained.metrics, usage,
                                        [f"Classes: {', '.join(classifier.classes)}", ""]))
    reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        diff = float((reloaded(example) - classifier.model(example)).abs().max())
    if not diff <= TIMM_TOLERANCE:
        raise TaskError(f"timm folder: reloaded from {folder}, the model differs by {diff:.2e}")
    return diff


def _example_batch(trained: TrainedRun, classifier: Classifier, n: int = 4) -> torch.Tensor:
    """`n` validation images of the run through its evaluation transform (random pixels when the data is gone)."""
    pre = classifier.preprocess
    root = trained.option("data") or digits_image_folder(default_cache_dir(), pre.input_size)
    try:
        dataset = checked_dataset(val_dir_of(root), "--run (its validation images)", eval_transform(pre))
        return torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])
    except TaskError:  # the data has moved or gone
        pass
    return torch.randn(n, 3, pre.input_size, pre.input_size, generator=torch.Generator().manual_seed(0))


TASK = Task(name="imagenet-export", module="tasks.imagenet export", doc=__doc__, add_options=add_options,
            run=export, resolve=check, trainer=False)
