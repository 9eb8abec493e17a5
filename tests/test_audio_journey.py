"""The sound task's whole journey on one tiny run (an ensemble of a 1D and a 2D member, one fold): fit, validate,
predict on WAV files the test writes, export, and the exports reloaded in their own tools (onnxruntime, timm
`local-dir:`) against the members' probabilities recomputed here from the training module and its checkpoints."""
from __future__ import annotations

import argparse
import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from tasks.audio import __main__ as audio
from tasks.audio.data import load_waveform, read_esc50
from tasks.audio.features import FeatureConfig, FeatureExtractor
from tasks.audio.module import AudioClassifierModule, TrainConfig
from tasks.audio.protocol import build_model_from_options, member_options
from tasks.audio.trained import SoundClassifier
from tasks.common import TaskError, read_metrics

FAST = ["--folds", "1", "--epochs", "1", "--synth-classes", "4", "--synth-clips", "2", "--clip-seconds", "0.5",
        "--depths", "1,1", "--explain", "0", "--ensemble", "2", "--ensemble-models", "focalnet1d:8,focalnet2d:4",
        "--no-progress", "--threads", "1", "--accelerator", "cpu", "--devices", "1"]
COMMON = ["--no-progress", "--threads", "1", "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("audio_journey")
    metrics = audio.main(["fit", "--out", str(base / "run"), "--cache-dir", str(base / "cache"), *FAST])
    return base / "run", metrics


def _expected_probabilities(run, waves: torch.Tensor) -> torch.Tensor:
    """The fold's averaged member probabilities, rebuilt the way training built them (not through
    tasks.audio.trained): config.yaml's options, the training module and each member's last checkpoint."""
    args = argparse.Namespace(**yaml.safe_load((run / "config.yaml").read_text()))
    fcfg = FeatureConfig(**json.loads((run / "metrics.json").read_text())["features"])
    extractor = FeatureExtractor(fcfg)
    with torch.no_grad():
        feats = torch.stack([extractor(w) for w in waves])
    probs = []
    for member, folder in enumerate(["fold1", "fold1/member1"]):
        state = torch.load(run / folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        model = build_model_from_options(member_options(args, member), 4, fcfg)
        module = AudioClassifierModule(model, 4, fcfg.kind, 0.0, 1.0, TrainConfig())
        module.load_state_dict(state["state_dict"])
        with torch.no_grad():
            probs.append(module.eval()(feats).softmax(1))
    return torch.stack(probs).mean(0)


def _load(run, path) -> torch.Tensor:
    c = json.loads((run / "metrics.json").read_text())["features"]
    return load_waveform(path, c["sample_rate"], int(round(c["sample_rate"] * c["clip_seconds"])), c["normalize"],
                         c["pad"])


def test_verbs_dispatch_and_fit_is_the_training_cli(fitted, capsys):
    run, metrics = fitted
    assert metrics["command"].startswith("python -m tasks.audio fit") and metrics["ensemble"] == 2
    with pytest.raises(TaskError, match="unknown verb 'train'.*fit, validate, predict, export"):
        audio.main(["train"])
    with pytest.raises(TaskError, match="name a verb"):
        audio.main([])
    assert "predict" in capsys.readouterr().out


def test_checkpoints_name_their_classes_and_old_runs_take_them_from_the_data(fitted, tmp_path):
    run, _ = fitted
    names = read_esc50(run / "synthetic_esc50").class_names
    state = torch.load(run / "fold1" / "member1" / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)
    assert state["hyper_parameters"]["classes"] == names and state["hyper_parameters"]["member"] == 1
    assert state["hyper_parameters"]["features"]["clip_seconds"] == 0.5
    old = tmp_path / "old"  # a run from before the class names were saved: no hyper-parameters in its checkpoints
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("logs", "feature_cache"))
    for ckpt in old.glob("fold1/**/*.ckpt"):
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        del saved["hyper_parameters"]
        torch.save(saved, ckpt)
    current, older = SoundClassifier.from_run(run), SoundClassifier.from_run(old)
    assert older.classes == current.classes == names and older.features == current.features
    x = torch.randn(3, current.features.num_freq, current.features.num_frames)
    torch.testing.assert_close(older.probabilities(x), current.probabilities(x))
    with pytest.raises(TaskError, match="--fold 2: .* has no trained fold2; trained: fold1"):
        SoundClassifier.from_run(run, fold=2)


def test_validate_reproduces_the_folds_accuracy(fitted, tmp_path):
    run, fit_metrics = fitted
    out = audio.main(["validate", "--run", str(run), "--out", str(tmp_path / "v"), *COMMON])
    on_disk = read_metrics(tmp_path / "v" / "metrics.json")
    assert on_disk["metric"] == {"name": "accuracy", "value": pytest.approx(fit_metrics["fold_accuracy"]["1"])}
    assert out["clips"] == 8 and out["trained_accuracy"] == pytest.approx(out["accuracy"])
    assert on_disk["baseline"]["value"] == pytest.approx(fit_metrics["baseline_fold_accuracy"]["1"])
    rows = list(csv.DictReader((tmp_path / "v" / "per_class.csv").open()))
    assert [r["class"] for r in rows] == read_esc50(run / "synthetic_esc50").class_names


def test_predict_labels_files_skips_unreadable_ones_and_exits_non_zero(fitted, tmp_path):
    run, _ = fitted
    inputs = tmp_path / "mine"
    (inputs / "nested").mkdir(parents=True)
    clips = sorted((run / "synthetic_esc50" / "audio").glob("1-*.wav"))[:3]
    shutil.copy(clips[0], inputs / "a.wav")
    shutil.copy(clips[1], inputs / "nested" / "b.wav")
    data, rate = sf.read(clips[2])  # stereo at another rate: down-mixed and resampled as training reads clips
    sf.write(inputs / "c.wav", np.stack([data, 0.5 * data], 1)[: int(0.4 * rate)], rate)
    sf.write(inputs / "d.wav", sf.read(clips[2])[0], 22050)
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00not audio at all")
    out = tmp_path / "p"
    with pytest.raises(TaskError, match=r"1 input\(s\) could not be read and were skipped.*broken.wav"):
        audio.main(["predict", "--run", str(run), "--inputs", str(inputs), "--top-k", "2", "--explain", "1",
                    "--batch-size", "2", "--out", str(out), *COMMON])
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    names = ["a.wav", "c.wav", "d.wav", "nested/b.wav"]
    assert sorted(r["path"] for r in rows) == sorted(str(inputs / n) for n in names)
    assert set(rows[0]) == {"path", "label_1", "prob_1", "label_2", "prob_2"}
    metrics = read_metrics(out / "metrics.json")
    assert metrics["skipped"] == [str(inputs / "broken.wav")] and metrics["clips"] == 4 and metrics["members"] == 2
    assert len(list((out / "explanations").glob("*_explanation.wav"))) == 1
    # The CSV's labels are the ensemble's, recomputed here from the training module and its checkpoints.
    classes = read_esc50(run / "synthetic_esc50").class_names
    expected = _expected_probabilities(run, torch.stack([_load(run, r["path"]) for r in rows]))
    for row, probs in zip(rows, expected):
        assert row["label_1"] == classes[int(probs.argmax())]
        assert float(row["prob_1"]) == pytest.approx(float(probs.max()), abs=1e-5)
        assert float(row["prob_2"]) == pytest.approx(float(probs.topk(2).values[1]), abs=1e-5)
    with pytest.raises(TaskError, match="matches no file"):
        audio.main(["predict", "--run", str(run), "--inputs", str(inputs / "*.mp3")])


def test_export_reloads_in_onnxruntime_and_timm_with_the_runs_outputs(fitted, tmp_path):
    import onnxruntime as ort
    import timm

    import focalmod  # noqa: F401  (registers the focalmod_* architectures in timm)

    run, _ = fitted
    out = tmp_path / "e"
    metrics = audio.main(["export", "--run", str(run), "--out", str(out), "--threads", "1"])
    assert metrics["onnx"]["input"] == "waveform" and metrics["onnx"]["max_abs_diff"] <= 1e-4
    assert [t["max_abs_diff"] <= 1e-5 for t in metrics["timm"]] == [True, True]
    clips = sorted((run / "synthetic_esc50" / "audio").glob("1-*.wav"))[-3:]  # another batch size than the export's
    waves = torch.stack([_load(run, c) for c in clips])
    expected = _expected_probabilities(run, waves)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_probs,) = session.run(None, {"waveform": waves.numpy()})
    torch.testing.assert_close(torch.from_numpy(onnx_probs), expected, rtol=0, atol=1e-4)
    classifier = SoundClassifier.from_run(run)
    feats = torch.stack([classifier.featurize(w) for w in waves])
    for m, member in enumerate(classifier.members):
        folder = out / "timm" / f"member{m}"
        config = json.loads((folder / "config.json").read_text())
        assert config["label_names"] == classifier.classes and config["audio"]["features"]["clip_seconds"] == 0.5
        x = (feats - config["audio"]["mean"]) / config["audio"]["std"]
        x = x if m == 0 else x.transpose(1, 2).unsqueeze(1)  # member 0: 1D (bins, frames); member 1: 2D (1, T, F)
        reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(x), member(feats), rtol=0, atol=1e-5)
    card = (out / "README.md").read_text()
    assert "mean_accuracy" in card and "waveform" in card and "python -m tasks.audio fit" in card


def test_verbs_that_apply_a_run_name_a_missing_or_foreign_run(tmp_path):
    for verb in ("predict", "export", "validate"):
        with pytest.raises(TaskError, match="--run is required"):
            audio.main([verb, "--inputs", str(tmp_path)] if verb == "predict" else [verb])
    with pytest.raises(TaskError, match="--run: .* is neither a run directory nor a .ckpt file"):
        audio.main(["export", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")])
    (tmp_path / "config.yaml").write_text("model: focalnet_digits\n")
    with pytest.raises(TaskError, match="is not a run of `python -m tasks.audio fit`"):
        SoundClassifier.from_run(tmp_path)
