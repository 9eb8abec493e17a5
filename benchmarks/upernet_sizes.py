"""Parameters and GMACs of the official-size UPerNet models beside the numbers their papers publish.

    python -m benchmarks.upernet_sizes                        # every row, GMACs at 512x2048 (minutes on a CPU)
    python -m benchmarks.upernet_sizes --rows focalnet_tiny_srf swin_tiny --size 512 512
    python -m benchmarks.upernet_sizes --publish              # also copy results.md/.csv to benchmarks/results/cpu/

Every model is the same focalmod `UPerNet` (UPerHead 512 channels, FCN auxiliary head 256 on stage 3, one LayerNorm
per backbone output, 150 classes) on the paper's backbone: focalmod's FocalNet (`upernet_focalnet_*`, focal window
9), HorNet, and timm's Swin and ConvNeXt (``features_only``). The published columns are the READMEs' (FocalNet,
Swin-Transformer-Semantic-Segmentation, ConvNeXt/semantic_segmentation, HorNet/semantic_segmentation): mmseg's
``get_flops`` at 512x2048, which counts convs and linears (and norms, activations, pooling, upsampling) but not
``torch.matmul``, so window attention's two matmuls are missing from Swin's published number. Ours: fvcore, one
multiply-add = 1, plus attention's matmuls (`benchmarks.flops`); element-wise products not counted.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

import focalmod
from focalmod.models.upernet_variants import PUBLISHED, build_upernet
from tasks.common import make_run_dir, run_main, save_config, write_metrics
from tasks.common.files import write_table

from ._timing import environment, set_threads
from .flops import CONVENTION, count_macs
from .measure import REPO_ROOT


@dataclass(frozen=True)
class SizeRow:
    """A compared model: how to build it and the published (mIoU ss / ms, params M, GFLOPs at 512x2048)."""

    label: str
    backbone: str
    kwargs: dict[str, Any]
    miou_ss: float
    miou_ms: float
    params_m: float
    gflops: float
    source: str


_SWIN = dict(strict_img_size=False, drop_path_rate=0.3)
ROWS = {
    **{name.removeprefix("upernet_"): SizeRow(name.removeprefix("upernet_"), name, {}, p.miou_ss, p.miou_ms,
                                             p.params_m, p.gflops_512x2048, "microsoft/FocalNet README")
       for name, p in PUBLISHED.items()},
    "swin_tiny": SizeRow("swin_tiny", "swin_tiny_patch4_window7_224", dict(img_size=512, **_SWIN), 44.51, 45.81,
                         60, 945, "Swin-Transformer-Semantic-Segmentation README"),
    "swin_small": SizeRow("swin_small", "swin_small_patch4_window7_224", dict(img_size=512, **_SWIN), 47.64, 49.47,
                          81, 1038, "Swin-Transformer-Semantic-Segmentation README"),
    "convnext_tiny": SizeRow("convnext_tiny", "convnext_tiny", dict(drop_path_rate=0.4), 46.0, 46.7, 60, 939,
                             "ConvNeXt semantic_segmentation README"),
    "convnext_small": SizeRow("convnext_small", "convnext_small", dict(drop_path_rate=0.3), 48.7, 49.6, 82, 1027,
                              "ConvNeXt semantic_segmentation README"),
    "hornet_tiny_7x7": SizeRow("hornet_tiny_7x7", "hornet_tiny_7x7", {}, 48.1, 48.9, 52, 926,
                               "HorNet semantic_segmentation README"),
    # the segmentation config sizes the global filters for 512 crops (h, w = 24, 13 and 12, 7; classification 14, 8
    # and 7, 4)
    "hornet_tiny_gf": SizeRow("hornet_tiny_gf", "hornet_tiny_gf", dict(gf_sizes=[None, None, (24, 13), (12, 7)]),
                              49.2, 49.3, 55, 924, "HorNet semantic_segmentation README"),
}


def build(row: SizeRow) -> nn.Module:
    if row.backbone.startswith("upernet_"):
        return focalmod.create_model(row.backbone)
    return build_upernet(row.backbone, num_classes=150, **row.kwargs)


def measure(row: SizeRow, size: tuple[int, int]) -> dict[str, Any]:
    model = build(row).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    start = time.perf_counter()
    macs = count_macs(model, torch.zeros(1, 3, *size))
    return {
        "model": f"UPerNet + {row.label}", "params_M": round(params, 2), "published_params_M": row.params_m,
        "params_vs_published": f"{100 * (params / row.params_m - 1):+.1f} %",
        f"GMACs@{size[0]}x{size[1]}": round(macs.gmacs, 1), "published_GFLOPs@512x2048": row.gflops,
        "published_mIoU_ss/ms": f"{row.miou_ss} / {row.miou_ms}", "source": row.source,
        "count_s": round(time.perf_counter() - start, 1),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.upernet_sizes", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS), help="models to count")
    p.add_argument("--size", type=int, nargs=2, default=(512, 2048), metavar=("H", "W"), help="input of the MAC count")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, help="run directory (default: runs/bench/<timestamp>)")
    p.add_argument("--publish", action="store_true",
                   help="copy results to benchmarks/results/cpu/upernet_sizes.{md,csv}")
    return p


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    run_dir = make_run_dir("bench", args.out)
    save_config(run_dir, vars(args))
    rows = []
    for key in args.rows:
        rows.append(measure(ROWS[key], tuple(args.size)))
        print("  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    env = environment()
    notes = [
        "Same UPerNet (focalmod) on every backbone; 150 classes. " + CONVENTION,
        "Published: the READMEs' mmseg get_flops at 512x2048 (convs, linears, norms, activations, pooling and "
        "upsampling, no torch.matmul: Swin's attention matmuls are not in its published number).",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "Command: python -m benchmarks.upernet_sizes " + " ".join(argv if argv is not None else sys.argv[1:]),
    ]
    write_table(rows, run_dir, "results", title="UPerNet: parameters and GMACs beside the published", notes=notes)
    write_metrics(run_dir, {"rows": rows, "environment": env})
    if args.publish:
        target = REPO_ROOT / "benchmarks" / "results" / "cpu"
        for suffix in ("md", "csv"):
            shutil.copyfile(run_dir / f"results.{suffix}", target / f"upernet_sizes.{suffix}")
    print((run_dir / "results.md").read_text(), flush=True)
    return rows


if __name__ == "__main__":
    run_main(main)
