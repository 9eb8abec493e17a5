"""Image `--data` layouts (issue #29): the Hugging Face imagefolder metadata.csv variant (`train/metadata.csv`,
`val/` or `validation/metadata.csv`, columns file_name and label) reads into the same timm samples as the
ImageFolder layout (class indices in natural-sort order) and trains end to end."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.common import TaskError
from tasks.imagenet.data import FolderData, MetadataReader, checked_dataset
from tasks.imagenet.sizing import count_images

CLASSES = ("c2", "c10", "c1")  # natural order c1, c2, c10 (plain sorting would put c10 before c2)
FAST = ["--model", "focalnet_digits", "--input-size", "16", "--crop-pct", "1.0", "--batch-size", "4",
        "--epochs", "1", "--aa", "none", "--reprob", "0", "--mixup", "0", "--cutmix", "0", "--warmup-epochs", "0",
        "--no-progress", "--num-workers", "0", "--devices", "1", "--accelerator", "cpu", "--threads", "1"]


def _image(c: int, rng: np.random.Generator, size: int = 16) -> Image.Image:
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    img[c * 4: c * 4 + 6, c * 4: c * 4 + 6] = 255  # each class a bright square at its own place: learnable
    return Image.fromarray(img)


def _write(root: Path, layout: str, val_name: str = "val", n: int = 4) -> Path:
    """`root/{train,<val_name>}`: "folders" = `<class>/<i>.png`; "metadata-tree" = the same tree plus a
    metadata.csv listing it; "metadata-flat" = `images/<class>_<i>.png` and a metadata.csv (no class folders)."""
    rng = np.random.default_rng(0)
    for split in ("train", val_name):
        rows = []
        for c, name in enumerate(CLASSES):
            for i in range(n):
                rel = f"images/{name}_{i}.png" if layout == "metadata-flat" else f"{name}/{i}.png"
                (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
                _image(c, rng).save(root / split / rel)
                rows.append({"file_name": rel, "label": name})
        if layout != "folders":
            _write_metadata(root / split / "metadata.csv", rows)
    return root


def _write_metadata(path: Path, rows: list[dict], columns=("file_name", "label")) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _relative(dataset, split_dir: Path) -> list[tuple[str, int]]:
    return [(os.path.relpath(p, split_dir), label) for p, label in dataset.reader.samples]


def test_metadata_reads_as_the_image_folder_samples(tmp_path: Path) -> None:
    folders, metadata = _write(tmp_path / "folders", "folders"), _write(tmp_path / "meta", "metadata-tree")
    for split in ("train", "val"):
        expected = checked_dataset(folders / split, "--data", None)
        got = checked_dataset(metadata / split, "--data", None)
        assert isinstance(got.reader, MetadataReader) and not isinstance(expected.reader, MetadataReader)
        assert got.reader.class_to_idx == expected.reader.class_to_idx == {"c1": 0, "c2": 1, "c10": 2}
        assert _relative(got, metadata / split) == _relative(expected, folders / split), "same files, labels, order"
        image, label = got[0]
        assert image.size == (16, 16) and label == expected[0][1]
    data = FolderData.from_root(metadata)
    assert data.layout == "metadata" and data.classes == FolderData.from_root(folders).classes
    assert count_images(metadata / "train") == count_images(folders / "train") == 12


def test_metadata_without_class_folders_and_a_validation_split(tmp_path: Path) -> None:
    root = _write(tmp_path / "flat", "metadata-flat", val_name="validation")
    data = FolderData.from_root(root)
    assert (data.train_dir, data.val_dir) == (root / "train", root / "validation")
    dataset = checked_dataset(data.val_dir, "--data (val)", None)
    names = {os.path.basename(p): label for p, label in dataset.reader.samples}
    assert names["c1_0.png"] == 0 and names["c2_3.png"] == 1 and names["c10_1.png"] == 2 and len(names) == 12


@pytest.mark.parametrize("case, pattern", [
    ("no_label_column", r"train/metadata\.csv: missing column\(s\) label; expected file_name .* and label"),
    ("missing_file", r"1 file\(s\) listed in .*train/metadata\.csv are missing: images/gone\.png"),
    ("no_val", r"train/metadata\.csv found but no .*/val/metadata\.csv or .*/validation/metadata\.csv"),
    ("other_classes", r"differ between train and val \(only in .*train/metadata\.csv: c1; only in .*val/metadata\.csv: "
                      r"c99\)"),
    ("empty_label", r"train/metadata\.csv line 3: empty label"),
])
def test_bad_metadata_gives_one_clear_error(tmp_path: Path, case: str, pattern: str) -> None:
    root = _write(tmp_path / "d", "metadata-flat", n=1)
    train_rows = [{"file_name": f"images/{c}_0.png", "label": c} for c in CLASSES]
    if case == "no_label_column":
        _write_metadata(root / "train" / "metadata.csv", train_rows, columns=("file_name",))
    if case == "missing_file":
        _write_metadata(root / "train" / "metadata.csv", [*train_rows, {"file_name": "images/gone.png", "label": "c1"}])
    if case == "no_val":
        (root / "val" / "metadata.csv").unlink()
    if case == "other_classes":
        _write_metadata(root / "val" / "metadata.csv", [*train_rows[:2], {**train_rows[2], "label": "c99"}])
    if case == "empty_label":
        _write_metadata(root / "train" / "metadata.csv", [train_rows[0], {**train_rows[1], "label": ""}])
    with pytest.raises(TaskError, match=pattern):
        FolderData.from_root(root)


def test_metadata_layout_trains_and_validates(tmp_path: Path) -> None:
    from tasks.imagenet import __main__ as imagenet
    from tasks.imagenet import train as imagenet_train

    data, run = _write(tmp_path / "hf", "metadata-flat", val_name="validation"), tmp_path / "run"
    metrics = imagenet_train.main(["--data", str(data), "--out", str(run), *FAST])
    assert metrics["num_classes"] == 3 and metrics["train_images"] == 12 and metrics["val_images"] == 12
    assert metrics["baseline"]["value"] == 1.0, "the pixel baseline sees the labels the metadata gave"
    out = imagenet.main(["validate", "--run", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                         "--out", str(tmp_path / "eval"), "--threads", "1", "--no-progress", "--accelerator", "cpu",
                         "--devices", "1"])
    assert out["top1"] == pytest.approx(metrics["top1"]) and out["images"] == 12
