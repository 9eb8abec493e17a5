"""Carry one fold's trained sound classifier into the tools where it is used: ONNX and a timm / Hugging Face folder.

    python -m tasks.audio export --run runs/esc50/<run>                     # both formats of the first trained fold
    python -m tasks.audio export --run runs/esc50/<run> --fold 3 --format onnx --out exported/

`model.onnx` (dynamo exporter, dynamic batch) takes the waveform and gives the class probabilities: input
`waveform` (batch, samples) is a clip as training loaded it (mono, resampled to the run's rate, cropped or padded to
its length, peak-normalised: `tasks.audio.data.load_waveform`), the graph computes the run's features (STFT,
log-mel or log1p magnitude), standardises them with each member's training statistics and averages the members'
softmax, as training scored the fold. Where the feature extraction does not export within 1e-4 of the eager model
in onnxruntime, the graph takes the features `(batch, bins, frames)` instead (metrics.json `onnx.input` says which).
The feature settings, class names and input are in README.md beside it and in metrics.json.

`timm/` holds the network of each member (an ensemble: every member, in `timm/member<m>/`) as timm's `save_for_hf`
writes it (config.json with the architecture, its arguments and the class names; model.safetensors) plus a
README.md model card with the run's metric, baseline, features and the member's input layout. It loads with
`timm.create_model("local-dir:DIR", pretrained=True)` after `import focalmod` and gives that member's logits for the
standardised features arranged as its backbone takes them (2D: (batch, channels, frames, bins); 1D: (batch, bins,
frames)); models with the gnConv mixer (`--mixer gnconv`) are not a registered architecture and export to ONNX
only. transformers' AutoModelForImageClassification is not checked here: its TimmWrapper expects images. Both
formats are loaded back and compared with the trained model on the fold's own test clips (max abs difference in
metrics.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..common import Run, Score, Summary, Task, TaskError, atomic_write
from ..common.export import export_onnx, model_card, write_model_card
from .data import read_run_data
from .predict import add_run_options
from .protocol import plan_splits
from .trained import SYNTH_DIR, SoundClassifier, WaveformClassifier, architecture

FORMATS = ("onnx", "timm")
TIMM_TOLERANCE = 1e-5


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_options(p)
    p.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS),
                   help="what to write: onnx (the whole fold, ensemble averaged, waveform in), timm (every member's "
                        "network: timm/, or timm/member<m>/ for an ensemble)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to export")


def export(run: Run) -> Summary:
    args = run.args
    classifier = SoundClassifier.from_run(args.run, args.fold)
    waves = example_waveforms(classifier)
    extras: dict = dict(run=str(classifier.run), fold=classifier.split, model=classifier.name,
                        members=len(classifier.members), classes=classifier.classes,
                        features=classifier.features.to_dict(), checkpoints=[str(c) for c in classifier.checkpoints])
    diffs = []
    if "onnx" in args.format:
        extras["onnx"] = _onnx(classifier, waves, run.dir)
        diffs.append(extras["onnx"]["max_abs_diff"])
        run.say(f"ONNX: {extras['onnx']['file']} ({extras['onnx']['input']} in, class probabilities out; "
                f"onnxruntime max abs diff {extras['onnx']['max_abs_diff']:.1e})")
    if "timm" in args.format:
        features = torch.stack([classifier.featurize(w) for w in waves])
        folders = []
        for m in range(len(classifier.members)):
            folder = run.dir / "timm" / (f"member{m}" if len(classifier.members) > 1 else "")
            folders.append(dict(folder=str(folder), max_abs_diff=_timm_folder(classifier, m, folder, features)))
            diffs.append(folders[-1]["max_abs_diff"])
            run.say(f"timm / Hugging Face folder: {folder} (loads back with max abs diff "
                    f"{folders[-1]['max_abs_diff']:.1e})")
        extras["timm"] = folders
    return Summary(Score("max_abs_diff", max(diffs)), data=str(classifier.run), split="export",
                   params_m=classifier.params_m, extras=extras)


def example_waveforms(classifier: SoundClassifier, n: int = 4) -> torch.Tensor:
    """`(n, samples)`: the split's first test clips as training loaded them (noise when the data is gone)."""
    config = classifier.config
    root = Path(config["data"]) if config.get("data") else classifier.run / SYNTH_DIR
    test = next((s.test for s in plan_splits(config["protocol"], config.get("folds") or [1, 2, 3, 4, 5])
                 if s.name == classifier.split), None)
    try:
        index = read_run_data(root, config)
        paths = [index.path(c) for c in index.clips if c.fold == test][:n]
        if paths:
            return torch.stack([classifier.load(p) for p in paths])
    except TaskError:
        pass
    wave = torch.randn(n, classifier.features.num_samples, generator=torch.Generator().manual_seed(0))
    return wave / wave.abs().amax(1, keepdim=True)


