"""The medical task's journey on one tiny 2D run: fit, predict on NIfTI files the test writes (one corrupt), export,
and the exports reloaded in their own tools: onnxruntime with the network's logits, `monai.bundle run` writing the
label maps predict wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monai")
nib = pytest.importorskip("nibabel")

from tasks.common import TaskError, read_metrics  # noqa: E402
from tasks.common.trained import TrainedRun  # noqa: E402
from tasks.medical import __main__ as medical  # noqa: E402
from tasks.medical.export import check_metadata  # noqa: E402
from tasks.medical.trained import Segmenter  # noqa: E402

FAST = ["--spatial-dims", "2", "--synthetic-cases", "4", "--synthetic-size", "32", "--roi-size", "32",
        "--feature-size", "8", "--depths", "1", "1", "--num-samples", "1", "--sw-batch-size", "2",
        "--print-every", "0", "--no-progress", "--max-steps", "2", "--no-predict", "--accelerator", "cpu",
        "--devices", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("medical_journey")
    medical.main(["fit", "--out", str(base / "run"), *FAST])
    return base


@pytest.fixture(scope="module")
def inputs(fitted) -> dict[str, Path]:
    """Two readable images in grids unlike the training files' (another shape, spacing, flips and origin; .nii and
    .nii.gz, one in a sub-folder) and a corrupt .nii.gz."""
    source = nib.load(fitted / "run" / "data" / "imagesTr" / "synth_000.nii.gz")
    data = np.asarray(source.dataobj, dtype=np.float32)
    folder = fitted / "mine"
    (folder / "good" / "nested").mkdir(parents=True)
    files = {"a": folder / "good" / "a.nii.gz", "b": folder / "good" / "nested" / "b.nii",
             "corrupt": folder / "corrupt.nii.gz"}
    nib.save(nib.Nifti1Image(data, source.affine), str(files["a"]))
    affine = np.diag([1.2, -0.9, 1.0, 1.0])
    affine[:3, 3] = (-5.0, 12.0, 3.0)
    nib.save(nib.Nifti1Image(data[2:29, 1:31].copy(), affine), str(files["b"]))
    files["corrupt"].write_bytes(b"\x1f\x8b not really a gzip'd NIfTI")
    return files


@pytest.fixture(scope="module")
def predicted(fitted, inputs) -> Path:
    out = fitted / "predict"
    with pytest.raises(TaskError, match=r"1 input\(s\) could not be read and were skipped.*corrupt.nii.gz"):
        medical.main(["predict", "--run", str(fitted / "run"), "--inputs", str(inputs["corrupt"].parent / "good"),
                      str(inputs["corrupt"]), "--out", str(out), "--threads", "1", "--no-progress"])
    return out


def test_verbs_dispatch_and_name_unknown_ones(capsys):
    with pytest.raises(TaskError, match="unknown verb 'train'.*fit, validate, predict, export"):
        medical.main(["train"])
    with pytest.raises(TaskError, match="name a verb"):
        medical.main([])
    assert "export" in capsys.readouterr().out


def test_fit_is_the_training_task(fitted):
    metrics = read_metrics(fitted / "run" / "metrics.json")
    assert metrics["task"] == "medical" and metrics["steps"] == 2
    assert metrics["command"].startswith("python -m tasks.medical fit")


def test_validate_reproduces_the_runs_dice_in_the_shared_schema(fitted, tmp_path):
    fit = read_metrics(fitted / "run" / "metrics.json")
    out = medical.main(["validate", "--run", str(fitted / "run"), "--out", str(tmp_path / "v"), "--threads", "1"])
    on_disk = read_metrics(tmp_path / "v" / "metrics.json")  # the schema check
    assert on_disk["task"] == "medical-validate" and on_disk["split"] == "val" and out["cases"] == 1
    assert on_disk["metric"]["name"] == "dice"
    assert on_disk["metric"]["value"] == pytest.approx(fit["dice"], abs=1e-6)
    assert on_disk["dice_per_class"] == pytest.approx(fit["dice_per_class"], abs=1e-6, nan_ok=True)
    assert on_disk["baseline"]["value"] == pytest.approx(fit["baseline"]["value"], abs=1e-6)
    assert (tmp_path / "v" / "per_case.csv").read_text().startswith("image,dice_class1,dice_class2")


def test_predict_writes_each_input_in_its_grid_and_skips_the_corrupt_one(fitted, inputs, predicted):
    written = {p.name: p for p in (predicted / "predictions").glob("*")}
    assert sorted(written) == ["a_seg.nii.gz", "b_seg.nii.gz"]
    for key in ("a", "b"):
        image, pred = nib.load(inputs[key]), nib.load(written[f"{key}_seg.nii.gz"])
        assert pred.shape == image.shape and pred.get_data_dtype() == np.uint8
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-6)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    metrics = read_metrics(predicted / "metrics.json")
    assert metrics["skipped"] == [str(inputs["corrupt"])] and metrics["images"] == 2
    assert metrics["task"] == "medical-predict" and (predicted / "config.yaml").is_file()
    # The label map is the trained network's, by sliding window, recomputed here on the untouched grid of `a`.
    segmenter = Segmenter.from_run(TrainedRun.open(fitted / "run"))
    from tasks.medical.data import build_transforms

    data = build_transforms(segmenter.cfg, train=False, keys=("image",))({"image": str(inputs["a"])})
    with torch.no_grad():
        labels = segmenter.module.infer(data["image"][None])[0].argmax(0)
    ras = np.asarray(nib.load(written["a_seg.nii.gz"]).dataobj)[::-1, ::-1]  # the files are L/P-flipped
    box = tuple(slice(int(s), int(s) + n) for s, n in zip(_crop_start(data["image"]), labels.shape))
    np.testing.assert_array_equal(ras[box], labels.numpy())


def _crop_start(image) -> list[int]:
    """Where CropForegroundd's box starts (0 when nothing was cropped)."""
    for op in image.applied_operations:
        if op["class"] == "CropForeground":
            return [int(c[0]) for c in np.asarray(op["extra_info"]["cropped"]).reshape(-1, 2)]
    return [0] * (image.ndim - 1)


