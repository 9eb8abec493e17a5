"""benchmarks.realsets run: a set's default over seeds, mean +- std and the verdict from the paired differences."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.realsets.seeds import run_seeds, verdict


def test_verdict_compares_the_mean_paired_difference_with_its_spread():
    assert verdict([0.80, 0.82, 0.81], [0.70, 0.71, 0.72]) == "beats"
    assert verdict([0.70, 0.71, 0.72], [0.80, 0.82, 0.81]) == "loses"
    assert verdict([0.80, 0.70, 0.90], [0.78, 0.79, 0.80]) == "level", "a mean gain inside the seeds' spread"
    assert verdict([0.9], [0.8]) == "beats" and verdict([0.8], [0.8]) == "level"


def test_run_seeds_trains_each_seed_once_and_tabulates(tmp_path: Path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2)):
        for c, name in enumerate(("a", "b")):
            (data / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
                img[c * 8 : c * 8 + 8] = 255
                Image.fromarray(img).save(data / split / name / f"{i}.png")
    extra = ["--model", "focalnet_digits", "--input-size", "16", "--crop-pct", "1.0", "--batch-size", "4",
             "--epochs", "1", "--aa", "none", "--reprob", "0", "--mixup", "0", "--cutmix", "0", "--warmup-epochs",
             "0", "--accelerator", "cpu", "--devices", "1", "--explain", "0"]
    summary = run_seeds("tiny", "tasks.imagenet.train", data, tmp_path / "out", [0, 1], extra)
    seeds = json.loads((tmp_path / "out" / "seeds.json").read_text())
    assert seeds == summary and summary["seeds"] == [0, 1] and summary["metric"] == "top1"
    assert summary["verdict"] in {"beats", "level", "loses"} and summary["baseline_mean"] == 1.0
    runs = [json.loads((tmp_path / "out" / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert summary["network_mean"] == np.mean([r["metric"]["value"] for r in runs])
    assert "--seed 1" in runs[1]["command"] and "tiny:" in (tmp_path / "out" / "seeds.md").read_text()
    written = (tmp_path / "out" / "seed0" / "metrics.json").stat().st_mtime_ns
    again = run_seeds("tiny", "tasks.imagenet.train", data, tmp_path / "out", [0, 1], extra)  # read, not rerun
    assert again["network_mean"] == summary["network_mean"]
    assert (tmp_path / "out" / "seed0" / "metrics.json").stat().st_mtime_ns == written
