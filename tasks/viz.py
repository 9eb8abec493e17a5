"""Draw the gate maps and modulator magnitude of a FocalNet over an image or a spectrogram.

    python -m tasks.viz --model focalnet_tiny_srf --checkpoint ckpt.pth --image img.png --figure fig.png
    python -m tasks.viz --model focalnet_tiny_srf --image spec.npy --spectrogram     # (F, T) array
    python -m tasks.viz                                                              # built-in test image

Runs on the shared lifecycle: writes the figure plus `config.yaml` and `metrics.json` (shared schema: the top-1
class probability; top-5 classes and per-block map statistics beside it) to the run directory (`runs/viz/<timestamp>`
unless `--out`); the figure goes to `--figure` if given, else into the run directory.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from focalmod.viz import BlockMaps, modulation_maps, plot_modulation_maps, quantile_mask
from tasks.common import Run, Score, Summary, Task, TaskError, parse_key_values, run_main, run_task
from tasks.common.cli import KeyValues


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="focalnet_tiny_srf", help="registered name (focalmod.list_models()), 1D or 2D")
    p.add_argument("--checkpoint", type=Path, default=None, help="weights in any format focalmod.load_checkpoint reads")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size of the checkpoint (default: model's)")
    p.add_argument("--model-arg", action=KeyValues,
                   help="constructor override, repeatable (YAML values), e.g. depths=[1,1,1,1]")
    p.add_argument("--image", type=Path, default=None,
                   help="PNG/JPEG image, or .npy (F, T) spectrogram; default: a built-in synthetic test image")
    p.add_argument("--spectrogram", action="store_true", help="treat the input as a spectrogram (.npy implies it)")
    p.add_argument("--size", type=int, default=224, help="input side the image (or spectrogram) is resized to")
    p.add_argument("--stage", type=int, action="append", default=None,
                   help="stage to draw (repeatable, -1 = last; default: all)")
    p.add_argument("--all-blocks", action="store_true", help="draw every block of the chosen stages, not only the last")
    p.add_argument("--no-gates", action="store_true", help="draw only the modulator magnitude, not the gate maps")
    p.add_argument("--quantile", type=float, default=0.9, help="mask quantile reported in metrics.json (AMT method)")
    p.add_argument("--figure", type=Path, default=None,
                   help="figure path (.png); default: <run dir>/modulation_maps.png")


def check(args: argparse.Namespace) -> None:
    if args.size < 1:
        raise TaskError(f"--size must be a positive int, got {args.size}")
    if not 0.0 <= args.quantile <= 1.0:
        raise TaskError(f"--quantile must be in [0, 1], got {args.quantile}")
    if args.figure is not None and args.figure.suffix.lower() != ".png":
        raise TaskError(f"--figure: the figure is written as PNG; give a .png path, got {args.figure}")
    parse_key_values(args.model_arg, "--model-arg")
    read_input(args.image, args.size)  # one clear error before the run directory is made


def synthetic_image(size: int) -> torch.Tensor:
    """A `(3, size, size)` test picture in [0, 1]: a colour gradient with a bright disk and a dark square."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([0.3 + 0.4 * xx, 0.3 + 0.4 * yy, 0.5 - 0.2 * xx]).clone()
    disk = (xx - 0.65) ** 2 + (yy - 0.35) ** 2 < 0.04
    img[:, disk] = torch.tensor([0.95, 0.85, 0.2])[:, None]
    square = (xx > 0.15) & (xx < 0.4) & (yy > 0.55) & (yy < 0.85)
    img[:, square] = torch.tensor([0.1, 0.15, 0.5])[:, None]
    return img


def read_input(path: Path | None, size: int) -> tuple[torch.Tensor, bool]:
    """The picture as `(C, H, W)` in [0, 1] (or a spectrogram `(1, F, T)`), and whether it is a spectrogram."""
    if path is None:
        return synthetic_image(size), False
    if not path.is_file():
        raise TaskError(f"--image: file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise TaskError(f"--image: cannot read {path} as a .npy array: {err}") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise TaskError(f"--image: {path} must hold a numeric (F, T) spectrogram, got {array.dtype} {array.shape}")
        spec = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return spec[None], True
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise TaskError(f"--image: cannot read {path} as an image (PNG/JPEG/...): {err}") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), False