def _onnx(classifier: SoundClassifier, waves: torch.Tensor, folder: Path) -> dict:
    """The waveform graph, else (the feature extraction does not export, or not within tolerance) the features
    graph; README.md beside it says which and how to feed it."""
    path = folder / "model.onnx"
    try:
        result = export_onnx(WaveformClassifier(classifier.features, classifier.ensemble), [waves], path,
                             input_names=["waveform"], output_names=["probabilities"])
        result["input"] = "waveform"
    except Exception as err:  # the exporter's errors have many types; the features graph is the fallback
        features = torch.stack([classifier.featurize(w) for w in waves])
        result = export_onnx(classifier.ensemble, [features], path, input_names=["features"],
                             output_names=["probabilities"])
        result["input"], result["waveform_failed"] = "features", f"{type(err).__name__}: {str(err)[:300]}"
    c = classifier.features
    shape = (f"(batch, {c.num_samples}) float32 samples: the clip at {c.sample_rate} Hz, {c.clip_seconds:g} s"
             if result["input"] == "waveform" else f"(batch, {c.num_freq}, {c.num_frames}) float32 {c.kind} features")
    usage = (f'import numpy as np, onnxruntime as ort\n'
             f'from tasks.audio.data import load_waveform  # mono, resampled, pad {c.pad!r}, normalize '
             f'{c.normalize!r}\n'
             f'session = ort.InferenceSession("model.onnx")\n'
             f'wave = load_waveform("clip.wav", {c.sample_rate}, {c.num_samples}, "{c.normalize}", "{c.pad}")\n'
             + ('(probs,) = session.run(None, {"waveform": wave.numpy()[None]})\n' if result["input"] == "waveform"
                else 'features = tasks.audio.features.FeatureExtractor(config)(wave)\n'
                     '(probs,) = session.run(None, {"features": features.numpy()[None]})\n')
             + f'labels = {classifier.classes!r}')
    members = len(classifier.members)
    averaged = f"the average of the {members} members'" if members > 1 else "the"
    extra = [f"ONNX: input `{result['input']}` {shape}; output `probabilities` (batch, {len(classifier.classes)}): "
             f"{averaged} softmax, as training scored {classifier.split}.", "",
             f"Features: {json.dumps(c.to_dict())}", "", f"Classes (label order): {', '.join(classifier.classes)}", ""]
    write_model_card(folder, model_card(f"{classifier.name}, {classifier.split} (ONNX)", classifier.metrics, usage,
                                        extra))
    return result


def _timm_folder(classifier: SoundClassifier, m: int, folder: Path, features: torch.Tensor) -> float:
    """Member `m`'s backbone as timm's `save_for_hf` folder + model card; returns the max abs difference of the
    folder reloaded by timm against the trained backbone on the member's input of `features`."""
    import timm

    options, member = classifier.options[m], classifier.members[m]
    if getattr(options, "mixer", "focal") != "focal":
        raise TaskError(f"--format timm: member {m} uses the {options.mixer} mixer, not a registered architecture; "
                        "export it with --format onnx")
    variant, in_chans, overrides = architecture(options, classifier.features)
    model_args = {"in_chans": in_chans, **{k: v for k, v in overrides.items() if not k.endswith("_rate")}}
    model_args = {k: list(v) if isinstance(v, tuple) else v for k, v in model_args.items()}
    backbone = member.model.backbone
    c = classifier.features
    layout = ("(batch, bins, frames): the frequency bins are the channels" if member.model.spatial_dims == 1 else
              f"(batch, {in_chans}, frames, bins)" + (f" resized to {list(member.model.resize)}"
                                                      if member.model.resize else ""))
    audio = {"features": c.to_dict(), "mean": float(member.mean), "std": float(member.std), "input_layout": layout,
             "fold": classifier.split, "member": m}
    timm.models.save_for_hf(backbone, str(folder), safe_serialization=True, model_args=model_args,
                            model_config={"pretrained_cfg": {"architecture": f"focalmod_{variant}"},
                                          "label_names": classifier.classes, "audio": audio})
    config = json.loads((folder / "config.json").read_text())
    config.get("model_args", {}).pop("num_classes", None)  # as tasks.imagenet.export: timm takes it from the root
    atomic_write(folder / "config.json", json.dumps(config, indent=2))
    usage = (f'import focalmod, timm  # focalmod registers the focalmod_* architectures in timm\n'
             f'model = timm.create_model("local-dir:{folder.name}", pretrained=True).eval()\n'
             f'# input: {c.kind} features of tasks.audio.features.FeatureExtractor (config.json "audio"), '
             f'standardised\n# (x - {float(member.mean):.6g}) / {float(member.std):.6g}, laid out {layout}\n'
             f'labels = model.pretrained_cfg.get("label_names")  # {len(classifier.classes)} classes')
    extra = [f"Member {m} of {len(classifier.members)} of {classifier.split}"
             + (" (the fold is scored on the members' averaged softmax)" if len(classifier.members) > 1 else "") + ".",
             "", f"Features: {json.dumps(c.to_dict())}", "", f"Classes: {', '.join(classifier.classes)}", ""]
    write_model_card(folder, model_card(f"{options.model}/{variant} ({config['architecture']})", classifier.metrics,
                                        usage, extra))
    x = member.model.to_input(member.normalize(features)).contiguous()
    reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        diff = float((reloaded(x) - backbone.eval()(x)).abs().max())
    if not diff <= TIMM_TOLERANCE:
        raise TaskError(f"timm folder: reloaded from {folder}, member {m} differs by {diff:.2e}")
    return diff


TASK = Task(name="esc50-export", module="tasks.audio export", doc=__doc__, add_options=add_options, run=export,
            resolve=check, trainer=False, versions=("torchaudio", "soundfile"))
