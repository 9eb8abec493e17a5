"""The scene task's journey on one tiny run: fit, predict palette masks on images the test writes (one unreadable),
export ONNX and run it in onnxruntime with the run's logits."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.ade20k.__main__ import main as ade20k
from tasks.ade20k.data import load_image
from tasks.ade20k.inference import predict_probs
from tasks.ade20k.transforms import EvalTransform
from tasks.common import TaskError, read_metrics

TINY = ["--synthetic-train", "8", "--synthetic-val", "2", "--batch-size", "4", "--max-iters", "2",
        "--warmup-iters", "1", "--num-png", "0", "--no-progress", "--print-every", "0", "--threads", "1",
        "--accelerator", "cpu", "--devices", "1"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("ade20k_journey")
    metrics = ade20k(["fit", "--out", str(base / "run"), *TINY])
    return base, metrics


def _segmenter(run):
    import argparse

    from tasks.ade20k.trained import FROM_RUN, load_segmenter

    args = argparse.Namespace(run=run, weights=None, data=None, **dict.fromkeys(FROM_RUN))
    return load_segmenter(args)


def test_predict_writes_a_palette_mask_per_image_and_names_the_unreadable_one(fitted, tmp_path):
    base, _ = fitted
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"wide.png": (40, 70), "tall.jpg": (66, 30)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.png").write_bytes(b"\x89PNG but not really")
    out = tmp_path / "p"
    with pytest.raises(TaskError, match=r"1 input\(s\) could not be read.*broken.png"):
        ade20k(["predict", "--run", str(base / "run"), "--inputs", str(photos), "--out", str(out), "--no-progress",
                "--threads", "1"])
    metrics = read_metrics(out / "metrics.json")
    assert metrics["images"] == 2 and metrics["skipped"] == [str(photos / "broken.png")]
    seg = _segmenter(base / "run")
    for name, (h, w) in sizes.items():
        with Image.open(out / "masks" / f"{name.rsplit('.', 1)[0]}.png") as mask:
            assert mask.mode == "P" and mask.size == (w, h)
            values = np.array(mask)
        x, _ = EvalTransform()(load_image(photos / name), np.zeros((h, w), np.uint8))
        expected = predict_probs(seg.model, x.unsqueeze(0), seg.test).argmax(1)[0].numpy() + 1
        np.testing.assert_array_equal(values, expected)
    rows = list(csv.DictReader((out / "classes.csv").open()))
    assert [r["class"] for r in rows] == seg.class_names and rows[0]["value"] == "1"


def test_export_onnx_runs_in_onnxruntime_with_the_runs_logits(fitted, tmp_path):
    import onnxruntime as ort

    base, _ = fitted
    out = tmp_path / "e"
    metrics = ade20k(["export", "--run", str(base / "run"), "--out", str(out)])
    assert metrics["metric"]["name"] == "max_abs_diff" and metrics["metric"]["value"] <= 1e-4
    seg = _segmenter(base / "run")
    side = metrics["input_size"][0]
    x = torch.randn(3, 3, side, side)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), seg.model(x), rtol=0, atol=1e-4)
    assert "mIoU" in (out / "README.md").read_text()
