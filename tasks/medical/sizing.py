"""The `--data` default sized to the data and the machine (issue #14): the decathlon preset leaves the optimiser
steps unset and `size_to_data` gives every training case about the same number of crops seen, whatever the folder's
size, before the run directory is made (config.yaml records it; `--max-steps` overrides).

Rule: 80 steps (of `--batch-size` volumes x `--num-samples` crops) per training case on a CPU, 100 on a GPU, at least
200 and at most 2000 / 5000. 80 on a CPU since the scan sets of docs/realsets.md: at 40 (400 steps for a dozen
volumes) a structure held by 3 of 10 training volumes went to its neighbour even with crops balanced across volumes
(the preset's --crop-sampler balanced), at 80 it was learnt (docs/medical.md); a dozen volumes of 32^3 crops then
take about 25 CPU-minutes, inside the issue's 30 minutes of 2 cores.
"""
from __future__ import annotations

import argparse

__all__ = ["size_to_data"]

STEPS_PER_CASE = {"cpu": (80, 200, 2000), "gpu": (100, 200, 5000)}


def size_to_data(args: argparse.Namespace, num_train: int, gpu: bool) -> str:
    """Fill `args.max_steps` when unset; returns the line announcing the choice."""
    if args.max_steps is not None:
        return f"--max-steps {args.max_steps} as given"
    per_case, low, high = STEPS_PER_CASE["gpu" if gpu else "cpu"]
    args.max_steps = int(min(max(per_case * num_train, low), high))
    return (f"sized to the data: {num_train} training cases on {'a GPU' if gpu else 'the CPU'} -> --max-steps "
            f"{args.max_steps} ({per_case} per case; --max-steps overrides)")
