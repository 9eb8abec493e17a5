"""tasks.medical.sampling: `--crop-sampler balanced` draws every label value equally often across volumes, even a
value that lives in one volume of four; the flag's errors."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("monai")
nib = pytest.importorskip("nibabel")
torch = pytest.importorskip("torch")

from tasks.common.cli import TaskError  # noqa: E402
from tasks.medical import train  # noqa: E402
from tasks.medical.data import DataConfig  # noqa: E402
from tasks.medical.sampling import balanced_pairs, label_presence, training_loader  # noqa: E402


def test_balanced_pairs_give_every_value_the_same_share():
    present = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]], bool)  # value 2 in volume 3 only
    pairs, weights = balanced_pairs(present)
    assert len(pairs) == present.sum() and weights.sum() == pytest.approx(1.0)
    share = Counter()
    for (volume, value), w in zip(pairs, weights):
        assert present[volume, value]
        share[value] += w
    assert [share[v] for v in range(3)] == pytest.approx([1 / 3] * 3)
    assert dict(zip(pairs, weights))[(3, 2)] == pytest.approx(1 / 3)  # the one holder gets the whole share
    assert dict(zip(pairs, weights))[(0, 1)] == pytest.approx(1 / 12)  # value 1: split among its 4 volumes
    # A value held by no volume is left out instead of drawn.
    pairs, weights = balanced_pairs(np.array([[1, 0, 1], [1, 0, 0]], bool))
    assert {c for _, c in pairs} == {0, 2} and weights.sum() == pytest.approx(1.0)


def test_label_presence_reads_the_values_of_each_volume():
    labels = [np.array([[0, 1], [1, 0]]), torch.tensor([[0, 0], [0, 3]])]
    np.testing.assert_array_equal(label_presence(labels, 4), [[1, 1, 0, 0], [1, 0, 0, 1]])


def _four_volumes(root: Path) -> list[dict[str, str]]:
    """Four 12^3 volumes: value 1 fills half of each, value 2 is a 2^3 block in the last one only."""
    root.mkdir()
    cases = []
    for i in range(4):
        label = np.zeros((12, 12, 12), np.uint8)
        label[:6] = 1
        if i == 3:
            label[8:10, 8:10, 8:10] = 2
        image = (label.astype(np.float32) + 1.0) * 100.0  # positive everywhere: every voxel may be a centre
        case = {"image": str(root / f"img{i}.nii.gz"), "label": str(root / f"lbl{i}.nii.gz")}
        nib.save(nib.Nifti1Image(image, np.eye(4)), case["image"])
        nib.save(nib.Nifti1Image(label, np.eye(4)), case["label"])
        cases.append(case)
    return cases


def _centre_values(cases: list[dict], sampler: str, epochs: int) -> tuple[np.ndarray, str]:
    """Label values at the centres of the training crops (1^3 crops: the crop is its centre voxel)."""
    cfg = DataConfig(spatial_dims=3, roi_size=(1, 1, 1), intensity="range", a_min=0.0, a_max=400.0,
                     crop_foreground=False, crop_sampler=sampler, num_classes=3, num_samples=2, flip_prob=0.0,
                     rot90_prob=0.0, shift_intensity_prob=0.0)
    torch.manual_seed(0)
    loader, line = training_loader(cases, cfg, batch_size=2, cache_rate=1.0, num_workers=0,
                                   class_names=["background", "big", "small"])
    values = [batch["label"].flatten() for _ in range(epochs) for batch in loader]
    return torch.cat(values).numpy().astype(int), line


def test_balanced_sampler_centres_a_one_volume_value_as_often_as_the_others(tmp_path: Path):
    cases = _four_volumes(tmp_path / "data")
    values, line = _centre_values(cases, "balanced", epochs=50)  # 50 x 4 draws x 2 crops
    share = np.bincount(values, minlength=3) / len(values)
    assert share == pytest.approx([1 / 3] * 3, abs=0.08)
    assert "each of 3 label values on 1/3 of the crops" in line and "small in 1 of them" in line
    # The per-volume sampler balances within a volume only: value 2 gets a third of one volume's crops.
    values, line = _centre_values(cases, "classes", epochs=50)
    assert np.mean(values == 2) == pytest.approx(1 / 12, abs=0.04)
    assert "within each volume" in line


def test_crop_sampler_errors(tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--crop-sampler", "uniform", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.replace("'", "")  # argparse quotes the choices in some Python versions
    assert "argument --crop-sampler: invalid choice: uniform (choose from posneg, classes, balanced)" in err
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"crop_sampler": "uniform"}))
    with pytest.raises(TaskError, match=r"^--crop-sampler must be one of posneg, classes, balanced, got 'uniform'$"):
        train.main(["--config", str(config), "--out", str(tmp_path / "run2")])
