"""tasks.ade20k: the ADE20K layout reader and its errors, mmseg's pipeline / schedule / metrics (checked against
scikit-learn and the mmcv formulas), inference modes, palette PNGs, and the train / eval CLIs end to end."""
from __future__ import annotations

import argparse
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tasks.ade20k.data import IGNORE_INDEX, load_label, read_class_names, read_split
from tasks.ade20k.inference import InferenceConfig, predict_probs, slide_logits
from tasks.ade20k.metrics import confusion_matrix_metric, segmentation_scores
from tasks.ade20k.module import param_groups, poly_with_warmup
from tasks.ade20k.palette import save_palette_png, voc_colormap
from tasks.ade20k.synthetic import CLASSES, make_scenes_dataset
from tasks.ade20k.transforms import TrainTransform, rescale_size
from tasks.common import TaskError


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return make_scenes_dataset(tmp_path_factory.mktemp("ade") / "ADEChallengeData2016", num_train=12, num_val=4)


@pytest.fixture
def broken(scenes, tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    shutil.copytree(scenes, root)
    return root


# ------------------------------------------------------------------------------------------------- layout
def test_reads_the_layout_and_class_file(scenes):
    names = read_class_names(scenes)
    assert names == list(CLASSES)
    train, val = read_split(scenes, "training", len(names)), read_split(scenes, "validation", len(names))
    assert len(train) == 12 and len(val) == 4
    assert train[0].image.name == "ADE_train_00000001.jpg" and train[0].label.name == "ADE_train_00000001.png"


def test_class_file_in_the_release_format(tmp_path):
    """Rows as in ADEChallengeData2016/objectInfo150.txt (tabs, synonyms, stray spaces after some indices)."""
    (tmp_path / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n2 \t0.1072\t6046\t612\tbuilding, edifice\n"
        "3\t0.0198\t4688\t460\twindowpane, window \n")
    assert read_class_names(tmp_path) == ["wall", "building", "windowpane"]
    assert len(read_class_names(tmp_path / "absent")) == 150
    with pytest.raises(TaskError, match="disagrees with the 3 classes"):
        read_class_names(tmp_path, num_classes=150)


def test_reduce_zero_label(tmp_path):
    Image.fromarray(np.array([[0, 1, 7]], dtype=np.uint8), mode="L").save(tmp_path / "a.png")
    assert load_label(tmp_path / "a.png").tolist() == [[IGNORE_INDEX, 0, 6]]


def _error(root, split="training") -> str:
    with pytest.raises(TaskError) as info:
        read_split(root, split, len(CLASSES))
    return str(info.value)


def test_missing_annotation_names_the_image(broken):
    (broken / "annotations" / "training" / "ADE_train_00000003.png").unlink()
    message = _error(broken)
    assert "ADE_train_00000003.jpg" in message and "no annotation" in message


def test_label_value_above_class_count_names_the_file(broken):
    path = broken / "annotations" / "validation" / "ADE_val_00000002.png"
    label = np.array(Image.open(path))
    label[5, 5] = 9
    Image.fromarray(label, mode="L").save(path)
    message = _error(broken, "validation")
    assert str(path) in message and "label value 9 is above the class count 7" in message


def test_size_mismatch_names_the_label(broken):
    path = broken / "annotations" / "training" / "ADE_train_00000002.png"
    Image.fromarray(np.ones((50, 60), dtype=np.uint8), mode="L").save(path)
    message = _error(broken)
    assert str(path) in message and "60x50 differs from its image" in message


@pytest.mark.parametrize("name, content", [("notes.txt", b"not an image"), ("ADE_train_00000099.jpg", b"garbage")])
def test_non_image_file_names_the_file(broken, name, content):
    (broken / "images" / "training" / name).write_bytes(content)
    (broken / "annotations" / "training" / f"{name.rsplit('.', 1)[0]}.png").write_bytes(
        (broken / "annotations" / "training" / "ADE_train_00000001.png").read_bytes())
    message = _error(broken)
    assert name in message and ("not an image file" in message or "not a readable image" in message)


def test_rgb_label_map_is_rejected(broken):
    path = broken / "annotations" / "training" / "ADE_train_00000004.png"
    Image.open(path).convert("RGB").save(path)
    assert "(mode L or P), got mode RGB" in _error(broken)


def test_missing_split_folder(tmp_path):
    (tmp_path / "images" / "training").mkdir(parents=True)
    assert "annotations/training" in _error(tmp_path)


# ------------------------------------------------------------------------------------------ pipeline
def test_rescale_size_is_mmcv_imrescale():
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert rescale_size(400, 1000, (2048, 512)) == (512, 1280)  # short edge binds
    assert rescale_size(300, 1500, (2048, 512)) == (410, 2048)  # long edge binds: 300 * 2048 / 1500 = 409.6


def test_train_transform_crops_pads_and_keeps_labels():
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    label = np.zeros((96, 128), dtype=np.uint8)
    label[:, 64:] = 3
    tf = TrainTransform(img_scale=(512, 96), ratio_range=(0.5, 0.5), crop_size=96)  # 48x64: smaller than the crop
    x, y = tf(image, label)
    assert x.shape == (3, 96, 96) and y.shape == (96, 96) and y.dtype == torch.int64
    assert (y[48:] == IGNORE_INDEX).all() and (x[:, 48:] == 0).all()  # padded bottom: label 255, image 0
    assert set(y[:48, :64].unique().tolist()) == {0, 3}
    tf_big = TrainTransform(img_scale=(512, 96), ratio_range=(2.0, 2.0), crop_size=96)
    x, y = tf_big(image, label)
    assert x.shape == (3, 96, 96) and IGNORE_INDEX not in y.unique().tolist()


def test_cat_max_ratio_prefers_crops_with_two_classes():
    label = np.zeros((96, 400), dtype=np.uint8)
    label[:, 340:] = 1  # a crop is "mixed enough" (largest class < 75 %) only if it starts right of x = 268
    image = np.zeros((96, 400, 3), dtype=np.uint8)

    def mixed_crops(cat_max_ratio: float) -> int:
        tf = TrainTransform(img_scale=(400, 96), ratio_range=(1.0, 1.0), crop_size=96, cat_max_ratio=cat_max_ratio,
                            flip_prob=0.0, photometric=False)
        count = 0
        for seed in range(30):
            torch.manual_seed(seed)
            y = tf(image, label)[1]
            count += int((y == 1).float().mean() > 0.25)
        return count

    # one window qualifies with p = 36/305 ~ 12 %; up to ten tries (mmseg) raise that to ~ 72 %
    assert mixed_crops(0.75) >= 15 > 8 >= mixed_crops(1.0)


# --------------------------------------------------------------------------------------- schedule, groups
def test_poly_schedule_with_linear_warmup_is_mmcv():
    f = poly_with_warmup(160_000, 1500, 1e-6, 1.0)
    assert f(0) == pytest.approx(1e-6)
    t = 750  # mmcv: regular * (1 - (1 - t / warmup) * (1 - ratio))
    assert f(t) == pytest.approx((1 - t / 160_000) * (1 - 0.5 * (1 - 1e-6)))
    assert f(1500) == pytest.approx(1 - 1500 / 160_000)
    assert f(80_000) == pytest.approx(0.5) and f(160_000) == 0.0


def test_official_recipe_preset():
    """The ade20k preset is the official FocalNet UPerNet config (reference segmentation_interpretability.md Sec. 1),
    and the one the train CLI resolves for --data."""
    from tasks.ade20k.train import TASK
    from tasks.common.lifecycle import resolve_options
    from tasks.common.presets import Presets

    r = argparse.Namespace(**Presets.load(TASK.presets).resolve("ade20k", {}))
    assert (r.model, r.model_arg, r.lr, r.weight_decay, r.warmup_iters, r.max_iters, r.batch_size) == (
        "upernet_focalnet_tiny_srf", {}, 6e-5, 0.01, 1500, 160_000, 16)
    assert (r.crop_size, tuple(r.img_scale), tuple(r.ratio_range), r.cat_max_ratio, r.photometric, r.test_mode) == (
        512, (2048, 512), (0.5, 2.0), 0.75, True, "whole")
    args = resolve_options(TASK, ["--data", "ADEChallengeData2016"])[0]
    assert args.preset == "ade20k" and args.lr == 6e-5 and args.max_iters == 160_000 and args.batch_size == 16
    assert resolve_options(TASK, [])[0].preset == "synthetic"


def test_no_weight_decay_for_norms_only():
    import focalmod

    model = focalmod.create_model("upernet_focalnet_tiny_srf", embed_dim=16, depths=(1, 1, 2, 1), channels=16,
                                  aux_channels=8, num_classes=3)
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("norm" in names[id(p)] for p in no_decay["params"])
    decayed = {names[id(p)] for p in decay["params"]}
    assert "decode_head.bottleneck.bn.weight" in decayed and "decode_head.conv_seg.bias" in decayed
    assert "out_norms.0.weight" not in decayed and "backbone.model.stem.norm.weight" not in decayed
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_follow_mmseg_and_match_scikit_learn():
    from sklearn.metrics import accuracy_score, jaccard_score, recall_score

    rng = np.random.default_rng(0)
    k = 6
    label = rng.integers(0, 4, (3, 20, 20))  # classes 4 and 5 never labelled
    pred = np.where(rng.random(label.shape) < 0.6, label, rng.integers(0, 5, label.shape))  # 5 never predicted
    label[:, :2] = IGNORE_INDEX
    metric = confusion_matrix_metric(k)
    for p, y in zip(pred, label):  # accumulated over the set, not averaged per image
        metric.update(torch.from_numpy(p)[None], torch.from_numpy(y)[None])
    scores = segmentation_scores(metric.compute(), [f"c{i}" for i in range(k)])
    keep = label != IGNORE_INDEX
    y_true, y_pred = label[keep], pred[keep]
    labels = list(range(k))
    iou = jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0).astype(float)
    acc = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).astype(float)
    iou[[c not in y_true and c not in y_pred for c in labels]] = np.nan  # mmseg: 0/0 -> NaN (sklearn: 0)
    acc[[c not in y_true for c in labels]] = np.nan
    np.testing.assert_allclose(list(scores["IoU"].values()), iou)
    np.testing.assert_allclose(list(scores["Acc"].values()), acc)
    assert scores["IoU"]["c4"] == 0.0  # predicted but never labelled: counts as 0 (mmseg)
    assert math.isnan(scores["IoU"]["c5"])  # neither labelled nor predicted: excluded
    assert scores["mIoU"] == pytest.approx(np.nanmean(iou)) and scores["mAcc"] == pytest.approx(np.nanmean(acc))
    assert scores["aAcc"] == pytest.approx(accuracy_score(y_true, y_pred))


