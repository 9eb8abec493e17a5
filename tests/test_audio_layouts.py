"""Sound `--data` layouts (issue #29): a folder per class and the Hugging Face audiofolder (metadata.csv) are read
into the same table as ESC-50, with folds from a `fold` column or a seeded stratified split, and train end to end."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tasks.audio.data import (
    ESC50_COLUMNS,
    NUM_FOLDS,
    read_esc50,
    read_run_data,
    read_sounds,
    stratified_folds,
)
from tasks.common import TaskError

SR = 8000
CLASSES = ["k2", "k10", "k11"]  # natural order (k2 < k10), which is also their ESC-50 target order here


def _write_esc50(root: Path, clips_per_class_per_fold: int = 1, seconds: float = 0.5) -> Path:
    """An ESC-50 folder: a tone per clip (pitch by class), `CLASSES[t]` with target t, every fold."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    t = np.arange(int(SR * seconds)) / SR
    rows = []
    for fold in range(1, NUM_FOLDS + 1):
        for target, name in enumerate(CLASSES):
            for take in range(clips_per_class_per_fold):
                filename = f"{fold}-{100 * fold + 10 * target + take}-A-{target}.wav"
                sf.write(root / "audio" / filename, 0.5 * np.sin(2 * np.pi * 300 * (target + 1) * t), SR)
                rows.append((filename, fold, target, name, "False", str(100 * fold + 10 * target + take), "A"))
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ESC50_COLUMNS)
        writer.writerows(rows)
    return root


def _as_class_folders(esc: Path, root: Path, split_folders: bool = False) -> Path:
    """The clips of `esc` copied to `root/<category>/<file>` (or `root/{train,test}/<category>/<file>`, fold 5 in
    test)."""
    for clip in read_esc50(esc).clips:
        split = ("test" if clip.fold == NUM_FOLDS else "train") if split_folders else ""
        folder = root / split / clip.category
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(esc / "audio" / clip.filename, folder / clip.filename)
    return root


def _as_audiofolder(esc: Path, root: Path, folds: bool, split_folders: bool) -> Path:
    """The clips of `esc` as a Hugging Face audiofolder: `root/metadata.csv` (files under `root/clips/`), or
    `root/{train,test}/metadata.csv` (fold 5 in test); with a fold column when `folds`."""
    tables: dict[Path, list[dict]] = {}
    for clip in read_esc50(esc).clips:
        folder = root / (("test" if clip.fold == NUM_FOLDS else "train") if split_folders else "")
        name = clip.filename if split_folders else f"clips/{clip.filename}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(esc / "audio" / clip.filename, folder / name)
        tables.setdefault(folder, []).append({"file_name": name, "label": clip.category, "fold": clip.fold})
    for folder, rows in tables.items():
        _write_metadata(folder / "metadata.csv", rows, ["file_name", "label"] + (["fold"] if folds else []))
    return root


