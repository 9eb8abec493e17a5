"""A set's `--data` default over several seeds: the network and its baseline as mean +- std, and whether the network
beats the baseline by more than the seeds move (issue #29: one 40-clip fold moves by 2-3 clips with the seed alone).

    python -m benchmarks.realsets run drums runs/realsets/drums --seeds 0 1 2 -- --folds 1

Each seed is one run of the set's task CLI (`--data SET --seed S --threads 1`, plus the arguments after `--`) in
`<out>/seed<S>/`, a child process whose CPU time (user + system) is recorded; a finished seed (its metrics.json
exists) is read again, not rerun, so a stopped benchmark continues. The verdict compares the paired differences
(network - baseline, one per seed): "beats" when their mean is above their standard deviation, "loses" when below
minus it, else "level"; with one seed, the sign of the difference.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tasks.common.files import atomic_write, write_table
from tasks.common.metrics import read_metrics

__all__ = ["run_seeds", "verdict"]


def verdict(network: Sequence[float], baseline: Sequence[float]) -> str:
    """"beats" / "level" / "loses" from paired scores (one pair per seed), as the module docstring says."""
    diff = np.asarray(network, dtype=float) - np.asarray(baseline, dtype=float)
    spread = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    if diff.mean() > spread:
        return "beats"
    if diff.mean() < -spread:
        return "loses"
    return "level"


def _seed_run(task: str, data: Path, seed: int, out: Path, extra: Sequence[str]) -> tuple[dict[str, Any], float]:
    """metrics.json of one seed (run now unless it exists) and the child's CPU seconds (0 when read again)."""
    if (out / "metrics.json").is_file():
        return read_metrics(out / "metrics.json"), 0.0
    cmd = [sys.executable, "-m", task, "--data", str(data), "--seed", str(seed), "--threads", "1", "--out", str(out),
           "--no-progress", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.log", "w") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}); see {out.parent / (out.name + '.log')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return read_metrics(out / "metrics.json"), cpu


def run_seeds(name: str, task: str, data: Path, out: Path, seeds: Sequence[int], extra: Sequence[str] = ()
              ) -> dict[str, Any]:
    """Run (or read) every seed, write `<out>/seeds.{csv,md}` and `<out>/seeds.json`; returns the summary."""
    rows, network, baseline, metric = [], [], [], None
    for seed in seeds:
        start = time.perf_counter()
        metrics, cpu = _seed_run(task, data, seed, out / f"seed{seed}", extra)
        metric, value, base = metrics["metric"]["name"], metrics["metric"]["value"], (metrics["baseline"] or {}).get(
            "value")
        rows.append({"seed": seed, metric: value, "baseline": base,
                     "baseline_name": (metrics["baseline"] or {}).get("name"), "cpu_seconds": round(cpu, 1),
                     "wall_seconds": round(time.perf_counter() - start, 1)})
        network.append(value)
        baseline.append(base)
        print(f"{name} seed {seed}: {metric} {value} vs baseline {base}", flush=True)
    paired = [(n, b) for n, b in zip(network, baseline) if n is not None and b is not None]
    summary = {"set": name, "task": task, "seeds": list(seeds), "metric": metric,
               "network_mean": float(np.mean([n for n in network if n is not None])),
               "network_std": float(np.std([n for n in network if n is not None], ddof=1)) if len(network) > 1 else 0.0,
               "baseline_mean": float(np.mean([b for _, b in paired])) if paired else None,
               "baseline_std": float(np.std([b for _, b in paired], ddof=1)) if len(paired) > 1 else 0.0,
               "verdict": verdict(*zip(*paired)) if paired else "no baseline", "extra_args": list(extra)}
    notes = [f"{name}: network {summary['network_mean']:.4f} +- {summary['network_std']:.4f}, baseline "
             f"{summary['baseline_mean']} +- {summary['baseline_std']:.4f} over seeds {list(seeds)}: "
             f"{summary['verdict']} (paired differences: mean against one standard deviation)"]
    write_table(rows, out, "seeds", title=f"{name}: the --data default over seeds", notes=notes)
    atomic_write(out / "seeds.json", json.dumps(summary, indent=2) + "\n")
    print(notes[0], flush=True)
    return summary
