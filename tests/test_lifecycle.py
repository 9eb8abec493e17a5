"""tasks.common.lifecycle on a tiny task defined here: option precedence, presets, resume, metrics.json schema,
SIGTERM / Ctrl-C inside and outside Trainer.fit, --help."""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from tasks.common import Run, RunStopped, Score, Summary, Task, TaskError, run_main, run_task
from tasks.common.lifecycle import build_parser
from tasks.common.metrics import SHARED_KEYS, build_metrics, check_metrics, read_metrics

PRESETS = {
    "small": "epochs: 2\nwidth: 4\nlr: 0.1\ntags: [a, b]\norder: random\nmode=wide: {width: 8}\n"
             "lr=0.5:\n  mode=wide: {epochs: 5}\n",
    "large": "epochs: 3\nwidth: 16\n",
}


class Tiny(pl.LightningModule):
    """A linear classifier on random points; `stop_at_epoch` sends this process a signal at that epoch's end."""

    def __init__(self, width: int, lr: float, stop_at_epoch: int = -1, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.net, self.lr, self.stop_at_epoch, self.signum = torch.nn.Linear(width, 2), lr, stop_at_epoch, signum

    def training_step(self, batch, idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def on_train_epoch_end(self) -> None:
        if self.current_epoch == self.stop_at_epoch:
            os.kill(os.getpid(), self.signum)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="'big' picks the large preset")
    g = p.add_argument_group("model")
    g.add_argument("--epochs", type=int, help="epochs")
    g.add_argument("--width", type=int, help="input width")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--mode", default="narrow", help="narrow or wide")
    g.add_argument("--tags", action="append", help="repeatable")
    g.add_argument("--order", default="fixed", help="an option added after the first runs: fixed (the behaviour "
                   "before it existed) or random")
    g.add_argument("--stop-at-epoch", type=int, default=-1, help="send a signal at this epoch's end")
    g.add_argument("--signal", default="SIGTERM", help="which signal")
    g.add_argument("--fit", action="store_true", help="train (else only record the options)")


def fit(run: Run) -> Summary:
    args = run.args
    if args.fit:
        x = torch.randn(16, args.width, generator=torch.Generator().manual_seed(0))
        data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=4)
        module = Tiny(args.width, args.lr, args.stop_at_epoch, getattr(signal, args.signal))
        run.fit(run.trainer(args.epochs, enable_checkpointing=True), module, data)
    return Summary(Score("accuracy", 0.5), data=str(args.data), split="val", params_m=None,
                   extras={"options": {k: v for k, v in vars(args).items() if k in ("epochs", "width", "lr", "tags")}})


@pytest.fixture()
def task(tmp_path: Path) -> Task:
    presets = tmp_path / "presets"
    presets.mkdir()
    for name, text in PRESETS.items():
        (presets / f"{name}.yaml").write_text(text)
    return Task(name="tiny", module="tests.tiny", doc="A tiny task.\n\nTrains a linear model.",
                add_options=add_options, presets=presets, run=fit,
                choose_preset=lambda args: "large" if args.data == "big" else "small")


COMMON = ["--accelerator", "cpu", "--devices", "1", "--no-progress", "--threads", "1"]


def options(task: Task, tmp_path: Path, *argv: str) -> dict:
    return run_task(task, [*argv, "--out", str(tmp_path / "run"), *COMMON])["options"]


def test_each_source_wins_over_the_next(task, tmp_path):
    """flag > --config > resumed config.yaml > preset > default, one option decided by each layer."""
    assert options(task, tmp_path) == dict(epochs=2, width=4, lr=0.1, tags=["a", "b"])  # preset "small"
    first = tmp_path / "first"
    run_task(task, ["--out", str(first), "--epochs", "7", "--width", "5", "--lr", "0.2", *COMMON])
    config = tmp_path / "c.yaml"
    config.write_text("width: 6\nlr: 0.3\n")
    argv = ["--resume", str(first), "--config", str(config), "--lr", "0.4"]
    assert run_task(task, argv)["options"] == dict(epochs=7, width=6, lr=0.4, tags=["a", "b"])
    assert options(task, tmp_path, "--data", "big") == dict(epochs=3, width=16, lr=None, tags=None)  # other preset
    assert options(task, tmp_path, "--preset", "large") == dict(epochs=3, width=16, lr=None, tags=None)


def test_preset_sections_follow_the_given_options_and_flags_replace_lists(task, tmp_path):
    assert options(task, tmp_path, "--mode", "wide")["width"] == 8
    assert options(task, tmp_path, "--mode", "wide", "--lr", "0.5")["epochs"] == 5  # nested: both conditions
    assert options(task, tmp_path, "--lr", "0.5")["epochs"] == 2
    assert options(task, tmp_path, "--tags", "c")["tags"] == ["c"], "a repeated flag replaces the preset's list"