def _write_metadata(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _table(index) -> dict[str, tuple[str, int, int]]:
    """{file base name: (class name, label, fold)} of a read table."""
    return {Path(c.filename).name: (c.category, int(label), int(fold))
            for c, label, fold in zip(index.clips, index.labels, index.folds)}


@pytest.fixture(scope="module")
def esc(tmp_path_factory) -> Path:
    return _write_esc50(tmp_path_factory.mktemp("esc") / "esc50", clips_per_class_per_fold=2)


@pytest.mark.parametrize("split_folders", [False, True])
def test_class_folders_read_as_the_esc50_table_with_a_stratified_split(esc: Path, tmp_path: Path,
                                                                       split_folders: bool) -> None:
    reference = read_esc50(esc)
    index = read_sounds(_as_class_folders(esc, tmp_path / "sounds", split_folders), seed=0)
    assert index.layout == "class-folders" and "stratified 5-fold" in index.split and "seed 0" in index.split
    assert index.class_names == reference.class_names == CLASSES
    ours, theirs = _table(index), _table(reference)
    assert {k: v[:2] for k, v in ours.items()} == {k: v[:2] for k, v in theirs.items()}, "same files and labels"
    assert all(index.path(c).is_file() for c in index.clips)
    # stratified: each class's 10 clips spread 2 per fold
    for label in range(len(CLASSES)):
        assert np.bincount(index.folds[index.labels == label], minlength=NUM_FOLDS + 1)[1:].tolist() == [2] * 5


def test_stratified_split_is_reproducible_for_a_seed_and_follows_it(esc: Path, tmp_path: Path) -> None:
    root = _as_class_folders(esc, tmp_path / "sounds")
    a, b, other = read_sounds(root, seed=7), read_sounds(root, seed=7), read_sounds(root, seed=8)
    assert _table(a) == _table(b)
    assert a.folds.tolist() != other.folds.tolist()
    # the verbs read the split of the run's config.yaml: its split_seed, else its seed (runs from before it)
    assert read_run_data(root, {"split_seed": 7, "seed": 1}).folds.tolist() == a.folds.tolist()
    assert read_run_data(root, {"seed": 8}).folds.tolist() == other.folds.tolist()
    labels = np.repeat(np.arange(4), [5, 6, 7, 13])
    folds = stratified_folds(labels, seed=3)
    assert sorted(set(folds.tolist())) == [1, 2, 3, 4, 5]
    for label in range(4):
        counts = np.bincount(folds[labels == label], minlength=6)[1:]
        assert counts.max() - counts.min() <= 1, "every class spread evenly over the folds"
    assert stratified_folds(labels, seed=3).tolist() == folds.tolist()


@pytest.mark.parametrize("split_folders", [False, True])
def test_audiofolder_with_a_fold_column_reads_as_the_esc50_table(esc: Path, tmp_path: Path,
                                                                 split_folders: bool) -> None:
    reference = read_esc50(esc)
    index = read_sounds(_as_audiofolder(esc, tmp_path / "hf", folds=True, split_folders=split_folders), seed=5)
    assert index.layout == "audiofolder" and "fold column" in index.split
    assert index.class_names == reference.class_names
    assert _table(index) == _table(reference), "same files, labels and folds"
    assert all(index.path(c).is_file() for c in index.clips)


def test_audiofolder_without_folds_is_split_stratified(esc: Path, tmp_path: Path) -> None:
    root = _as_audiofolder(esc, tmp_path / "hf", folds=False, split_folders=True)
    index = read_sounds(root, seed=0)
    assert "stratified" in index.split
    for label in range(len(CLASSES)):
        assert np.bincount(index.folds[index.labels == label], minlength=NUM_FOLDS + 1)[1:].tolist() == [2] * 5
    assert index.folds.tolist() == read_sounds(root, seed=0).folds.tolist()


def _only_noise(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("no sounds here")
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize("case, pattern", [
    ("no_layout", r"none of the accepted layouts: ESC-50 .*; a folder per class .*; Hugging Face audiofolder"),
    ("not_a_dir", r"is not a directory"),
    ("loose_file", r"1 audio file\(s\) outside the class folders: stray\.wav"),
    ("esc10", r"--esc10 keeps ESC-50's esc10 rows"),
    ("no_label_column", r"metadata\.csv: missing column\(s\) label"),
    ("missing_file", r"1 file\(s\) listed in metadata\.csv are missing .*: clips/gone\.wav"),
    ("unlisted_file", r"1 audio file\(s\) .* not listed in any metadata\.csv: clips/extra\.wav"),
    ("bad_fold", r"line 2 \(clips/a\.wav\): fold 6 is out of range"),
])
def test_bad_layouts_give_one_clear_error(tmp_path: Path, case: str, pattern: str) -> None:
    root = tmp_path / "data"
    tone = np.sin(np.arange(SR // 4) / 3.0).astype(np.float32)
    esc10 = False
    if case == "no_layout":
        _only_noise(root)
    elif case in ("loose_file", "esc10"):
        (root / "dog").mkdir(parents=True)
        sf.write(root / "dog" / "a.wav", tone, SR)
        if case == "loose_file":
            sf.write(root / "stray.wav", tone, SR)
        esc10 = case == "esc10"
    elif case != "not_a_dir":
        (root / "clips").mkdir(parents=True)
        sf.write(root / "clips" / "a.wav", tone, SR)
        rows = [{"file_name": "clips/a.wav", "label": "dog", "fold": 6 if case == "bad_fold" else 1}]
        if case == "missing_file":
            rows.append({"file_name": "clips/gone.wav", "label": "dog", "fold": 1})
        if case == "unlisted_file":
            sf.write(root / "clips" / "extra.wav", tone, SR)
        columns = ["file_name", "category"] if case == "no_label_column" else ["file_name", "label", "fold"]
        _write_metadata(root / "metadata.csv", [{**r, "category": r["label"]} for r in rows], columns)
    with pytest.raises(TaskError, match=pattern):
        read_sounds(root, esc10=esc10)


FAST = ["--preset", "esc50", "--model", "focalnet1d", "--epochs", "1", "--batch-size", "4", "--ensemble", "1",
        "--embed-dim", "8", "--depths", "1,1", "--clip-seconds", "0.5", "--sample-rate", str(SR), "--n-fft", "256",
        "--win-length", "200", "--hop-length", "80", "--n-mels", "16", "--explain", "0", "--no-progress",
        "--threads", "1", "--accelerator", "cpu", "--devices", "1"]


def test_a_folder_of_wavs_per_class_trains_and_validates(esc: Path, tmp_path: Path, capsys) -> None:
    """The issue's done-criterion: `python -m tasks.audio.esc50 --data DIR` on DIR/<class>/*.wav; the split is
    announced, recorded in config.yaml (split_seed) and metrics.json, and `validate` scores the same test fold."""
    from tasks.audio.__main__ import main as verbs
    from tasks.audio.esc50 import main

    data, out = _as_class_folders(esc, tmp_path / "sounds"), tmp_path / "run"
    metrics = main(["--data", str(data), "--out", str(out), "--folds", "1", "--seed", "3",
                    "--cache-dir", str(tmp_path / "cache"), *FAST])
    log = capsys.readouterr().out
    assert "a folder per class" in log and "stratified 5-fold split" in log and "seed 3" in log
    assert metrics["dataset"]["layout"] == "class-folders" and "seed 3" in metrics["dataset"]["split"]
    assert metrics["dataset"]["num_classes"] == 3 and set(metrics["fold_accuracy"]) == {"1"}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["split_seed"] == 3
    test_fold = read_sounds(data, seed=3)
    expected = sorted(Path(test_fold.clips[i].filename).as_posix() for i in np.flatnonzero(test_fold.folds == 1))
    with open(out / "fold1" / "predictions.csv", newline="") as fh:
        assert sorted(r["filename"] for r in csv.DictReader(fh)) == expected
    resumed = main(["--resume", str(out), "--seed", "9", "--threads", "1"])  # config.yaml's split_seed is kept
    assert "fold1: done already" in capsys.readouterr().out
    assert resumed["dataset"]["split"] == metrics["dataset"]["split"] and resumed["fold_accuracy"] == {
        "1": metrics["fold_accuracy"]["1"]}
    result = verbs(["validate", "--run", str(out), "--out", str(tmp_path / "val"), "--threads", "1",
                    "--no-progress", "--accelerator", "cpu", "--devices", "1"])
    assert result["clips"] == len(expected) == 6 and result["test_fold"] == 1
    assert result["trained_accuracy"] == pytest.approx(metrics["fold_accuracy"]["1"])