def prepare(picture: torch.Tensor, spectrogram: bool, model: torch.nn.Module, size: int) -> torch.Tensor:
    """Model input `(1, in_chans, *S)`: resize, channel match, ImageNet-style or per-input standardisation."""
    spatial_dims, in_chans = model.spatial_dims, model.in_chans
    picture = picture.float()
    if spatial_dims == 1:  # (F, T) -> (in_chans, size): frequency bins become the channels
        plane = picture.mean(0)[None, None]
        x = F.interpolate(plane, size=(in_chans, size), mode="bilinear", align_corners=False)[:, 0]
        return (x - x.mean()) / x.std().clamp_min(1e-6)
    x = F.interpolate(picture[None], size=(size, size), mode="bilinear", align_corners=False)
    if x.shape[1] != in_chans:
        x = x.mean(1, keepdim=True).expand(-1, in_chans, -1, -1)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if spectrogram or "mean" not in cfg or len(cfg["mean"]) != in_chans:
        return (x - x.mean()) / x.std().clamp_min(1e-6)
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    return (x - mean) / std


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    import focalmod

    overrides = parse_key_values(args.model_arg, "--model-arg")
    try:
        model = focalmod.create_model(args.model, num_classes=args.num_classes, **overrides)
    except (ValueError, TypeError) as err:
        raise TaskError(f"--model: {err}") from None
    if getattr(model, "spatial_dims", None) not in (1, 2):
        raise TaskError(f"--model: the CLI draws 1D/2D FocalNets; use focalmod.viz.modulation_maps for {args.model}")
    if args.checkpoint is not None:
        if not args.checkpoint.exists():
            raise TaskError(f"--checkpoint: file not found: {args.checkpoint}")
        from focalmod.checkpoints import load_checkpoint

        try:
            load_checkpoint(model, args.checkpoint)
        except (ValueError, RuntimeError, OSError, KeyError) as err:
            raise TaskError(f"--checkpoint: {err}") from None
    return model.eval()


def summarise(maps: list[BlockMaps], logits: torch.Tensor, quantile: float) -> dict[str, Any]:
    probs = logits.float().softmax(-1)[0]
    top = probs.topk(min(5, probs.numel()))
    blocks = []
    for m in maps:
        mask = quantile_mask(m.magnitude, quantile)
        blocks.append(
            {
                "stage": m.stage,
                "block": m.block,
                "map_size": list(m.magnitude.shape[1:]),
                "magnitude_mean": m.magnitude.mean().item(),
                "magnitude_max": m.magnitude.max().item(),
                "gate_mean_per_level": m.gates.mean(dim=[0, *range(2, m.gates.ndim)]).tolist(),
                "mask_fraction": mask.float().mean().item(),
            }
        )
    return {"top5": [{"class": int(i), "prob": float(p)} for p, i in zip(top.values, top.indices)], "blocks": blocks}


def draw(run: Run) -> Summary:
    args = run.args
    picture, is_spec = read_input(args.image, args.size)
    spectrogram = args.spectrogram or is_spec
    run.say(f"building {args.model}" + (f" from {args.checkpoint}" if args.checkpoint else " (random weights)"))
    model = build_model(args)
    x = prepare(picture, spectrogram, model, args.size)
    try:
        maps, logits = modulation_maps(model, x, stages=args.stage, all_blocks=args.all_blocks, return_output=True)
    except ValueError as err:
        raise TaskError(f"--stage: {err}") from None
    metrics = summarise(maps, logits, args.quantile)
    display = x[0] if model.spatial_dims == 1 else F.interpolate(picture[None], size=x.shape[2:], mode="bilinear")[0]
    best = metrics["top5"][0]
    title = f"{args.model}: top-1 class {best['class']} (p={best['prob']:.2f})"
    out = args.figure if args.figure is not None else run.dir / "modulation_maps.png"
    plot_modulation_maps(display[None], maps, out, spectrogram=spectrogram, title=title, show_gates=not args.no_gates)
    for block in metrics["blocks"]:
        print(
            f"stage {block['stage']} block {block['block']}: map {block['map_size']}, "
            f"|modulator| mean {block['magnitude_mean']:.3f} max {block['magnitude_max']:.3f}"
            + ("" if math.isfinite(block["magnitude_mean"]) else " (non-finite!)")
        )
    print(f"top-1 class {best['class']} (p={best['prob']:.3f}); figure: {out}; run dir: {run.dir}")
    return Summary(Score("top1_probability", best["prob"]), data=str(args.image or "built-in test image"),
                   split="viz", params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                   extras={**metrics, "figure": str(out), "model": args.model})


TASK = Task(name="viz", module="tasks.viz", doc=__doc__, add_options=add_options, run=draw, resolve=check,
            trainer=False)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Draw; returns the content of metrics.json. `argv` None: the command line."""
    return run_task(TASK, argv)


if __name__ == "__main__":
    run_main(main)
