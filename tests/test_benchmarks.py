"""Benchmark harness: rows and CSV columns, MAC counting, slope fits, OOM/timeout marking, the report CLI."""
from __future__ import annotations

import csv
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import accuracy, measure, plots, report, scaling
from benchmarks.flops import count_macs
from focalmod.interpret import METRICS

FAST = dict(batch_size=2, img_size=32, warmup=0, repeats=1)
TINY_FOCALNET = measure.ModelRequest("focalmod_focalnet_tiny_srf", {"embed_dim": 8, "depths": (1, 1, 1, 1)})
RESNET18_GMACS_224 = 1.8186  # fvcore, timm resnet18 at 224x224 (fc: 512*1000 MACs)


def test_bench_rows_csv_columns_and_values(tmp_path):
    s = measure.Settings(**FAST, memory=False)
    rows = [measure.bench_model(TINY_FOCALNET, s), measure.bench_model(measure.ModelRequest("resnet18"), s)]
    path = report.write_csv(tmp_path / "benchmark.csv", rows, measure.BENCH_COLUMNS)
    with open(path) as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == measure.BENCH_COLUMNS
    assert measure.BENCH_COLUMNS[:7] == ["model", "infer_img_size", "infer_samples_per_sec", "infer_step_time",
                                        "infer_batch_size", "param_count", "infer_gmacs"]
    for row, req in zip(read, (TINY_FOCALNET, measure.ModelRequest("resnet18"))):
        model, _ = measure.build_model(req, 32)
        assert row["status"] == "ok"
        assert float(row["param_count"]) == pytest.approx(measure.count_params(model) / 1e6, abs=1e-3)
        assert float(row["infer_gmacs"]) > 0
        assert float(row["infer_samples_per_sec"]) == pytest.approx(2 / (float(row["infer_step_time"]) / 1e3), 0.01)
        assert float(row["train_samples_per_sec"]) > 0 and float(row["infer_latency_ms"]) > 0
        assert row["infer_img_size"] == "32" and row["infer_batch_size"] == "2"
    assert read[0]["source"] == "focalmod" and read[1]["source"] == "timm"
    # every conv/linear of resnet18 scales with area exactly from 224 to 32 px (final map 7x7 -> 1x1)
    fc = 512 * 1000 / 1e9
    assert float(read[1]["infer_gmacs"]) == pytest.approx((RESNET18_GMACS_224 - fc) / 49 + fc, abs=2e-3)
    assert float(read[0]["infer_elementwise_gmuls"]) > 0  # focal modulation gating is counted apart


def test_memory_child_reports_rss():
    s = measure.Settings(**FAST, train=False)
    out = measure.child_memory(TINY_FOCALNET, s)
    assert out["status"] == "ok"
    assert 50 < out["mem_base_mib"] <= out["infer_peak_mem_mib"] < 8192
    bad = measure.child_memory(measure.ModelRequest("no_such_model_xyz"), s)
    assert bad["status"].startswith("error") and "no_such_model_xyz" in bad["status"]


def test_macs_count_sdpa_and_elementwise_apart():
    class Toy(nn.Module):
        def forward(self, x):
            q = x.reshape(1, 2, 10, 8)
            return F.scaled_dot_product_attention(q, q, q) * q * 2.0  # one tensor product, one scalar product

    c = count_macs(Toy(), torch.randn(1, 160))
    assert c.macs == 2 * 10 * 10 * (8 + 8)
    assert c.elementwise_muls == 160


def test_slope_fit_quadratic_and_linear():
    n = [256, 1024, 4096, 16384]
    assert scaling.fit_loglog(n, [3e-9 * t**2 for t in n]) == pytest.approx(2.0, abs=1e-6)
    assert scaling.fit_loglog(n, [5e-6 * t + 1e-12 for t in n]) == pytest.approx(1.0, abs=1e-3)
    rows = [dict(kind="primitive", name="attn", spatial_dims=1, size=t, tokens=t, time_ms=1e-4 * t**2,
                 gmacs=1e-6 * t**2, status="ok") for t in n]
    rows.append(dict(kind="primitive", name="attn", spatial_dims=1, size=65536, tokens=65536, status="oom"))
    (fit,) = scaling.slopes(rows)
    assert fit["slope_time"] == pytest.approx(2.0) and fit["slope_gmacs"] == pytest.approx(2.0)
    assert fit["points"] == 4 and fit["stopped"] == "oom at 65536"


class _Fake(nn.Module):
    """Sleeps `per_token` seconds per token; raises OOM from `oom_at` tokens."""

    def __init__(self, per_token: float, oom_at: int | None = None) -> None:
        super().__init__()
        self.per_token, self.oom_at = per_token, oom_at

    def forward(self, x):
        if self.oom_at is not None and x.shape[-1] >= self.oom_at:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB (simulated)")
        time.sleep(self.per_token * x.shape[-1])
        return x


