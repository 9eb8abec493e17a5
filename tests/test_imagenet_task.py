"""tasks.imagenet: train/eval CLIs end to end on a tiny ImageFolder the test writes, resume after a crash,
DDP metric reduction, and one clear error per kind of bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common import TaskError
from tasks.imagenet import eval as imagenet_eval
from tasks.imagenet import train as imagenet_train

REPO = Path(__file__).resolve().parents[1]
FAST = ["--model", "focalnet_digits", "--input-size", "16", "--crop-pct", "1.0", "--batch-size", "4",
        "--epochs", "1", "--aa", "none", "--reprob", "0", "--mixup", "0", "--cutmix", "0", "--warmup-epochs", "0",
        "--no-progress", "--num-workers", "0", "--devices", "1", "--accelerator", "cpu"]


def write_folder(root: Path, classes=("a", "b", "c"), train=4, val=4, size=16) -> Path:
    """`root/{train,val}/<class>/*.png`: each class a distinct bright square position, so it is learnable."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[c * 4 : c * 4 + 6, c * 4 : c * 4 + 6] = 255
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("imagenet")
    data = write_folder(base / "data")
    run = base / "run"
    metrics = imagenet_train.main(["--data", str(data), "--out", str(run), *FAST])
    return data, run, metrics


def test_train_writes_run_dir_and_metrics(trained):
    _, run, metrics = trained
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics) or on_disk["top1"] == pytest.approx(metrics["top1"])
    for key in ("top1", "top5", "epochs", "train_seconds", "model"):
        assert key in on_disk
    assert 0.0 <= on_disk["top1"] <= on_disk["top5"] <= 1.0
    assert on_disk["epochs"] == 1 and on_disk["model"] == "focalnet_digits" and on_disk["train_seconds"] > 0
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "logs").glob("metrics.csv")) and list((run / "logs").glob("events.out.tfevents*"))


def test_eval_reproduces_the_final_validation(trained, tmp_path):
    data, run, metrics = trained
    out = imagenet_eval.main(["--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                              "--out", str(tmp_path / "eval")])
    assert out["top1"] == pytest.approx(metrics["top1"]) and out["top5"] == pytest.approx(metrics["top5"])
    rows = (tmp_path / "eval" / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,images,top1" and len(rows) == 4
    assert out["images"] == 12 and out["images_per_sec"] > 0


def test_eval_rejects_a_checkpoint_for_another_class_count(trained, tmp_path):
    _, run, _ = trained
    other = write_folder(tmp_path / "two", classes=("a", "b"))
    with pytest.raises(TaskError, match="classifier does not have 2 classes"):
        imagenet_eval.main(["--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(other),
                            "--out", str(tmp_path / "e")])


def test_resume_after_a_crash_continues_the_same_schedule(tmp_path, monkeypatch):
    data = write_folder(tmp_path / "data")
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), *FAST, "--epochs", "2"]

    from tasks.common.callbacks import EpochPrinter

    original = EpochPrinter.on_train_batch_end

    def crash_in_second_epoch(self, trainer, pl_module, outputs, batch, batch_idx):
        original(self, trainer, pl_module, outputs, batch, batch_idx)
        if trainer.current_epoch == 1 and batch_idx == 1:  # mid-way through epoch 2 of 2
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(EpochPrinter, "on_train_batch_end", crash_in_second_epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        imagenet_train.main(argv)
    monkeypatch.undo()
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps = first["global_step"]
    assert first["epoch"] == 0 and steps == 3  # 12 images / batch 4

    metrics = imagenet_train.main(["--resume", str(run), "--no-progress"])
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert metrics["epochs"] == 2 and final["global_step"] == 2 * steps
    assert final["lr_schedulers"][0]["last_epoch"] == 2 * steps, "the LR schedule must continue, not restart"
    assert final["optimizer_states"][0]["state"][0]["step"] == 2 * steps


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda root: None, "--data: folder not found"),
        (lambda root: write_folder(root, classes=("a", "b")) and (root / "val" / "b").rename(root / "val" / "z"),
         "class folders differ between train and val"),
        (lambda root: (root / "train").mkdir(parents=True) or (root / "val").mkdir(), "no files with extension"),
    ],
)
def test_bad_data_gives_one_clear_error(tmp_path, setup, message):
    root = tmp_path / "d"
    setup(root)
    with pytest.raises(TaskError, match=message):
        imagenet_train.main(["--data", str(root), "--out", str(tmp_path / "run"), *FAST])


def test_unreadable_images_warn_with_count_or_fail_when_all_are(tmp_path):
    from tasks.imagenet.data import checked_dataset

    root = write_folder(tmp_path / "d")
    (root / "val" / "a" / "0.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"1 of 12 image\(s\) unreadable and skipped: .*0.png"):
        dataset = checked_dataset(root / "val", "--data (val)", None)
    assert len(dataset) == 11
    for path in (root / "train").rglob("*.png"):
        path.write_bytes(b"")
    with pytest.raises(TaskError, match="none of the 12 images"):
        checked_dataset(root / "train", "--data (train)", None)


def test_unknown_model_suggests_close_names(tmp_path):
    data = write_folder(tmp_path / "d")
    with pytest.raises(TaskError, match="unknown model 'focalnet_tiny_srff'.*focalnet_tiny_srf"):
        imagenet_train.main(["--data", str(data), "--out", str(tmp_path / "r"), *FAST, "--model", "focalnet_tiny_srff"])


def test_cli_exit_code_and_message_for_bad_input(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tasks.imagenet.train", "--data", str(tmp_path / "missing")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --data: folder not found")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_reduce_metrics_across_ranks(tmp_path):
    data = write_folder(tmp_path / "data", train=4, val=4)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tasks.imagenet.train", "--data", str(data), "--out", str(run), *FAST]
    cmd[cmd.index("--devices") + 1] = "2"
    result = subprocess.run([*cmd, "--strategy", "ddp"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # Each rank saw half of the 12 val images; the logged top-1 must be the accuracy over all of them.
    single = imagenet_eval.main(["--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                                 "--out", str(tmp_path / "eval")])
    assert metrics["top1"] == pytest.approx(single["top1"]) and metrics["top5"] == pytest.approx(single["top5"])
