"""tasks.medical: synthetic Decathlon round trip, bad-input errors naming the file, a tiny end-to-end CLI run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monai")
nib = pytest.importorskip("nibabel")

from tasks.common.cli import TaskError  # noqa: E402
from tasks.medical import __main__ as medical  # noqa: E402
from tasks.medical import train  # noqa: E402
from tasks.medical.baseline import BASELINE_NAME  # noqa: E402
from tasks.medical.data import DataConfig, build_transforms, check_case, read_decathlon  # noqa: E402
from tasks.medical.synthetic import intensity_threshold_dice, write_synthetic_decathlon  # noqa: E402


@pytest.fixture()
def synth3d(tmp_path: Path) -> Path:
    return write_synthetic_decathlon(tmp_path / "data", spatial_dims=3, size=24, num_train=3, num_test=1)


def _rewrite(path: str, data: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, affine), path)


def test_synthetic_round_trip_through_loader(synth3d: Path):
    ds = read_decathlon(synth3d)
    assert ds.num_classes == 3 and ds.modalities == ["synthetic"] and len(ds.training) == 3 and len(ds.test) == 1
    case = ds.training[0]
    check_case(case, ds.labels, spatial_dims=3, num_modalities=1)
    image_file, label_file = nib.load(case["image"]), nib.load(case["label"])
    assert image_file.shape == label_file.shape == (24, 24, 24)
    np.testing.assert_allclose(np.diag(image_file.affine)[:3], (-1.5, -1.5, 2.0))
    cfg = DataConfig(spatial_dims=3, roi_size=(16, 16, 16), pixdim=(1.5, 1.5, 2.0), a_min=-0.5, a_max=1.5)
    val = build_transforms(cfg, train=False)(case)
    # Orientationd to RAS flips the first two axes of this LPS-like file; the labels must follow exactly.
    raw_label = np.asarray(label_file.dataobj)
    np.testing.assert_array_equal(val["label"][0].numpy(), raw_label[::-1, ::-1, :])
    assert float(val["image"].min()) >= 0.0 and float(val["image"].max()) <= 1.0
    crops = build_transforms(cfg, train=True)(case)
    assert len(crops) == cfg.num_samples
    assert all(c["image"].shape == (1, 16, 16, 16) and set(np.unique(c["label"].numpy())) <= {0, 1, 2} for c in crops)


def _small_class_case(tmp_path: Path) -> dict[str, str]:
    """One 3D case: class 1 fills half the volume, class 2 is one 2^3 block in a corner."""
    label = np.zeros((32, 32, 32), np.uint8)
    label[:16] = 1
    label[28:30, 28:30, 28:30] = 2
    image = (label.astype(np.float32) + 1.0) * 100.0
    case = {"image": str(tmp_path / "img.nii.gz"), "label": str(tmp_path / "lbl.nii.gz")}
    _rewrite(case["image"], image, np.eye(4))
    _rewrite(case["label"], label, np.eye(4))
    return case


@pytest.mark.parametrize("sampler, low, high", [("classes", 0.2, 0.5), ("posneg", 0.0, 0.05)])
def test_crop_sampler_classes_draws_every_label_value_equally(tmp_path: Path, sampler, low, high):
    case = _small_class_case(tmp_path)
    cfg = DataConfig(spatial_dims=3, roi_size=(4, 4, 4), intensity="zscore", crop_foreground=False,
                     crop_sampler=sampler, num_classes=3, num_samples=120, flip_prob=0.0, rot90_prob=0.0)
    transforms = build_transforms(cfg, train=True)
    transforms.set_random_state(0)
    crops = transforms(case)
    with_small = np.mean([bool((c["label"] == 2).any()) for c in crops])
    assert low <= with_small < high  # equal ratios: a third of the centres on class 2; pos/neg: 8 of 16k fg voxels


def test_flip_axes_limits_the_mirrored_axes(tmp_path: Path):
    case = _small_class_case(tmp_path)
    cfg = DataConfig(spatial_dims=3, roi_size=(32, 32, 32), intensity="zscore", crop_foreground=False,
                     num_classes=3, num_samples=1, flip_prob=1.0, flip_axes=(2,), rot90_prob=0.0,
                     shift_intensity_prob=0.0)
    crop = build_transforms(cfg, train=True)(case)[0]
    raw = np.asarray(nib.load(case["label"]).dataobj)
    np.testing.assert_array_equal(crop["label"][0].numpy(), raw[:, :, ::-1])


def test_synthetic_is_not_separable_by_intensity(tmp_path: Path):
    root = write_synthetic_decathlon(tmp_path / "d", spatial_dims=2, size=64, num_train=4, num_test=0)
    cases = read_decathlon(root).training
    images = [np.asarray(nib.load(c["image"]).dataobj) for c in cases]
    labels = [np.asarray(nib.load(c["label"]).dataobj) for c in cases]
    assert intensity_threshold_dice(labels, labels, 2) > 0.99  # the measure itself: labels as intensity
    assert intensity_threshold_dice(images, labels, 2) < 0.75


def test_label_shape_mismatch_names_the_file(synth3d: Path):
    ds = read_decathlon(synth3d)
    case = ds.training[1]
    _rewrite(case["label"], np.zeros((24, 24, 20), np.uint8), nib.load(case["image"]).affine)
    with pytest.raises(TaskError, match=rf"{Path(case['label']).name}: label shape \(24, 24, 20\) differs"):
        check_case(case, ds.labels, 3, 1)


def test_label_affine_mismatch_names_the_file(synth3d: Path):
    ds = read_decathlon(synth3d)
    case = ds.training[0]
    label = nib.load(case["label"])
    _rewrite(case["label"], np.asarray(label.dataobj), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(TaskError, match=rf"{Path(case['label']).name}: affine differs from its image"):
        check_case(case, ds.labels, 3, 1)


def test_unknown_label_value_names_the_file(synth3d: Path):
    ds = read_decathlon(synth3d)
    case = ds.training[2]
    label = nib.load(case["label"])
    data = np.asarray(label.dataobj).copy()
    data[0, 0, 0] = 7
    _rewrite(case["label"], data, label.affine)
    with pytest.raises(TaskError, match=rf"{Path(case['label']).name}: label values \[7\] are not in dataset.json"):
        check_case(case, ds.labels, 3, 1)


def test_wrong_spatial_dims_names_the_file(synth3d: Path):
    ds = read_decathlon(synth3d)
    with pytest.raises(TaskError, match=r"synth_000.nii.gz: shape \(24, 24, 24\), expected 2 spatial axes"):
        check_case(ds.training[0], ds.labels, 2, 1)


def test_missing_listed_file_and_missing_dataset_json(synth3d: Path, tmp_path: Path):
    Path(read_decathlon(synth3d).training[1]["image"]).unlink()
    with pytest.raises(TaskError, match=r"training\[1\].image lists ./imagesTr/synth_001.nii.gz, which does not"):
        read_decathlon(synth3d)
    with pytest.raises(TaskError, match="no dataset.json"):
        read_decathlon(tmp_path)
    with pytest.raises(TaskError, match="is not a directory"):
        read_decathlon(tmp_path / "absent")


def test_corrupt_dataset_json(tmp_path: Path):
    (tmp_path / "dataset.json").write_text('{"labels": {"0": "background", "1": "x"}, "training": [')
    with pytest.raises(TaskError, match="dataset.json is not valid JSON"):
        read_decathlon(tmp_path)
    (tmp_path / "dataset.json").write_text('{"labels": {"0": "background", "2": "x"}, "training": []}')
    with pytest.raises(TaskError, match=r"label values must be 0..K-1"):
        read_decathlon(tmp_path)


@pytest.mark.parametrize("model, roi, divisor", [("focal_unet", 48, 32), ("unet", 24, 16), ("swin_unetr", 48, 32)])
def test_roi_the_network_cannot_take(model, roi, divisor):
    args = train.resolve_args(train.build_parser().parse_args(["--model", model, "--roi-size", str(roi)]))
    with pytest.raises(TaskError, match=rf"--roi-size \[{roi}, {roi}, {roi}\]: {model} needs every side divisible by "
                                        rf"{divisor}"):
        train.build_module(args, in_channels=1, num_classes=3)


def test_bad_flags(tmp_path: Path):
    with pytest.raises(TaskError, match=r"--roi-size needs 1 or 2"):
        train.main(["--spatial-dims", "2", "--roi-size", "32", "32", "32", "--out", str(tmp_path)])
    with pytest.raises(TaskError, match=r"--intensity range needs --a-min < --a-max"):
        train.main(["--data", str(tmp_path), "--intensity", "range", "--out", str(tmp_path)])
    with pytest.raises(TaskError, match="no dataset.json"):
        train.main(["--data", str(tmp_path), "--out", str(tmp_path / "run")])
    with pytest.raises(TaskError, match=r"--flip-axes needs spatial axes in 0..2 for --spatial-dims 3, got \[3\]"):
        train.main(["--flip-axes", "3", "--out", str(tmp_path / "run3")])
    with pytest.raises(TaskError, match="--model focal_unet: depths"):
        train.main(["--depths", "0", "--out", str(tmp_path / "run2"), "--synthetic-cases", "2",
                    "--synthetic-size", "24"])


TINY_2D = ["--spatial-dims", "2", "--synthetic-cases", "4", "--synthetic-size", "32", "--roi-size", "32",
           "--feature-size", "8", "--depths", "1", "1", "--num-samples", "1", "--sw-batch-size", "2",
           "--print-every", "0", "--no-progress"]


def test_end_to_end_2d(tmp_path: Path):
    run = tmp_path / "run"
    metrics = train.main([*TINY_2D, "--max-steps", "2", "--out", str(run)])
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["model"] == "focal_unet" and saved["steps"] == 2 == metrics["steps"]
    assert 0.0 <= saved["dice"] <= 1.0 and set(saved["dice_per_class"]) == {"class1", "class2"}
    assert "hd95" in saved and saved["params"] > 0 and saved["step_time_s"] > 0
    both = saved["baselines"]  # the voxel classifier and the intensity window; the better in CV on training cases
    assert set(both) == {BASELINE_NAME, "best intensity window"} and set(saved["baseline_dice_per_class"]) == {
        "class1", "class2"} and saved["baseline"]["value"] == both[saved["baseline"]["name"]]["dice"]
    assert 0 < both["best intensity window"]["dice"] < 0.9  # noisy synthetic: no window separates
    chosen = max(both, key=lambda n: both[n]["cross_validation"])
    assert saved["baseline"]["name"] == chosen
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    # The prediction sits in the input's grid: same shape and affine as the validation image it came from.
    [pred_path] = saved["predictions"]
    val_image = run / "data" / "imagesTr" / Path(pred_path).name.replace("_seg", "")
    pred, image = nib.load(pred_path), nib.load(val_image)
    assert pred.shape == image.shape
    np.testing.assert_allclose(pred.affine, image.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    assert saved["dice_original_space"] == pytest.approx(saved["dice"], abs=0.02)
    # The predict verb on the dataset's test list, from the run directory alone.
    medical.main(["predict", "--run", str(run), "--out", str(tmp_path / "predict"), "--threads", "1"])
    written = sorted((tmp_path / "predict" / "predictions").glob("*_seg.nii.gz"))
    assert [p.name for p in written] == ["synth_004_seg.nii.gz", "synth_005_seg.nii.gz"]
    test_image = nib.load(run / "data" / "imagesTs" / "synth_004.nii.gz")
    assert nib.load(written[0]).shape == test_image.shape
    np.testing.assert_allclose(nib.load(written[0]).affine, test_image.affine)


@pytest.mark.slow
def test_resume_continues_the_run(tmp_path: Path):
    run = tmp_path / "run"
    train.main([*TINY_2D, "--max-steps", "2", "--out", str(run), "--no-predict"])
    metrics = train.main(["--resume", str(run), "--max-steps", "4"])
    assert metrics["steps"] == 4
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_compare_writes_the_results_table(tmp_path: Path):
    rows = train.main([*TINY_2D, "--max-steps", "1", "--compare", "--out", str(tmp_path / "cmp"), "--no-predict",
                       "--timing-repeats", "1"])
    assert [r["model"] for r in rows] == ["focal_unet", "unet", "swin_unetr"]
    assert all("dice" in r and r["params_M"] > 0 and r["peak_memory_MiB"] > 0 for r in rows)
    assert all(r["step_time_interleaved_s"] > 0 for r in rows)
    table = (tmp_path / "cmp" / "results.md").read_text()
    assert "| focal_unet |" in table and "swin_unetr" in table and "peak RSS" in table
    assert (tmp_path / "cmp" / "results.csv").read_text().startswith("model,dice,")


def test_resume_from_the_shell_honours_flags_given_with_it(tmp_path: Path, monkeypatch):
    """`python -m tasks.medical.train --resume RUN --max-steps 4` with argv read from sys.argv, as a shell starts
    it; the synthetic set's intensity-window Dice is the baseline beside the network's Dice."""
    import sys

    run = tmp_path / "run"
    train.main([*TINY_2D, "--max-steps", "2", "--out", str(run), "--no-predict"])
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", str(run), "--max-steps", "4"])
    metrics = train.main()
    assert metrics["steps"] == 4 and metrics["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert metrics["metric"] == {"name": "dice", "value": metrics["dice"]}
    assert metrics["baseline"]["name"] in {BASELINE_NAME, "best intensity window"}
    assert 0 < metrics["baseline"]["value"] <= 1