# ---------------------------------------------------------------------------------------------- inference
class _Pointwise(nn.Module):
    """A 1x1 conv: translation-equivariant without context, so every inference mode must agree with `whole`."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, k, 1)

    def forward(self, x):
        return self.conv(x)


def test_slide_windows_cover_the_image_and_agree_with_whole():
    torch.manual_seed(0)
    model, x = _Pointwise(), torch.randn(1, 3, 70, 150)
    torch.testing.assert_close(slide_logits(model, x, crop=32, stride=20), model(x))
    whole = predict_probs(model, x, InferenceConfig(scale=(150, 70)))
    slide = predict_probs(model, x, InferenceConfig("slide", scale=(150, 70), crop_size=32, stride=20))
    flipped = predict_probs(model, x, InferenceConfig(scale=(150, 70), flip=True))
    torch.testing.assert_close(slide, whole)
    torch.testing.assert_close(flipped, whole)
    assert whole.shape == (1, 4, 70, 150)
    torch.testing.assert_close(whole.sum(1), torch.ones(1, 70, 150))


def test_multi_scale_resizes_to_each_ratio_and_back():
    seen = []

    class Recorder(_Pointwise):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    probs = predict_probs(Recorder(), torch.randn(1, 3, 60, 80), InferenceConfig(scale=(80, 60), ratios=(0.5, 1.0, 1.5),
                                                                              flip=True))
    assert seen == [(30, 40), (30, 40), (60, 80), (60, 80), (90, 120), (90, 120)]
    assert probs.shape == (1, 4, 60, 80)


def test_bad_test_config():
    with pytest.raises(ValueError, match="whole' or 'slide"):
        InferenceConfig(mode="sliding")
    with pytest.raises(ValueError, match="stride"):
        InferenceConfig(mode="slide", crop_size=32, stride=64)


# ------------------------------------------------------------------------------------------------ outputs
# The PASCAL VOC 2012 class colours as the devkit documents them (background, aeroplane, ..., tvmonitor) and the
# colour of the 'void' value 255 in the VOC annotations: the reference the computed colour map must reproduce.
VOC_CLASS_COLOURS = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128), (128, 128, 128),
    (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128),
    (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]
VOC_VOID = (224, 224, 192)


def test_voc_colormap_is_the_pascal_voc_one():
    colours = voc_colormap(256)
    assert colours.shape == (256, 3) and colours.dtype == np.uint8
    assert [tuple(c) for c in colours[:21].tolist()] == VOC_CLASS_COLOURS
    assert tuple(colours[255].tolist()) == VOC_VOID
    assert len({tuple(c) for c in colours.tolist()}) == 256  # every label value has its own colour


def test_palette_png_holds_label_values_and_voc_colours(tmp_path):
    pred = np.array([[0, 1], [2, 149]])
    path = save_palette_png(tmp_path / "p.png", pred, 150)
    image = Image.open(path)
    assert image.mode == "P"
    assert np.array(image).tolist() == [[1, 2], [3, 150]]
    assert image.convert("RGB").getpixel((0, 0)) == VOC_CLASS_COLOURS[1]  # class 0 = label value 1
    assert image.convert("RGB").getpixel((1, 1)) == tuple(voc_colormap(256)[150].tolist())
    with pytest.raises(ValueError, match="at most 255 classes"):
        save_palette_png(tmp_path / "q.png", pred, 300)


def test_synthetic_scenes_need_context(scenes):
    """Within each colour group the classes share the colour: the colour baseline must stay far below the
    network's target."""
    from tasks.ade20k.baseline import pixel_colour_baseline

    names = read_class_names(scenes)
    train, val = read_split(scenes, "training", len(names)), read_split(scenes, "validation", len(names))
    baseline = pixel_colour_baseline(train, val, names)
    assert baseline["value"] < 0.45
    labels = np.concatenate([np.array(Image.open(s.label)).ravel() for s in train])
    assert set(np.unique(labels)) == set(range(len(CLASSES) + 1))  # every class and "other" occur