def test_predict_defaults_to_the_test_list_of_the_runs_data(fitted, tmp_path):
    metrics = medical.main(["predict", "--run", str(fitted / "run"), "--out", str(tmp_path / "p"), "--threads", "1"])
    assert sorted(Path(p).name for p in metrics["predictions"]) == ["synth_004_seg.nii.gz", "synth_005_seg.nii.gz"]
    assert metrics["metric"]["name"] == "mean_foreground_fraction" and 0 <= metrics["metric"]["value"] <= 1


def test_export_reloads_in_onnxruntime_and_monai_bundle_run(fitted, inputs, predicted, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "e"
    metrics = medical.main(["export", "--run", str(fitted / "run"), "--out", str(out), "--threads", "1"])
    assert metrics["onnx"]["max_abs_diff"] <= 1e-4 and metrics["bundle"]["max_abs_diff"] <= 1e-5
    model = Segmenter.from_run(TrainedRun.open(fitted / "run")).module.model.eval()
    x = torch.randn(3, 1, 32, 32)  # another batch size than the export's
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=0, atol=1e-4)

    bundle = out / "bundle"
    for part in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "docs/README.md"):
        assert (bundle / part).is_file(), part
    inference = (bundle / "configs" / "inference.json").read_text()
    assert "focalmod.models.FocalUNet" in inference and "tasks." not in inference  # no training code
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert check_metadata(meta) == []
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "class1",
                                                                             "2": "class2"}
    assert check_metadata({k: v for k, v in meta.items() if k != "authors"}) == ["authors"]
    card = (bundle / "docs" / "README.md").read_text()
    baseline = json.loads((fitted / "run" / "metrics.json").read_text())["baseline"]["name"]
    assert "dice" in card and baseline in card and "python -m tasks.medical fit" in card

    segmentations = tmp_path / "seg"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
               "--bundle_root", str(bundle), "--dataset_dir", str(inputs["a"].parent), "--output_dir",
               str(segmentations)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    from_bundle = sorted(p.name for p in segmentations.rglob("*.nii.gz"))
    assert from_bundle == ["a_seg.nii.gz", "b_seg.nii.gz"]
    for name in from_bundle:
        ours, theirs = nib.load(predicted / "predictions" / name), nib.load(segmentations / name)
        np.testing.assert_array_equal(np.asarray(theirs.dataobj), np.asarray(ours.dataobj))
        np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-6)
        assert theirs.get_data_dtype() == np.uint8


def test_export_checks_metadata_against_a_local_schema(fitted, tmp_path):
    """`--schema FILE` runs monai.bundle verify_metadata offline. The real schema (metadata.json's "schema" URL) is
    not shipped with MONAI and cannot be downloaded here; a stand-in with the specification's keys checks the path."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["version", "monai_version", "network_data_format"],
                                  "properties": {"version": {"type": "string"}}}))
    metrics = medical.main(["export", "--run", str(fitted / "run"), "--out", str(tmp_path / "ok"), "--format",
                            "bundle", "--schema", str(schema), "--threads", "1"])
    assert metrics["bundle"]["metadata_checked"] == f"schema {schema}"
    schema.write_text(json.dumps({"type": "object", "required": ["not_a_key_we_write"]}))
    with pytest.raises(TaskError, match="does not satisfy --schema"):
        medical.main(["export", "--run", str(fitted / "run"), "--out", str(tmp_path / "bad"), "--format", "bundle",
                      "--schema", str(schema), "--threads", "1"])


def test_verbs_that_apply_a_run_name_a_missing_run(tmp_path):
    with pytest.raises(TaskError, match="--run is required"):
        medical.main(["predict", "--inputs", str(tmp_path)])
    with pytest.raises(TaskError, match="--run is required"):
        medical.main(["export"])
    with pytest.raises(TaskError, match="--run: .* is neither a run directory nor a .ckpt file"):
        medical.main(["export", "--run", str(tmp_path / "nowhere")])
    with pytest.raises(TaskError, match="--inputs: .*absent.nii.gz does not exist"):
        medical.main(["predict", "--run", str(tmp_path), "--inputs", str(tmp_path / "absent.nii.gz")])