def _series(sizes, **kw):
    return scaling.Series("primitive", "fake", 1, sizes, lambda n: (_Fake(**kw), (1, n)), count_macs=False)


def test_sweep_marks_oom_and_skips_larger():
    s = measure.Settings(**FAST)
    rows = scaling.run_series(_series([1, 2, 4, 8], per_token=0.0, oom_at=4), s, time_limit=5.0)
    assert [r["status"] for r in rows] == ["ok", "ok", "oom", "skipped (oom at 4)"]
    assert rows[0]["time_ms"] >= 0 and "time_ms" not in rows[2]


def test_sweep_marks_timeouts_measured_and_predicted():
    s = measure.Settings(**FAST)
    rows = scaling.run_series(_series([1, 2, 32], per_token=0.002), s, time_limit=0.05)
    assert [r["status"] for r in rows[:2]] == ["ok", "ok"]
    assert rows[2]["status"].startswith("timeout (predicted")  # >= 64 ms extrapolated > 50 ms: not run
    assert "time_ms" not in rows[2]
    rows = scaling.run_series(_series([20], per_token=0.004), s, time_limit=0.03)
    assert rows[0]["status"] == "timeout"  # the probe call itself took 80 ms


def test_window_attention_equals_global_within_one_window():
    torch.manual_seed(0)
    w, g = scaling.WindowAttention(32, window=3), scaling.GlobalAttention(32)
    g.attn.load_state_dict(w.attn.state_dict())
    x = torch.randn(2, 32, 5, 7)  # padded to 6x9: windows start at 0 and 3 in each dimension
    y = w(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :, 0:3, 3:6], g(x[:, :, 0:3, 3:6]), atol=1e-5, rtol=0)  # interior window
    assert not torch.allclose(y[:, :, 0:3, 0:6], g(x[:, :, 0:3, 0:6]), atol=1e-3)  # two windows != one


def test_report_cli_writes_csv_markdown_and_publishes(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(report, "FULL_SWEEP", ({2: [4, 8]}, {}, {}))
    out = tmp_path / "run"
    path = report.run(["--models", "resnet18", "--device", "cpu", "--img-size", "32", "--batch-size", "2",
                       "--warmup", "0", "--repeats", "1", "--no-memory", "--no-accuracy", "--time-limit", "5",
                       "--threads", "1", "--out", str(out), "--publish"])
    text = path.read_text()
    for field in ("**torch**", "**timm**", "**cpu**", "**threads**: 1", "**FLOP convention**", "fp32 nchw eager",
                  "median of 1 calls after 0 warm-up", "| resnet18 | timm | 32 |", "## Scaling", "slope time"):
        assert field in text, field
    assert {p.name for p in (tmp_path / "results" / "cpu").iterdir()} >= {
        "report.md", "benchmark.csv", "scaling.csv", "scaling_slopes.csv", "throughput.png", "scaling_primitives.png"}
    with open(out / "scaling.csv") as fh:
        sweep = list(csv.DictReader(fh))
    assert {r["name"] for r in sweep} == set(scaling.PRIMITIVES) and all(r["status"] == "ok" for r in sweep)


def test_report_resume_reuses_recorded_measurements_and_redoes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "FULL_SWEEP", ({2: [4, 8]}, {}, {}))
    out = tmp_path / "run"
    common = ["--models", "resnet18", "--device", "cpu", "--img-size", "32", "--batch-size", "2", "--warmup", "0",
              "--no-memory", "--no-accuracy", "--time-limit", "5", "--threads", "1"]
    argv = [*common, "--repeats", "1"]
    report.run([*argv, "--out", str(out)])
    log = out / "progress.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 1 + len(scaling.PRIMITIVES)  # the model + one series per primitive
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # a crash while writing the last line

    calls = {"model": 0, "sweep": 0}
    real_bench, real_series = measure.bench_model, scaling.run_series

    def count(kind, fn):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(measure, "bench_model", count("model", real_bench))
    monkeypatch.setattr(scaling, "run_series", count("sweep", real_series))
    text = report.run([*argv, "--resume", str(out)]).read_text()
    assert calls == {"model": 0, "sweep": 1}  # only the series whose line was cut is measured again
    assert f"{len(lines) - 1} measurements reused from progress.jsonl, which took" in text
    assert "| resnet18 | timm | 32 |" in text
    report.run([*common, "--repeats", "2", "--resume", str(out)])  # other settings: everything re-measured
    assert calls == {"model": 1, "sweep": 1 + len(scaling.PRIMITIVES)}


