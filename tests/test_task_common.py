"""tasks.common: config from YAML + flags, run directories, atomic writes and checkpoints, one-line errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from tasks.common import (
    AtomicCheckpointIO,
    TaskError,
    add_common_args,
    make_run_dir,
    parse_with_config,
    resolve_resume,
    run_main,
    save_config,
    write_metrics,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    add_common_args(parser, "demo")
    return parser


def test_config_yaml_sets_defaults_and_flags_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 7\nprecision: bf16-mixed\n")
    args = parse_with_config(_parser(), ["--config", str(cfg)])
    assert (args.epochs, args.precision) == (7, "bf16-mixed")
    args = parse_with_config(_parser(), ["--config", str(cfg), "--epochs", "2"])
    assert args.epochs == 2


@pytest.mark.parametrize(
    "content,message",
    [("epoch: 7\n", "unknown option.*epoch"), ("[1, 2]\n", "must hold a mapping"), ("a: [\n", "not valid YAML")],
)
def test_bad_config_is_a_task_error(tmp_path, content, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(content)
    with pytest.raises(TaskError, match=message):
        parse_with_config(_parser(), ["--config", str(cfg)])


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(TaskError, match="--config: file not found: .*nope.yaml"):
        parse_with_config(_parser(), ["--config", str(tmp_path / "nope.yaml")])


def test_run_dirs_are_never_reused(tmp_path):
    first = make_run_dir("demo", root=tmp_path)
    second = make_run_dir("demo", root=tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert make_run_dir("demo", out=tmp_path / "mine") == tmp_path / "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(TaskError, match="exists and is not a directory"):
        make_run_dir("demo", out=tmp_path / "file")


def test_config_and_metrics_round_trip(tmp_path):
    save_config(tmp_path, {"data": Path("/x"), "sizes": (1, 2), "lr": torch.tensor(0.5)})
    assert (tmp_path / "config.yaml").read_text().count("/x") == 1
    write_metrics(tmp_path, {"top1": 0.97, "bad": float("nan"), "nested": {"a": torch.tensor(2.0)}})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"top1": 0.97, "bad": None, "nested": {"a": 2.0}}
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must not be left behind"


def test_resolve_resume(tmp_path):
    assert resolve_resume(None) == (None, None)
    with pytest.raises(TaskError, match="no checkpoints/last.ckpt"):
        resolve_resume(tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    assert resolve_resume(tmp_path) == (tmp_path, ckpt)
    assert resolve_resume(ckpt) == (tmp_path, ckpt)
    with pytest.raises(TaskError, match="neither a run directory nor a checkpoint"):
        resolve_resume(tmp_path / "missing")


def test_atomic_checkpoint_survives_a_crash_while_saving(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("focalmod.checkpoints.io.os.replace", crash)  # the one atomic writer
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"], "no partial file may remain"


def test_checkpoint_reading_refuses_unsafe_pickles(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(TaskError, match="cannot read checkpoint"):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not marker.exists()
    path.write_bytes(b"\x00garbage")
    with pytest.raises(TaskError, match="cannot read checkpoint"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_run_main_turns_task_errors_into_one_line(capsys):
    def main(argv):
        raise TaskError("--data: folder not found: /nowhere")

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --data: folder not found: /nowhere\n"


def test_threads_option_is_common_and_applied():
    import argparse

    import torch

    from tasks.common import TaskError, add_common_args, apply_threads

    parser = argparse.ArgumentParser()
    add_common_args(parser, "demo")
    assert parser.parse_args([]).threads is None  # unset: the task's preset decides
    before = torch.get_num_threads()
    try:
        apply_threads(parser.parse_args(["--threads", "1"]))
        assert torch.get_num_threads() == 1
        apply_threads(parser.parse_args(["--threads", "0"]))  # 0: leave torch's setting alone
        assert torch.get_num_threads() == 1
        with pytest.raises(TaskError, match="--threads must be >= 0"):
            apply_threads(parser.parse_args(["--threads", "-2"]))
    finally:
        torch.set_num_threads(before)


def test_bool_arg_accepts_yaml_style_values_and_rejects_others():
    import argparse

    from tasks.common import bool_arg

    assert [bool_arg(v) for v in ("true", "Yes", "1", "on", "false", "NO", "0", "off")] == [True] * 4 + [False] * 4
    with pytest.raises(argparse.ArgumentTypeError, match="expected true/false, got 'maybe'"):
        bool_arg("maybe")
