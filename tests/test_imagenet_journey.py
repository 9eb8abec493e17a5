"""The image task's whole journey on one tiny run: fit, validate, predict on files the test writes, export, and the
exports reloaded in their own tools (timm `local-dir:`, transformers' TimmWrapper, onnxruntime) with the run's
logits."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common import TaskError, read_metrics
from tasks.common.trained import TrainedRun
from tasks.imagenet import __main__ as imagenet
from tasks.imagenet.data import Preprocess, eval_transform
from tasks.imagenet.trained import Classifier

FAST = ["--model", "focalnet_digits", "--input-size", "16", "--crop-pct", "1.0", "--batch-size", "4",
        "--epochs", "2", "--aa", "none", "--reprob", "0", "--mixup", "0", "--cutmix", "0", "--warmup-epochs", "0",
        "--no-progress", "--accelerator", "cpu", "--devices", "1", "--threads", "1"]
CLASSES = ("circle", "square", "stripe")


def _image(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    img = rng.integers(0, 50, (size, size, 3), dtype=np.uint8)
    if kind == "square":
        img[4:12, 4:12] = 255
    elif kind == "stripe":
        img[:, 7:9] = 255
    else:
        yy, xx = np.mgrid[:size, :size]
        img[(yy - 8) ** 2 + (xx - 8) ** 2 < 20] = 255
    return img


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("journey")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for kind in CLASSES:
            (base / "data" / split / kind).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_image(kind, rng)).save(base / "data" / split / kind / f"{i}.png")
    metrics = imagenet.main(["fit", "--data", str(base / "data"), "--out", str(base / "run"), *FAST])
    return base, metrics


def test_verbs_dispatch_and_name_unknown_ones(capsys):
    with pytest.raises(TaskError, match="unknown verb 'train'.*fit, validate, predict, export"):
        imagenet.main(["train"])
    with pytest.raises(TaskError, match="name a verb"):
        imagenet.main([])
    assert "predict" in capsys.readouterr().out


def test_validate_reproduces_the_run_in_the_shared_schema(fitted, tmp_path):
    base, fit_metrics = fitted
    out = imagenet.main(["validate", "--run", str(base / "run"), "--out", str(tmp_path / "v"), "--no-progress"])
    on_disk = read_metrics(tmp_path / "v" / "metrics.json")  # the schema check
    assert on_disk["metric"] == {"name": "top1", "value": pytest.approx(fit_metrics["best_top1"])}
    assert out["images"] == 9 and on_disk["task"] == "imagenet-validate" and on_disk["split"] == "val"
    assert on_disk["baseline"]["name"] == fit_metrics["baseline"]["name"]
    assert on_disk["baseline"]["value"] == pytest.approx(fit_metrics["baseline"]["value"])
    rows = list(csv.DictReader((tmp_path / "v" / "per_class.csv").open()))
    assert [r["class"] for r in rows] == list(CLASSES) and all(r["images"] == "3" for r in rows)


def test_predict_labels_files_skips_unreadable_ones_and_exits_non_zero(fitted, tmp_path):
    base, _ = fitted
    rng = np.random.default_rng(1)
    inputs = tmp_path / "mine"
    (inputs / "nested").mkdir(parents=True)
    kinds = {"a.png": "square", "nested/b.png": "stripe", "c.jpg": "circle"}
    for name, kind in kinds.items():
        Image.fromarray(_image(kind, rng)).save(inputs / name)
    (inputs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "p"
    with pytest.raises(TaskError, match=r"1 input\(s\) could not be read and were skipped.*broken.png"):
        imagenet.main(["predict", "--run", str(base / "run"), "--inputs", str(inputs), "--top-k", "2",
                       "--maps", "1", "--out", str(out), "--no-progress"])
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert sorted(r["path"] for r in rows) == sorted(str(inputs / n) for n in kinds)
    assert set(rows[0]) == {"path", "label_1", "prob_1", "label_2", "prob_2"}
    metrics = read_metrics(out / "metrics.json")
    assert metrics["skipped"] == [str(inputs / "broken.png")] and metrics["images"] == 3
    assert len(list((out / "maps").glob("*.png"))) == 1
    # The CSV's labels are the trained model's, on the run's own preprocessing, recomputed here.
    classifier = Classifier.from_run(TrainedRun.open(base / "run"))
    transform = eval_transform(classifier.preprocess)
    for row in rows:
        with Image.open(row["path"]) as img, torch.no_grad():
            logits = classifier.model(transform(img.convert("RGB")).unsqueeze(0))
        probs = logits.softmax(1)[0]
        assert row["label_1"] == classifier.classes[int(probs.argmax())]
        assert float(row["prob_1"]) == pytest.approx(float(probs.max()), abs=1e-5)
    # a glob pattern and a single file select the same way
    with pytest.raises(TaskError, match="matches no file"):
        imagenet.main(["predict", "--run", str(base / "run"), "--inputs", str(inputs / "*.bmp")])


def test_export_reloads_in_timm_transformers_and_onnxruntime_with_the_runs_logits(fitted, tmp_path):
    import onnxruntime as ort
    import timm
    from transformers import AutoModelForImageClassification

    base, _ = fitted
    out = tmp_path / "e"
    metrics = imagenet.main(["export", "--run", str(base / "run"), "--out", str(out)])
    assert metrics["timm"]["max_abs_diff"] <= 1e-5 and metrics["onnx"]["max_abs_diff"] <= 1e-4
    classifier = Classifier.from_run(TrainedRun.open(base / "run"))
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        expected = classifier.model(x)
        via_timm = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True).eval()(x)
        hf = AutoModelForImageClassification.from_pretrained(str(out / "timm")).eval()
        via_hf = hf(x).logits
    torch.testing.assert_close(via_timm, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(via_hf, expected, rtol=0, atol=1e-5)
    assert [hf.config.id2label[i] for i in range(3)] == list(CLASSES)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"pixel_values": x.numpy()})  # another batch size than the export's
    torch.testing.assert_close(torch.from_numpy(onnx_logits), expected, rtol=0, atol=1e-4)
    config = json.loads((out / "timm" / "config.json").read_text())
    assert config["architecture"] == "focalmod_focalnet_tiny_srf" and config["label_names"] == list(CLASSES)
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16]
    card = (out / "timm" / "README.md").read_text()
    assert "top1" in card and "logistic regression" in card and "python -m tasks.imagenet fit" in card


def test_verbs_that_apply_a_run_name_a_missing_run(tmp_path):
    for verb in ("predict", "export"):
        with pytest.raises(TaskError, match="--run is required"):
            imagenet.main([verb, "--inputs", str(tmp_path)] if verb == "predict" else [verb])
    with pytest.raises(TaskError, match="--run: .* is neither a run directory nor a .ckpt file"):
        imagenet.main(["export", "--run", str(tmp_path / "nowhere")])


def test_preprocess_is_read_from_the_run(fitted):
    base, _ = fitted
    assert Classifier.from_run(TrainedRun.open(base / "run")).preprocess == Preprocess(16, 1.0)


def test_a_run_from_before_the_class_names_were_saved_still_validates_and_predicts(fitted, tmp_path):
    """Runs written before this change have no `classes` in their checkpoint: the verbs read the class names from
    the run's training folder, in timm's label order, and give the same answers."""
    import shutil

    base, _ = fitted
    old = tmp_path / "old_run"
    shutil.copytree(base / "run", old)
    for ckpt in (old / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        del state["hyper_parameters"]["classes"]
        torch.save(state, ckpt)
    assert "classes" not in TrainedRun.open(old).hparams
    current, older = Classifier.from_run(TrainedRun.open(base / "run")), Classifier.from_run(TrainedRun.open(old))
    assert older.classes == current.classes == list(CLASSES)
    out = imagenet.main(["validate", "--run", str(old), "--out", str(tmp_path / "v"), "--no-progress"])
    again = imagenet.main(["validate", "--run", str(base / "run"), "--out", str(tmp_path / "v2"), "--no-progress"])
    assert out["top1"] == again["top1"]