def test_report_resume_needs_a_report_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--device", "cpu", "--resume", str(tmp_path)])
    assert exc.value.code == 2 and "has no progress.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    (["--device", "cpu", "--amp", "--dtype", "float32"], "--amp needs --dtype bfloat16 or float16"),
    (["--device", "cpu", "--batch-size", "0"], "batch_size must be >= 1"),
])
def test_report_bad_options_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        report.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_plots_written_with_failure_marks(tmp_path):
    rows = [dict(kind="model", name="m", spatial_dims=2, size=s, tokens=s * s, time_ms=0.01 * s, peak_mem_mib=s,
                 status="ok") for s in (112, 224)]
    rows.append(dict(kind="model", name="m", spatial_dims=2, size=448, tokens=448 * 448, status="oom"))
    fits = scaling.slopes(rows)
    for value in ("time_ms", "peak_mem_mib"):
        path = plots.scaling_plot(rows, fits, "model", tmp_path / f"{value}.png", value=value)
        assert path.stat().st_size > 1000
    assert plots.scaling_plot(rows, fits, "primitive", tmp_path / "none.png") is None  # no such rows: no file
    bars = [dict(model="a", source="timm", infer_samples_per_sec=3.0, infer_batch_size=2)]
    assert plots.throughput_plot(bars, tmp_path / "bars.png").stat().st_size > 1000


FAKE_TASK = '''
import argparse, pathlib, sys
from tasks.common.metrics import Score, Summary, build_metrics
from tasks.common.rundir import write_metrics
p = argparse.ArgumentParser()
p.add_argument("--model"); p.add_argument("--epochs", type=int); p.add_argument("--out"); p.add_argument("--seed")
a = p.parse_args()
if a.model == "bad":
    sys.exit("error: --model bad is not supported")
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)
if a.model == "old":  # a metrics.json from before the shared schema
    (out / "metrics.json").write_text('{"top1": 0.5}')
    sys.exit(0)
score = {"good": 0.5, "better": 0.75}[a.model] * a.epochs
explained = {"modulator": {"fid_in": 0.75, "deletion_auc": 0.25}} if a.model == "better" else None
summary = Summary(Score("val/top1", score), data="fake data", split="val", params_m=2.5, extras={"epochs": a.epochs},
                  interpretability=explained)
write_metrics(out, build_metrics(summary, "fake", None, {"wall_seconds": 0.0}, "fake_task_cli", None))
'''


