"""tasks.imagenet: fit / validate end to end on a tiny ImageFolder the test writes, resume after a crash,
DDP metric reduction, and one clear error per kind of bad input."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tasks.common import TaskError
from tasks.imagenet import __main__ as imagenet
from tasks.imagenet import train as imagenet_train

REPO = Path(__file__).resolve().parents[1]
FAST = ["--model", "focalnet_digits", "--input-size", "16", "--crop-pct", "1.0", "--batch-size", "4",
        "--epochs", "1", "--aa", "none", "--reprob", "0", "--mixup", "0", "--cutmix", "0", "--warmup-epochs", "0",
        "--no-progress", "--num-workers", "0", "--devices", "1", "--accelerator", "cpu", "--threads", "1"]


def validate(argv):
    return imagenet.main(["validate", *argv])


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
    assert on_disk == metrics or on_disk["top1"] == pytest.approx(metrics["top1"])  # nested: no approx
    for key in ("top1", "top5", "epochs", "train_seconds", "model"):
        assert key in on_disk
    assert 0.0 <= on_disk["top1"] <= on_disk["top5"] <= 1.0
    assert on_disk["epochs"] == 1 and on_disk["model"] == "focalnet_digits" and on_disk["train_seconds"] > 0
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "logs").glob("metrics.csv")) and list((run / "logs").glob("events.out.tfevents*"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "focalnet_digits" and config["input_size"] == 16 and config["epochs"] == 1
    assert not {"out", "resume", "config"} & set(config), "config.yaml must seed a new run, not point at this one"
    assert on_disk["val_images"] == 12 and on_disk["train_images"] == 12 and on_disk["train_images_per_sec"] > 0
    # Each class is a bright square at its own place: a linear model on pixels or HOG sees it.
    assert on_disk["baseline"]["value"] == 1.0
    candidates = {f"{f} + logistic regression" for f in ("pixels", "HOG", "HOG + colour")}
    assert on_disk["baseline"]["name"] in candidates and set(on_disk["baseline_cross_validation"]) == candidates
    assert on_disk["baseline_train_images"] == 12


def test_validate_reproduces_the_final_validation(trained, tmp_path):
    data, run, metrics = trained
    out = validate(["--run", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                              "--out", str(tmp_path / "eval")])
    assert out["top1"] == pytest.approx(metrics["top1"]) and out["top5"] == pytest.approx(metrics["top5"])
    rows = (tmp_path / "eval" / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,images,top1" and len(rows) == 4
    assert out["images"] == 12 and out["images_per_sec"] > 0


def test_validate_rejects_a_checkpoint_for_another_class_count(trained, tmp_path):
    _, run, _ = trained
    other = write_folder(tmp_path / "two", classes=("a", "b"))
    with pytest.raises(TaskError, match="the classifier does not have the classes of"):
        validate(["--run", str(run / "checkpoints" / "last.ckpt"), "--data", str(other),
                            "--out", str(tmp_path / "e")])


def test_crash_while_saving_keeps_last_ckpt_and_resume_restores_the_state(tmp_path, monkeypatch):
    """Run 2 epochs, crash inside the atomic write of epoch 2's last.ckpt; epoch 1's file must survive intact and
    `--resume` must restore its optimiser, scheduler and step state, then finish the same LR schedule. Val top-1
    does not improve in epoch 2 here, so this also checks that last.ckpt is rewritten without a new best
    (`RefreshLastCheckpoint`)."""
    data = write_folder(tmp_path / "data")
    run = tmp_path / "run"
    real_replace, saves = os.replace, []

    def crash_on_second_last_ckpt(src, dst, *args, **kwargs):
        if str(dst).endswith("last.ckpt"):
            saves.append(dst)
            if len(saves) == 2:
                raise OSError("simulated crash while writing the checkpoint")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", crash_on_second_last_ckpt)
    with pytest.raises(OSError, match="simulated crash"):
        imagenet_train.main(["--data", str(data), "--out", str(run), *FAST, "--epochs", "2"])
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"], "no temp files"
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps = first["global_step"]
    assert first["epoch"] == 0 and steps == 3  # 12 images / batch 4

    restored = {}
    from tasks.imagenet.module import ClassificationModule

    def capture(self):  # deep copies: training updates the optimiser's tensors in place
        restored.update(step=self.trainer.global_step, optimizer=copy.deepcopy(self.trainer.optimizers[0].state_dict()),
                        scheduler=copy.deepcopy(self.trainer.lr_scheduler_configs[0].scheduler.state_dict()))

    monkeypatch.setattr(ClassificationModule, "on_train_start", capture, raising=False)
    metrics = imagenet_train.main(["--resume", str(run), "--no-progress"])
    assert restored["step"] == steps
    assert restored["scheduler"]["last_epoch"] == first["lr_schedulers"][0]["last_epoch"] == steps
    saved_state, live_state = first["optimizer_states"][0]["state"], restored["optimizer"]["state"]
    assert saved_state.keys() == live_state.keys()
    for key in saved_state:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved_state[key][name], live_state[key][name]), (key, name)

    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert metrics["epochs"] == 2 and final["global_step"] == 2 * steps
    assert metrics["resumed_from"].endswith("last.ckpt")
    assert final["lr_schedulers"][0]["last_epoch"] == 2 * steps, "the LR schedule must continue, not restart"
    epochs_logged = {row.split(",")[0] for row in (run / "logs" / "metrics.csv").read_text().splitlines()[1:]}
    assert {"0", "1"} <= epochs_logged, "the CSV log must keep the epochs from before the crash"
    assert not list((run / "logs").glob("metrics.part*.csv"))


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
    """`--strategy ddp --devices 2` on CPU (gloo): 9 val images split 5/4 over the ranks; the logged top-1 must be
    the accuracy over all 9 (no image repeated to even out the ranks), as eval in one process computes it."""
    data = write_folder(tmp_path / "data", train=4, val=3)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tasks.imagenet.train", "--data", str(data), "--out", str(run), *FAST]
    cmd[cmd.index("--devices") + 1] = "2"
    cmd[cmd.index("--batch-size") + 1] = "2"
    result = subprocess.run([*cmd, "--strategy", "ddp", "--epochs", "2"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["total_batch"] == 4 and metrics["epochs"] == 2
    assert metrics["val_images"] == 9, "val metrics must be summed over both ranks, each image once"
    assert "top-1" in result.stdout and result.stdout.count("run dir:") == 2, "only rank 0 prints the summary"
    single = validate(["--run", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                                 "--out", str(tmp_path / "eval")])
    assert single["images"] == 9
    assert metrics["top1"] == pytest.approx(single["top1"]) and metrics["top5"] == pytest.approx(single["top5"])


def test_official_recipe_preset_and_lr_scaling():
    """presets/imagenet.yaml holds the official FocalNet-T recipe (reference focalnet.md Sec. 4)."""
    preset = yaml.safe_load((REPO / "tasks" / "imagenet" / "presets" / "imagenet.yaml").read_text())
    assert preset | {} == preset and {
        k: preset[k] for k in ("model", "epochs", "base_lr", "warmup_lr", "min_lr", "warmup_epochs", "weight_decay",
                               "clip_grad", "aa", "reprob", "mixup", "cutmix", "smoothing", "crop_pct", "input_size")
    } == dict(model="focalnet_tiny_srf", epochs=300, base_lr=5e-4, warmup_lr=5e-7, min_lr=5e-6, warmup_epochs=20,
              weight_decay=0.05, clip_grad=5.0, aa="rand-m9-mstd0.5-inc1", reprob=0.25, mixup=0.8, cutmix=1.0,
              smoothing=0.1, crop_pct=0.875, input_size=224)
    from tasks.common.optim import scaled_lr

    assert scaled_lr(5e-4, 8 * 128) == pytest.approx(1e-3)  # 8 GPUs x 128: peak 1e-3 as in the official logs


def test_cosine_warmup_matches_timm_cosine_scheduler_per_step():
    from timm.scheduler import CosineLRScheduler

    from tasks.common.optim import cosine_warmup_scheduler

    total, warmup, peak, warm_lr, min_lr = 50, 10, 1e-3, 1e-6, 1e-5
    ours_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    ref_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    ours = cosine_warmup_scheduler(ours_opt, total, warmup, warm_lr, min_lr)
    ref = CosineLRScheduler(ref_opt, t_initial=total, lr_min=min_lr, warmup_t=warmup, warmup_lr_init=warm_lr,
                            t_in_epochs=False)
    for step in range(total):
        ref.step_update(step)
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-9), step
        ours_opt.step()
        ours.step()


@pytest.mark.parametrize("name", ["focalnet_digits", "hornet_digits", "convnext_digits", "swin_digits",
                                  "vit_digits"])
def test_digits_presets_are_equal_size_and_load_weights(tmp_path: Path, name: str):
    """The accuracy-at-equal-budget set: 0.7-0.85 M parameters each, 32 px input, and (timm baselines too) initial
    weights through focalmod.load_checkpoint."""
    from tasks.imagenet.recipe import build_model

    model = build_model(name, 10)
    params = sum(p.numel() for p in model.parameters())
    assert 0.7e6 < params < 0.85e6, params
    assert model.pretrained_cfg["input_size"] == (3, 32, 32) and model.pretrained_cfg["architecture"] == name
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    again = build_model(name, 10, checkpoint_path=str(tmp_path / "w.pth"))
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_no_weight_decay_on_norms_biases_and_layer_scale():
    from tasks.common.optim import adamw_without_1d_decay
    from tasks.imagenet.recipe import build_model

    model = build_model("focalnet_digits", 10, layerscale_value=1e-4)
    opt = adamw_without_1d_decay(model, 1e-3, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert any(n.endswith("ls1.gamma") for n in no_decay) and any(n.endswith("norm1.weight") for n in no_decay)
    assert all(model.get_parameter(n).ndim == 1 for n in no_decay)
    decay = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    assert "head.fc.weight" in decay and len(decay) + len(no_decay) == len(names)


def test_validate_transform_is_the_official_one():
    from torchvision import transforms as T

    from tasks.imagenet.data import Preprocess, eval_transform

    steps = eval_transform(Preprocess(224, 0.875)).transforms
    resize, crop = steps[0], steps[1]
    assert isinstance(resize, T.Resize) and resize.size == 256 and resize.interpolation == T.InterpolationMode.BICUBIC
    assert isinstance(crop, T.CenterCrop) and tuple(crop.size) == (224, 224)
    norm = steps[-1]
    assert tuple(norm.mean.tolist() if hasattr(norm.mean, "tolist") else norm.mean) == pytest.approx(
        (0.485, 0.456, 0.406))


def test_official_augmentation_with_mixup_and_ema_trains_and_eval_matches(tmp_path):
    """The official recipe's preset (RandAugment, erasing, Mixup/CutMix soft targets; the --data default of
    ImageNet-sized folders) with --model-ema, on tiny images."""
    data = write_folder(tmp_path / "data")
    run = tmp_path / "run"
    fast = ["--preset", "imagenet", "--model", "focalnet_digits", "--input-size", "16", "--batch-size", "4",
            "--epochs", "1",
            "--no-progress", "--devices", "1", "--accelerator", "cpu", "--model-ema", "true", "--threads", "1"]
    metrics = imagenet_train.main(["--data", str(data), "--out", str(run), *fast])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["aa"] == "rand-m9-mstd0.5-inc1" and config["mixup"] == 0.8 and config["reprob"] == 0.25
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert "averaging_state" in ckpt and "current_model_state" in ckpt  # EMA weights are the state_dict
    assert torch.isfinite(torch.tensor(metrics["val_loss"]))
    out = validate(["--run", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                              "--out", str(tmp_path / "eval")])
    assert out["top1"] == pytest.approx(metrics["top1"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--strategy", "no_such_strategy"], "trainer settings: .*invalid strategy"),
        (["--mixup", "0.8", "--batch-size", "3"], "--batch-size must be even with Mixup"),
        (["--batch-size", "64"], r"--batch-size 64 x 1 process\(es\) is larger than the 12 training images"),
    ],
)
def test_bad_training_settings_are_task_errors(tmp_path, extra, message):
    data = write_folder(tmp_path / "d")
    with pytest.raises(TaskError, match=message):
        imagenet_train.main(["--data", str(data), "--out", str(tmp_path / "r"), *FAST, *extra])


def test_validate_rejects_weights_of_another_model_and_a_contradicting_model_name(trained, tmp_path):
    data, run, _ = trained
    ckpt = run / "checkpoints" / "last.ckpt"
    with pytest.raises(TaskError, match="--model goes with --weights"):
        validate(["--run", str(ckpt), "--model", "focalnet_tiny_srf", "--data", str(data)])
    from tasks.imagenet.recipe import build_model

    weights = tmp_path / "digits_weights.pth"
    torch.save(build_model("focalnet_digits", 3).state_dict(), weights)
    with pytest.raises(TaskError, match="does not fit --model focalnet_tiny_iso"):
        validate(["--weights", str(weights), "--model", "focalnet_tiny_iso", "--data", str(data),
                            "--out", str(tmp_path / "e")])
    with pytest.raises(TaskError, match="--model is required with --weights"):
        validate(["--weights", str(weights), "--data", str(data)])


def test_validate_without_checkpoint_needs_a_digits_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskError, match="no digits run with a checkpoint under runs/imagenet"):
        validate([])
    with pytest.raises(TaskError, match="--run is required with --data"):
        validate(["--data", str(tmp_path)])


@pytest.mark.slow
def test_embedded_default_learns_in_two_epochs_and_eval_finds_the_run(tmp_path, monkeypatch):
    """The real default (digits written as PNG folders, focalnet_digits) with 2 epochs instead of 10; the full
    default reaches ~99% (measured, see docs/imagenet.md). `eval` with no arguments evaluates that run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOCALMOD_CACHE", str(tmp_path / "cache"))
    metrics = imagenet_train.main(["--epochs", "2", "--no-progress"])
    assert metrics["val_images"] == 360 and metrics["train_images"] == 1437 and metrics["num_classes"] == 10
    assert metrics["top1"] > 0.5, metrics
    assert sorted(p.name for p in (tmp_path / "cache" / "digits_32px").iterdir()) == ["manifest.json", "train", "val"]
    out = validate([])
    assert out["top1"] == pytest.approx(metrics["best_top1"]) and out["images"] == 360
    # On the embedded default training and eval also score 16 explanations (one per class in turn), every method.
    assert set(metrics["interpretability"]) == {"modulator", "gates", "gradcam", "integrated_gradients", "random"}
    assert (metrics["interpretability"]["random"]["fid_in"] <= 1.0 and (tmp_path / "runs" / "imagenet").is_dir())
    assert set(out["interpretability"]) == {"modulator", "gates", "gradcam", "integrated_gradients", "random"}
    assert all(0.0 <= s["fid_in"] <= 1.0 and 0.0 <= s["insertion_auc"] <= 1.0 for s in out["interpretability"].values())
    run_dir = max((tmp_path / "runs" / "imagenet-validate").iterdir())
    assert (run_dir / "explanations.png").stat().st_size > 1000
    assert json.loads((run_dir / "metrics.json").read_text())["interpretability"] == out["interpretability"]


