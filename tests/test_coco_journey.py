"""The detection task's journey on one tiny run: fit, predict on images the test writes (one unreadable) into a
COCO-format file pycocotools reads, export ONNX and run it in onnxruntime with the detector's own outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.coco.__main__ import main as coco
from tasks.common import TaskError, read_metrics

TINY = ["--synthetic-train", "8", "--synthetic-val", "2", "--synthetic-size", "64", "--min-size", "64", "--max-size",
        "64", "--backbone-arg", "embed_dim=16", "--backbone-arg", "depths=[1,1,1,1]", "--fpn-channels", "16",
        "--box-head-dim", "32", "--mask-head-dim", "16", "--mask-head-layers", "1", "--rpn-pre-nms-train", "50",
        "--rpn-post-nms-train", "30", "--rpn-pre-nms-test", "50", "--rpn-post-nms-test", "30", "--box-batch-size",
        "16", "--batch-size", "4", "--epochs", "1", "--warmup-steps", "1", "--accelerator", "cpu", "--devices", "1",
        "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("coco_journey")
    coco(["fit", *TINY, "--out", str(base / "run")])
    return base


def test_predict_writes_coco_detections_for_readable_images(fitted, tmp_path):
    from pycocotools.coco import COCO

    from tasks.coco.data import detections_to_coco
    from tasks.coco.trained import load_detector

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, (h, w) in {"a.png": (64, 80), "b.jpg": (50, 64)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(photos / name)
    (photos / "c.png").write_bytes(b"")
    out = tmp_path / "p"
    with pytest.raises(TaskError, match=r"1 input\(s\) could not be read.*c.png"):
        coco(["predict", "--run", str(fitted / "run"), "--inputs", str(photos), "--score-threshold", "0",
              "--draw", "1", "--out", str(out)])
    metrics = read_metrics(out / "metrics.json")
    assert metrics["skipped"] == [str(photos / "c.png")] and metrics["images"] == 2
    dataset = COCO(str(out / "detections.json"))  # pycocotools reads the file
    assert sorted(i["file_name"] for i in dataset.dataset["images"]) == [str(photos / "a.png"), str(photos / "b.jpg")]
    assert len(dataset.getAnnIds()) == metrics["detections"]
    assert dataset.dataset["categories"] == [{"id": 1, "name": "circle"}, {"id": 3, "name": "square"},
                                             {"id": 5, "name": "triangle"}]  # the training set's own ids
    # the detections are the detector's own on the image, recomputed here
    _, module = load_detector(fitted / "run")
    with Image.open(photos / "a.png") as im:
        image = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        expected, _ = detections_to_coco(1, module.model([image])[0], module.category_ids)
    first = [a for a in dataset.dataset["annotations"] if a["image_id"] == 1]
    assert [a["bbox"] for a in first] == [e["bbox"] for e in expected]
    assert len(list((out / "drawn").glob("*.png"))) == 1


def test_export_onnx_feature_pyramid_matches_in_onnxruntime(fitted, tmp_path):
    import onnxruntime as ort

    from tasks.coco.trained import load_detector

    out = tmp_path / "e"
    metrics = coco(["export", "--run", str(fitted / "run"), "--out", str(out)])
    assert metrics["onnx"]["max_abs_diff"] <= 1e-4 and metrics["outputs"] == ["p2", "p3", "p4", "p5", "pool"]
    _, module = load_detector(fitted / "run")
    h, w = metrics["input_size"]
    x = torch.randn(3, 3, h, w, generator=torch.Generator().manual_seed(1))  # another batch than the export's
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        expected = list(module.model.backbone(x).values())
    assert len(got) == len(expected) == 5
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=0, atol=1e-4)
    assert "python -m tasks.coco fit" in (out / "README.md").read_text()