def test_accuracy_runs_task_cli_and_reads_metrics(tmp_path, monkeypatch):
    (tmp_path / "fake_task_cli.py").write_text(FAKE_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    fake = accuracy.AccuracyTask("fake", "fake_task_cli", "fake data",
                                 accuracy._models("good", "better", "bad", "old"), ("--epochs", 1, 5))
    missing = accuracy.AccuracyTask("gone", "no_such_task_module_xyz", "none", {}, ("--epochs", 1, 5))
    monkeypatch.setattr(accuracy, "TASKS", {"fake": fake, "gone": missing})
    rows = accuracy.run_accuracy(["fake", "gone"], tmp_path / "out", quick=False, timeout_s=60)
    got = [(r["model"], r.get("score"), r["status"]) for r in rows[:2]]
    assert got == [("good", 2.5, "ok"), ("better", 3.75, "ok")]
    assert rows[0]["budget"] == "--epochs 5" and rows[0]["metric"] == "val/top1" and rows[0]["params_M"] == 2.5
    assert rows[2]["status"] == "error: error: --model bad is not supported"
    assert rows[3]["status"].startswith("error: ") and "missing key(s) schema, task" in rows[3]["status"]
    assert rows[4]["model"] == "all" and rows[4]["status"] == "n/a (task not available)"
    # The runs' explanation scores become the report's interpretability table (method x metric per task).
    table = accuracy.interpretability_rows(rows)
    assert table == [dict(task="fake", model="better", method="modulator",
                          **{k: {"fid_in": 0.75, "deletion_auc": 0.25}.get(k) for k in METRICS})]
    section = "\n".join(report.interpretability_section(rows))
    assert "## Interpretability" in section and "| better | modulator | 0.75 |" in section
    assert report.interpretability_section(rows[:1]) == []


def test_accuracy_resume_keeps_finished_runs_and_retries_failed_ones(tmp_path, monkeypatch):
    from benchmarks.progress import Progress

    (tmp_path / "fake_task_cli.py").write_text(FAKE_TASK)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    fake = accuracy.AccuracyTask("fake", "fake_task_cli", "fake data", accuracy._models("good", "bad"),
                                 ("--epochs", 1, 5))
    monkeypatch.setattr(accuracy, "TASKS", {"fake": fake})
    monkeypatch.setattr(accuracy, "task_available", lambda module: True)
    out = tmp_path / "out"
    first = accuracy.run_accuracy(["fake"], out, quick=False, timeout_s=60, progress=Progress(out, resume=False))
    assert [r["status"] for r in first] == ["ok", "error: error: --model bad is not supported"]
    (tmp_path / "fake_task_cli.py").unlink()  # a rerun of any model would now fail differently
    again = accuracy.run_accuracy(["fake"], out, quick=False, timeout_s=60, progress=Progress(out, resume=True))
    assert again[0] == first[0]  # reused, not rerun
    assert again[1]["status"].startswith("error") and "No module named fake_task_cli" in again[1]["status"]
    fresh = accuracy.run_accuracy(["fake"], out, quick=False, timeout_s=60, progress=Progress(out, resume=False))
    assert fresh[0]["status"].startswith("error")  # resume=False starts over


def test_cpu_fastpath_compares_the_plain_model_with_an_optimized_copy(monkeypatch):
    import focalmod
    from benchmarks import cpu_fastpath
    from focalmod.layers import _cpu_fastpath as fp

    if not fp.HAS_MKLDNN_FUSED:
        pytest.skip("this torch build has no oneDNN fused CPU ops")
    switched, original = [], focalmod.optimize

    def optimize(model, *args, **kwargs):
        switched.append((original(model, *args, **kwargs), kwargs["inference"]))
        return model

    monkeypatch.setattr(cpu_fastpath.focalmod, "optimize", optimize)
    results = cpu_fastpath.main(["--img-size", "32", "--batch-size", "1", "--repeats", "1", "--warmup", "0"])
    assert set(results) == {"inference", "train"} and all(f > 0 and p > 0 for f, p in results.values())
    assert [inference for _, inference in switched] == [True, False]
    for model, inference in switched:  # the fast side runs the fast modules, in the matching mode
        assert {m.fast_autograd for m in model.modules() if isinstance(m, fp._FastPath)} == {not inference}


@pytest.mark.slow
def test_shapes_accuracy_rows_build_every_backbone(tmp_path, monkeypatch):
    """The opt-in detection comparison: each backbone's arguments reach tasks.coco.train and give a bbox AP50 row
    (1 epoch on 8 images here; the real budget is 24 epochs on 400)."""
    import dataclasses

    tiny = ("--synthetic-train", "8", "--synthetic-val", "4", "--synthetic-size", "64", "--min-size", "64",
            "--max-size", "64", "--batch-size", "4", "--warmup-steps", "1", "--accelerator", "cpu", "--devices", "1")
    shapes = dataclasses.replace(accuracy.TASKS["shapes"], extra_args=(*accuracy.TASKS["shapes"].extra_args, *tiny))
    monkeypatch.setattr(accuracy, "TASKS", {"shapes": shapes})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rows = accuracy.run_accuracy(["shapes"], tmp_path, quick=True, timeout_s=300, budget=1)
    assert [r["model"] for r in rows] == ["focalnet", "hornet", "convnext", "swin"]
    assert all(r["status"] == "ok" and r["metric"] == "bbox/AP50" and 0 <= r["score"] <= 1 for r in rows), rows
    assert len({r["params_M"] for r in rows}) == 4  # four different backbones were built


def test_report_targets_section_passes_the_report_settings(tmp_path, monkeypatch):
    """`report --targets`: runs `focalnet_vs_timm --targets` with the report's device/batch/threads/timer and embeds
    its table (the measurement itself is exercised in test_focalnet_vs_timm.py)."""
    from benchmarks import focalnet_vs_timm, targets

    calls = []
    row = targets.TargetRow("tiny_srf", *([1.0] * 6), "ours_bf16", 0.5, 0.7, 0.9, *([1.0] * 4),
                            img_s={}, act_bytes={}, peak_bytes={}, layouts={})
    monkeypatch.setattr(focalnet_vs_timm, "main", lambda argv: calls.append(argv) or [row])
    path = report.run(["--models", "resnet18", "--device", "cpu", "--img-size", "32", "--batch-size", "2",
                       "--warmup", "0", "--repeats", "1", "--no-memory", "--no-accuracy", "--no-sweep", "--threads",
                       "1", "--timer", "cpu", "--targets", "--out", str(tmp_path)])
    (argv,) = calls
    assert argv[:3] == ["--targets", "--models", "tiny_srf"]
    for option, value in (("--batch", "2"), ("--threads", "1"), ("--timer", "cpu"), ("--device", "cpu")):
        assert argv[argv.index(option) + 1] == value
    text = path.read_text()
    assert "## Performance targets (issue 16)" in text and "| bf16_top1_agreement | 0.500 | >= 0.99 | no" in text