def test_resume_from_the_shell_honours_flags_given_with_it(tmp_path, monkeypatch):
    """`python -m tasks.imagenet.train --resume RUN --epochs 2` (argv None: read from sys.argv) trains the extra
    epoch; the flag used to be dropped and the resumed run stopped at once."""
    data = write_folder(tmp_path / "data")
    run = tmp_path / "run"
    imagenet_train.main(["--data", str(data), "--out", str(run), *FAST])
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", str(run), "--epochs", "2"])
    metrics = imagenet_train.main()
    assert metrics["epochs"] == 2 and metrics["global_step"] == 6 and metrics["resumed_from"].endswith("last.ckpt")
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2


@pytest.mark.slow
def test_sigterm_exits_non_zero_with_the_resume_command_and_the_run_resumes(tmp_path):
    """A scheduler's SIGTERM: the run stops at a batch boundary with exit status 143 (not 0) and prints the command
    that resumes it; that command, with a flag next to --resume, finishes the run from the last epoch's checkpoint."""
    import signal

    data = write_folder(tmp_path / "data")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tasks.imagenet.train", "--data", str(data), "--out", str(run), *FAST]
    cmd[cmd.index("--epochs") + 1] = "200"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1/200"):
            proc.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, output[-3000:]
    assert f"stopped by SIGTERM; continue the run with:\n  python -m tasks.imagenet.train --resume {run}" in output
    assert not (run / "metrics.json").exists()
    stopped = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    resumed = subprocess.run([sys.executable, "-m", "tasks.imagenet.train", "--resume", str(run), "--epochs",
                              str(stopped + 2)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == stopped + 2 and metrics["global_step"] == 3 * (stopped + 2)
    assert metrics["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