def test_flags_next_to_resume_are_honoured_from_the_shell_command_line(task, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run_task(task, ["--out", str(run), "--fit", *COMMON])
    monkeypatch.setattr(sys, "argv", ["tiny", "--resume", str(run), "--epochs", "4"])
    metrics = run_task(task)  # argv None: as started from a shell
    assert metrics["options"]["epochs"] == 4 and metrics["resumed_from"].endswith("last.ckpt")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 4
    with open(run / "logs" / "metrics.csv", newline="") as fh:
        assert {r["epoch"] for r in csv.DictReader(fh) if r.get("train/loss")} == {"0", "1", "2", "3"}


def test_resuming_a_run_from_before_an_option_existed_keeps_its_behaviour(task, tmp_path, capsys):
    """An option the resumed config.yaml lacks takes its argparse default (the old behaviour), not the preset's."""
    run = tmp_path / "old"
    run_task(task, ["--out", str(run), *COMMON])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["order"] == "random", "a new run takes the preset's value"
    del config["order"]  # as written before --order existed
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    run_task(task, ["--resume", str(run)])
    assert yaml.safe_load((run / "config.yaml").read_text())["order"] == "fixed"
    assert "predates --order fixed" in capsys.readouterr().out
    (run / "config.yaml").write_text(yaml.safe_dump(config))  # without --order again
    run_task(task, ["--resume", str(run), "--order", "random"])
    assert yaml.safe_load((run / "config.yaml").read_text())["order"] == "random", "a flag still wins"


@pytest.mark.parametrize("module, option, before", [("tasks.audio.esc50", "pad", "zero"),
                                                    ("tasks.audio.esc50", "global_pool", "avg"),
                                                    ("tasks.audio.esc50", "ensemble", 1),
                                                    ("tasks.audio.esc50", "ensemble_models", None),
                                                    ("tasks.medical.train", "crop_sampler", "posneg")])
def test_options_that_presets_changed_default_to_the_behaviour_before_them(module, option, before):
    """The rule `_options_added_since` relies on, for the options added after runs had config.yaml files."""
    import importlib

    assert build_parser(importlib.import_module(module).TASK).get_default(option) == before


def test_bad_config_files_name_the_file(task, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("widht: 3\n")
    with pytest.raises(TaskError, match=r"--config: unknown option\(s\) in .*bad.yaml: widht"):
        run_task(task, ["--config", str(bad), "--out", str(tmp_path / "r")])
    bad.write_text(f"resume: {tmp_path}\n")
    with pytest.raises(TaskError, match="sets resume; give --resume on the command line"):
        run_task(task, ["--config", str(bad), "--out", str(tmp_path / "r")])
    with pytest.raises(TaskError, match="neither a run directory nor a checkpoint"):
        run_task(task, ["--resume", str(tmp_path / "nowhere")])
    (tmp_path / "presets" / "small.yaml").write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="small.yaml sets unknown option"):
        run_task(task, ["--out", str(tmp_path / "r")])


def test_metrics_json_follows_the_schema(task, tmp_path):
    metrics = run_task(task, ["--out", str(tmp_path / "run"), *COMMON])
    assert read_metrics(tmp_path / "run" / "metrics.json") == json.loads(json.dumps(metrics))
    assert set(SHARED_KEYS) <= set(metrics) and metrics["schema"] == 1 and metrics["task"] == "tiny"
    assert metrics["metric"] == {"name": "accuracy", "value": 0.5} and metrics["baseline"] is None
    assert metrics["preset"] == "small" and metrics["command"].startswith("python -m tests.tiny --out ")
    assert metrics["versions"]["torch"] == torch.__version__ and metrics["timing"]["wall_seconds"] > 0
    summary = Summary(Score("top1", 0.9), data="d", split="val", params_m=1.0, baseline=Score("linear", 0.7),
                      interpretability={"gates": {"deletion_auc": 0.4}}, extras={"top5": 1.0})
    made = build_metrics(summary, "t", "p", {"wall_seconds": 1.0}, "python -m t", None)
    assert made["baseline"] == {"name": "linear", "value": 0.7} and made["interpretability"]["gates"]
    with pytest.raises(ValueError, match="may not reuse the shared metrics.json keys: data"):
        build_metrics(Summary(Score("a", 1.0), "d", "s", None, extras={"data": 1}), "t", None, {}, "c", None)
    for broken, message in [({**made, "metric": {"name": "top1"}}, "metric must be"),
                            ({**made, "schema": 2}, "schema is 2"),
                            ({k: v for k, v in made.items() if k != "split"}, "missing key.*split"),
                            ({**made, "interpretability": {"gates": 0.3}}, "interpretability must be")]:
        with pytest.raises(ValueError, match=message):
            check_metrics(broken)


@pytest.mark.parametrize("signame, code, last_epoch", [("SIGTERM", 143, 1), ("SIGINT", 130, 0)])
def test_a_signal_inside_fit_stops_with_the_resume_command_and_resuming_finishes(task, tmp_path, capsys, signame,
                                                                                 code, last_epoch):
    """Sent at the end of epoch 1: Lightning finishes that epoch (and its last.ckpt) on SIGTERM and stops at the
    next batch; Ctrl-C interrupts at once, so last.ckpt is epoch 0's. Either way the exit is non-zero."""
    run = tmp_path / "run"
    argv = ["--out", str(run), "--fit", "--epochs", "4", "--stop-at-epoch", "1", "--signal", signame, *COMMON]
    with pytest.raises(SystemExit) as stop:
        run_main(lambda a: run_task(task, a), argv)
    assert stop.value.code == code
    err = capsys.readouterr().err
    assert f"stopped by {signame}" in err and f"python -m tests.tiny --resume {run}" in err
    assert not (run / "metrics.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == last_epoch
    metrics = run_task(task, ["--resume", str(run), "--stop-at-epoch", "-1"])
    assert metrics["resumed_from"].endswith("last.ckpt")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3


def test_sigterm_outside_fit_stops_at_once(task, tmp_path):
    def stop_while_preparing(run: Run) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(RunStopped) as stop:
        run_task(Task(**{**task.__dict__, "run": stop_while_preparing}), ["--out", str(tmp_path / "run")])
    assert stop.value.exit_code == 143 and "--resume" in str(stop.value)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the previous handler is restored"


def test_help_shows_defaults_presets_and_precedence(task, capsys):
    with pytest.raises(SystemExit):
        build_parser(task).parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "epochs (preset large: 3; small: 2 (--lr 0.5, --mode wide: 5))" in text
    assert "narrow or wide (default: narrow)" in text and "--preset {large,small}" in text
    assert "the command line, --config, the resumed run's config.yaml, the preset, its default" in text
