"""The baselines every task reports beside its network: MFCC statistics + logistic regression (sound), logistic
regression on pixels, HOG or HOG + colour histograms chosen by cross-validation on the training images (image
folders), per-class intensity windows chosen on the training cases (scans), and
the summary sentence that says whether the network beats its baseline."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from tasks.common import Score
from tasks.common.baseline import compare_with_baseline, logistic_regression


def test_summary_sentence_says_plainly_whether_the_network_beats_its_baseline() -> None:
    base = Score("MFCC statistics + logistic regression", 0.975)
    assert "beats it by 0.0150" in compare_with_baseline(Score("mean_accuracy", 0.99), base)
    line = compare_with_baseline(Score("mean_accuracy", 0.70), base)
    assert "does NOT beat its baseline" in line and "0.7000 vs 0.9750" in line
    assert "does NOT beat" in compare_with_baseline(Score("top1", 0.5), Score("linear", 0.5)), "a tie is no win"
    assert compare_with_baseline(Score("AP50", 0.4), None, "no simple detector") == "no baseline: no simple detector"
    assert "could not be computed" in compare_with_baseline(Score("dice", None), Score("window", 0.3))


def test_logistic_regression_fits_separable_classes_and_a_single_class() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 2] > 0).astype(int)
    assert (logistic_regression(x[:40], y[:40], x[40:]) == y[40:]).mean() >= 0.9
    assert logistic_regression(x[:10], np.full(10, 3), x[10:]).tolist() == [3] * 50


def _esc50_tones(root: Path, labels_follow_sound: bool) -> Path:
    """5 folds x 2 classes x 4 clips of 0.5 s: a 400 Hz or a 3 kHz tone in noise; the label is the tone's class, or
    independent of the sound."""
    rng = np.random.default_rng(1)
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows, t = [], np.arange(8000) / 16000
    for fold in range(1, 6):
        for i in range(8):
            tone = i % 2
            target = tone if labels_follow_sound else int(rng.integers(0, 2))
            freq = (400.0 if tone == 0 else 3000.0) * rng.uniform(0.9, 1.1)
            wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.normal(size=t.shape)
            name = f"{fold}-{fold}{i:02d}-A-{target}.wav"
            sf.write(root / "audio" / name, wave.astype(np.float32), 16000)
            rows.append((name, fold, target, f"class{target}", "False", f"{fold}{i:02d}", "A"))
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("filename", "fold", "target", "category", "esc10", "src_file", "take"))
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("labels_follow_sound", [True, False])
def test_mfcc_baseline_hears_tones_and_not_random_labels(tmp_path: Path, labels_follow_sound: bool) -> None:
    from tasks.audio.baseline import MFCCStatistics, mfcc_baseline
    from tasks.audio.data import read_esc50
    from tasks.audio.features import FeatureConfig
    from tasks.audio.protocol import plan_splits

    index = read_esc50(_esc50_tones(tmp_path / "esc", labels_follow_sound))
    fcfg = FeatureConfig("logmel", 16000, 0.5, n_fft=512, win_length=400, hop_length=160, n_mels=64)
    assert MFCCStatistics(fcfg)(torch.zeros(8000)).shape == (160,)
    results = mfcc_baseline(index, fcfg, tmp_path / "cache", plan_splits("cv", [1, 2, 3, 4, 5]))
    accuracy = {k: a for k, (a, _) in results.items()}
    assert set(accuracy) == {f"fold{k}" for k in range(1, 6)}
    for _, choice in results.values():  # chosen by CV on the training folds among both classifiers
        assert set(choice.cross_validation) == {"MFCC statistics + logistic regression", "MFCC statistics + RBF SVM"}
        assert choice.cross_validation[choice.name] == max(choice.cross_validation.values())
    mean = np.mean(list(accuracy.values()))
    assert mean == 1.0 if labels_follow_sound else mean < 0.8
    assert list((tmp_path / "cache").rglob("*.npy")), "the statistics are cached like the network's features"


def test_image_baseline_reads_the_folder_and_caps_training_images_per_class(tmp_path: Path) -> None:
    from tasks.imagenet.baseline import image_baseline, pixel_features

    rng = np.random.default_rng(0)
    samples: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for split, n in (("train", 12), ("val", 6)):
        for label in range(3):
            for i in range(n):
                img = rng.integers(0, 60, (40, 30, 3), dtype=np.uint8)
                img[label * 12 : label * 12 + 12] = 255  # a bright band whose height is the class
                path = tmp_path / split / str(label) / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
                samples[split].append((str(path), label))
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((7, 9), 255, np.uint8)).save(gray)
    assert pixel_features([gray]).shape == (1, 768) and pixel_features([gray]).min() == 1.0  # RGB, whole image
    chosen = image_baseline(samples["train"], samples["val"])
    assert (chosen.accuracy, chosen.train_images) == (1.0, 36)
    scores = chosen.choice.cross_validation
    assert set(scores) == {f"{f} + logistic regression" for f in ("pixels", "HOG", "HOG + colour")}
    assert scores[chosen.name] == max(scores.values())
    capped = image_baseline(samples["train"], samples["val"], max_train=6)
    assert capped.train_images == 6 and 0.0 <= capped.accuracy <= 1.0


def test_the_baseline_features_are_chosen_on_the_training_split_only(tmp_path: Path) -> None:
    """Orientation decides the class: HOG sees it and raw pixels of randomly placed strokes do not, so cross-
    validation on the training images picks HOG; the validation images play no part in the choice."""
    from tasks.common.baseline import choose_baseline
    from tasks.imagenet.baseline import hog_features, image_baseline, pixel_features

    rng = np.random.default_rng(1)

    def stroke(vertical: bool, path: Path) -> str:
        img = np.zeros((32, 32), np.uint8)
        pos = rng.integers(4, 28)
        if vertical:
            img[:, pos - 1 : pos + 1] = 255
        else:
            img[pos - 1 : pos + 1, :] = 255
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        return str(path)

    train = [(stroke(k % 2 == 0, tmp_path / "t" / f"{k}.png"), k % 2) for k in range(24)]
    val = [(stroke(k % 2 == 0, tmp_path / "v" / f"{k}.png"), k % 2) for k in range(10)]
    paths, labels = [p for p, _ in train], np.array([y for _, y in train])
    choice = choose_baseline({"pixels": pixel_features(paths), "HOG": hog_features(paths)}, labels)
    scores = choice.cross_validation
    assert choice.features == "HOG" and scores["HOG + logistic regression"] > scores["pixels + logistic regression"]
    flipped = [(p, 1 - y) for p, y in val]  # the validation labels cannot change the choice
    assert image_baseline(train, val).name == image_baseline(train, flipped).name
    assert image_baseline(train, val).accuracy == 1.0 - image_baseline(train, flipped).accuracy


def test_intensity_windows_are_chosen_on_training_cases_and_scored_per_class() -> None:
    from tasks.medical.baseline import best_windows, window_dice

    rng = np.random.default_rng(0)

    def case(shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        label = rng.integers(0, 3, (16, 16, 16))
        return (label * 10.0 + shift + rng.normal(0, 1, label.shape)).astype(np.float32), label

    train, val = [case() for _ in range(3)], [case() for _ in range(2)]
    (lo1, hi1, d1), (lo2, hi2, d2) = best_windows([i for i, _ in train], [lbl for _, lbl in train], 2)
    assert 0 < lo1 < 10 < hi1 < 20 and 10 < lo2 < 20 and hi2 == np.inf and min(d1, d2) > 0.98
    mean, per_class = window_dice(train, val, 2)
    assert min(per_class) > 0.98 and mean == pytest.approx(np.mean(per_class))
    _, shifted = window_dice(train, [case(shift=30.0)], 2)  # the windows do not follow the validation intensities
    assert shifted[0] < 0.05 and shifted[1] < 0.6
    noise = [(rng.normal(size=(16, 16, 16)).astype(np.float32), lbl) for _, lbl in train]
    assert max(window_dice(noise[:2], noise[2:], 2)[1]) < 0.6, "intensity unrelated to the label: near chance"
    absent = [(i, np.where(lbl == 2, 0, lbl)) for i, lbl in val]
    assert np.isnan(window_dice(train, absent, 2)[1][1]), "a class no validation case holds has no Dice"


def test_the_voxel_classifier_uses_context_and_position_where_one_intensity_window_cannot() -> None:
    """Two classes of the same intensity, told apart by where they are (left / right half) and by the texture around
    them: the best window can only take both or neither, the voxel classifier separates them."""
    from tasks.medical.baseline import BASELINE_NAME, scan_baseline, voxel_features

    rng = np.random.default_rng(0)

    def case() -> tuple[np.ndarray, np.ndarray]:
        label = np.zeros((12, 16, 16), np.int64)
        label[3:9, 4:12, 2:7] = 1
        label[3:9, 4:12, 9:14] = 2
        image = np.where(label > 0, 10.0, 0.0) + rng.normal(0, 1, label.shape)
        return image.astype(np.float32), label

    train, val = [case() for _ in range(3)], [case() for _ in range(2)]
    assert voxel_features(train[0][0]).shape == (12 * 16 * 16, 1 + 3 + 3)
    base = scan_baseline(train, val, 2)
    assert min(base.voxel[1]) > 0.9 and base.voxel[0] == pytest.approx(np.mean(base.voxel[1]))
    assert max(base.window[1]) < 0.75, "one window takes both same-intensity classes: at most 2/3 Dice"
    # chosen by 2-fold CV over the training cases: the classifier, which is better there too
    assert base.name == BASELINE_NAME and base.dice == base.voxel[0] and base.per_class == base.voxel[1]
    assert base.cross_validation["best intensity window"] < base.cross_validation[BASELINE_NAME]