# -------------------------------------------------------------------------------------------------- CLIs
def _run(main, argv, capsys):
    from tasks.common import run_main

    with pytest.raises(SystemExit) as info:
        run_main(main, argv)
    return info.value.code, capsys.readouterr().err.strip()


def test_train_cli_bad_data_is_one_error_line(broken, tmp_path, capsys):
    from tasks.ade20k.train import main

    (broken / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    code, err = _run(main, ["--data", str(broken), "--out", str(tmp_path / "run"), "--max-iters", "1"], capsys)
    assert code == 2 and err.count("\n") == 0 and "ADE_val_00000001.jpg: no annotation" in err


def test_validate_needs_data_for_plain_weights(tmp_path, capsys):
    from tasks.ade20k.__main__ import main

    torch.save({"state_dict": {}}, tmp_path / "w.pth")
    code, err = _run(main, ["validate", "--weights", str(tmp_path / "w.pth")], capsys)
    assert code == 2 and "--data is needed" in err


@pytest.mark.slow
def test_train_resume_and_validate_end_to_end(tmp_path):
    from tasks.ade20k import train
    from tasks.ade20k.__main__ import main as ade20k

    run = tmp_path / "run"
    common = ["--out", str(run), "--synthetic-train", "16", "--synthetic-val", "4", "--batch-size", "4",
              "--val-interval", "3", "--num-png", "2", "--no-progress", "--print-every", "0", "--threads", "1"]
    first = train.main([*common, "--max-iters", "3"])
    assert first["iterations"] == 3 and 0.0 <= first["mIoU"] <= 1.0
    assert set(first["IoU"]) == set(CLASSES) and first["baseline"]["name"].startswith("per-pixel logistic")
    for name in ("config.yaml", "metrics.json", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run / name).is_file(), name
    assert len(list((run / "predictions").glob("*.png"))) == 2
    resumed = train.main(["--resume", str(run), "--max-iters", "5"])
    assert resumed["iterations"] == 5
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 5

    out = tmp_path / "eval"
    ms = ade20k(["validate", "--run", str(run), "--multi-scale", "--out", str(out), "--num-png", "1"])
    assert ms["test"]["ratios"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and ms["test"]["flip"] is True
    assert ms["images"] == 4 and ms["checkpoint"].endswith(".ckpt")
    ss = ade20k(["validate", "--run", str(run), "--out", str(tmp_path / "eval_ss"), "--test-mode", "slide",
                        "--test-stride", "48"])
    assert ss["test"]["mode"] == "slide" and 0.0 <= ss["mIoU"] <= 1.0
    assert (out / "metrics.json").is_file() and len(list((out / "predictions").glob("*.png"))) == 1


@pytest.mark.slow
def test_validate_reads_an_official_mmseg_checkpoint(scenes, tmp_path):
    from test_upernet import SMALL, _spec_shapes, official_state_dict

    from tasks.ade20k.__main__ import main as ade20k

    sd = official_state_dict(_spec_shapes("upernet_focalnet_tiny_srf", **SMALL))
    torch.save({"meta": {}, "state_dict": sd}, tmp_path / "upernet_focalnet.pth")
    args = [f"{k}={json.dumps(v)}" for k, v in SMALL.items() if k != "num_classes"]
    metrics = ade20k(["validate", "--weights", str(tmp_path / "upernet_focalnet.pth"), "--data", str(scenes),
                             "--img-scale", "512", "96", "--out", str(tmp_path / "eval"),
                             *[a for arg in args for a in ("--model-arg", arg)]])
    assert metrics["checkpoint_format"] == "mmseg" and metrics["images"] == 4


@pytest.mark.slow
def test_scenes_accuracy_rows_build_every_backbone(tmp_path, monkeypatch):
    """The opt-in backbone comparison under one UPerNet: each backbone's arguments reach tasks.ade20k.train and give
    an mIoU row (2 iterations on 8 images here; the real budget is 800 on 400)."""
    import dataclasses

    from benchmarks import accuracy

    tiny = ("--synthetic-train", "8", "--synthetic-val", "2", "--batch-size", "4", "--warmup-iters", "1",
            "--accelerator", "cpu", "--devices", "1", "--num-png", "0", "--threads", "1")
    scenes = dataclasses.replace(accuracy.TASKS["scenes"], extra_args=(*accuracy.TASKS["scenes"].extra_args, *tiny))
    monkeypatch.setattr(accuracy, "TASKS", {"scenes": scenes})
    rows = accuracy.run_accuracy(["scenes"], tmp_path, quick=True, timeout_s=300, budget=2)
    assert [r["model"] for r in rows] == ["focalnet", "hornet", "convnext", "swin"]
    assert all(r["status"] == "ok" and r["metric"] == "mIoU" and 0 <= r["score"] <= 1 for r in rows), rows
    assert len({r["params_M"] for r in rows}) == 4  # four different backbones were built


@pytest.mark.slow
def test_ddp_two_cpu_processes_evaluate_every_image_once(tmp_path):
    """`--strategy ddp --devices 2` on CPU: 5 validation images split 3/2 over the ranks; the confusion matrix is
    summed across ranks, so the run's mIoU equals a one-process evaluation of the same final checkpoint."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tasks.ade20k.__main__ import main as ade20k

    repo = Path(__file__).resolve().parent.parent
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "tasks.ade20k.train", "--out", str(run), "--synthetic-train", "8",
           "--synthetic-val", "5", "--batch-size", "4", "--max-iters", "2", "--warmup-iters", "1", "--num-png", "0",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress", "--print-every", "0"]
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["images"] == 5 and metrics["iterations"] == 2
    assert result.stdout.count("mIoU") >= 1 and result.stdout.count("run dir:") == 1, "only rank 0 prints"
    single = ade20k(["validate", "--run", str(run), "--out", str(tmp_path / "eval"), "--accelerator", "cpu",
                            "--devices", "1", "--num-png", "0"])
    assert single["images"] == 5
    assert metrics["mIoU"] == pytest.approx(single["mIoU"]) and metrics["aAcc"] == pytest.approx(single["aAcc"])


def test_resume_from_the_shell_honours_flags_given_with_it(tmp_path, monkeypatch):
    """`python -m tasks.ade20k.train --resume RUN --max-iters 4` with argv read from sys.argv, as a shell starts it:
    the flag wins over the run's config.yaml, training continues from last.ckpt, metrics.json follows the schema."""
    import sys

    from tasks.ade20k import train
    from tasks.common import read_metrics

    run = tmp_path / "run"
    first = train.main(["--out", str(run), "--synthetic-train", "8", "--synthetic-val", "2", "--batch-size", "4",
                        "--max-iters", "2", "--num-png", "0", "--no-progress", "--print-every", "0", "--threads", "1",
                        "--model-arg", "embed_dim=8", "--model-arg", "channels=8", "--model-arg", "aux_channels=8"])
    assert first["iterations"] == 2 and first["preset"] == "synthetic"
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", str(run), "--max-iters", "4"])
    resumed = train.main()
    assert resumed["iterations"] == 4 and resumed["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert resumed["params_m"] == first["params_m"]  # the run's --model-arg overrides were kept
    written = read_metrics(run / "metrics.json")
    assert written["metric"] == {"name": "mIoU", "value": resumed["mIoU"]} and written["split"] == "validation"
    assert written["baseline"]["value"] == resumed["baseline"]["value"] and isinstance(written["beats_baseline"], bool)


def test_synthetic_set_is_written_once_and_reused(tmp_path):
    from tasks.ade20k.synthetic import scenes_written

    root = tmp_path / "ADEChallengeData2016"
    assert not scenes_written(root, 3, 2)
    make_scenes_dataset(root, 3, 2)
    assert scenes_written(root, 3, 2) and not scenes_written(root, 4, 2)
    stamp = (root / "images" / "training" / "ADE_train_00000001.jpg").stat().st_mtime_ns
    make_scenes_dataset(root, 3, 2)
    assert (root / "images" / "training" / "ADE_train_00000001.jpg").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("argv, message", [
    (["--model-arg", "channels"], "--model-arg: expected KEY=VALUE, got 'channels'"),
    (["--max-iters", "0"], "--max-iters must be positive, got 0"),
    (["--test-mode", "slide", "--test-stride", "200", "--crop-size", "96"], "--test-mode/--test-stride"),
])
def test_train_cli_bad_options_are_one_error_line(tmp_path, capsys, argv, message):
    from tasks.ade20k.train import main

    code, err = _run(main, ["--out", str(tmp_path / "run"), "--synthetic-train", "4", "--synthetic-val", "2",
                            "--threads", "1", "--no-progress", *argv], capsys)
    assert code == 2 and err.count("\n") == 0 and message in err
