"""Smoke test of the ours-vs-timm speed benchmark (one tiny configuration, one repeat) and its timing helper."""
from __future__ import annotations

import csv
import json

import pytest

from benchmarks._timing import environment, interleave, median
from benchmarks.focalnet_vs_timm import main
from tasks.common import run_main


def test_interleave_alternates_order_and_drops_warmup():
    calls = []
    times = interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(v) for v in times.values()] == [3, 3] and all(t >= 0 for v in times.values() for t in v)
    assert median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError, match="timer must be one of"):
        interleave({"a": lambda: None}, timer="gpu")
    env = environment()
    assert {"cpu", "torch", "timm", "torch_threads"} <= set(env)


def test_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["--models", "tiny_srf", "--img-size", "32", "--repeats", "1", "--warmup", "0", "--threads", "2"]
    rows = main([*args, "--modes", "infer_b1,train", "--train-batch", "2", "--layouts", "nchw", "--out", str(out)])
    assert [(r.mode, r.batch) for r in rows] == [("infer_b1", 1), ("train", 2)]
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 2 and all(float(r["ratio"]) > 0 for r in table)
    report = (out / "results.md").read_text()
    assert "| tiny_srf | train | 2 | nchw | off |" in report and "timm:" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert float(metrics["environment"]["max_abs_logit_diff"].split()[-1]) < 1e-4
    assert "ratio" in capsys.readouterr().out


def test_benchmark_bad_option_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, ["--layouts", "nhwc", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--layouts: unknown value(s) ['nhwc']" in capsys.readouterr().err


def test_benchmark_times_the_optimized_fast_path(tmp_path):
    args = ["--models", "tiny_srf", "--img-size", "32", "--repeats", "1", "--warmup", "0", "--modes", "infer_b1,train",
            "--train-batch", "2", "--layouts", "nchw", "--fast-path", "--out", str(tmp_path)]
    rows = main(args)
    assert len(rows) == 2 and all(r.ratio > 0 for r in rows)
    assert "- ours: focalmod.optimize fast path" in (tmp_path / "results.md").read_text()


def test_targets_table_runs_side_by_side(tmp_path):
    """`--targets` (issue 16's table): every ratio present, saved bytes counted, no timing asserted."""
    import math

    from benchmarks.targets import TARGETS

    args = ["--targets", "--models", "tiny_srf", "--img-size", "32", "--batch", "2", "--repeats", "1", "--warmup", "0",
            "--layouts", "nchw", "--no-compile", "--agree-samples", "4", "--threads", "1", "--out", str(tmp_path)]
    (row,) = main(args)
    assert 0 <= row.bf16_top1_agreement <= 1 and row.bf16_path == "ours_bf16"
    assert row.act_bytes_vs_timm < 0.8  # recompute saves fewer bytes than timm's FocalNet (same weights)
    assert all(v > 0 for v in row.act_bytes.values()) and all(v > 0 for v in row.peak_bytes.values())
    assert math.isnan(row.compiled_vs_timm_compiled)  # --no-compile: reported as n/a, not invented
    text = (tmp_path / "targets.md").read_text()
    assert all(f"| {column} |" in text for column in TARGETS) and "| compiled_vs_timm_compiled | nan |" in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["targets"][0]["model"] == "tiny_srf" and "convnext/nchw" in metrics["targets"][0]["img_s"]
