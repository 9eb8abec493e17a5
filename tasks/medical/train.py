"""2D/3D medical segmentation with Focal-UNet, MONAI UNet or MONAI SwinUNETR: `python -m tasks.medical.train`.

    python -m tasks.medical.train                                   # embedded default: synthetic 3D volumes
    python -m tasks.medical.train --compare                         # the three networks, results.md / results.csv
    python -m tasks.medical.train --data /data/Task09_Spleen --roi-size 96 --pixdim 1.5 1.5 2.0 \\
        --intensity range --a-min -57 --a-max 164

Reads a Medical Segmentation Decathlon folder (`--data`: dataset.json, imagesTr/, labelsTr/, NIfTI) through MONAI
transforms, trains with DiceCE loss under a fixed step budget, validates with sliding-window inference (per-class
Dice and HD95), and writes the validation predictions back as NIfTI with each input's affine. Without `--data` it
first writes a small noisy synthetic Decathlon set (monai `create_test_image_3d`/`2d`) into the run directory.
`--compare` trains all three networks on the same data, budget and metrics (one subprocess each, so the CPU peak
memory is per model) and writes results.md / results.csv. Unset data options take presets/synthetic.yaml without
--data and presets/decathlon.yaml with it.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import monai
import nibabel as nib
import numpy as np
import torch
from monai.data import CacheDataset, DataLoader

from tasks.common import Run, Score, Summary, Task, TaskError, run_main, run_task, save_config
from tasks.common.baseline import compare_with_baseline
from tasks.common.files import write_table
from tasks.common.launch import is_rank_zero
from tasks.common.lifecycle import build_parser as task_parser
from tasks.common.measure import StepTimer, interleaved_step_times, peak_memory_mb, reset_peak_memory

from .baseline import BASELINE_NAME, WINDOW_NAME, network_view, scan_baseline
from .data import CROP_SAMPLERS, build_transforms, check_case, data_config, read_decathlon, split_cases
from .module import MODELS, SegmentationModule, build_model, size_divisor
from .predict import predict_files
from .sampling import training_loader
from .sizing import size_to_data
from .synthetic import write_synthetic_decathlon


def add_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, default=None,
                   help="Decathlon task folder (dataset.json, imagesTr, labelsTr); omitted: write the synthetic set")
    d.add_argument("--spatial-dims", type=int, choices=(2, 3), default=3,
                   help="2 for 2D images (H, W), 3 for volumes; the files must match")
    d.add_argument("--val-frac", type=float, default=0.2, help="fraction of the training list held out")
    d.add_argument("--roi-size", type=int, nargs="+", default=None,
                   help="training crop and sliding-window size, one int per axis or one for all; must be a "
                        "multiple of the network's size divisor")
    d.add_argument("--pixdim", type=float, nargs="+", default=None,
                   help="resample to this voxel spacing (Spacingd); unset: keep the files' spacing")
    d.add_argument("--orientation", default="RAS", help="Orientationd axis codes, or 'none' to keep the files'")
    d.add_argument("--intensity", choices=("range", "zscore"), default=None,
                   help="range: ScaleIntensityRanged(a_min, a_max -> 0, 1, clip) e.g. a CT window; zscore: "
                        "NormalizeIntensityd on nonzero voxels (MRI)")
    d.add_argument("--a-min", type=float, default=None, help="intensity window low end for --intensity range")
    d.add_argument("--a-max", type=float, default=None, help="intensity window high end for --intensity range")
    d.add_argument("--no-crop-foreground", action="store_true", help="skip CropForegroundd")
    d.add_argument("--crop-sampler", choices=CROP_SAMPLERS, default="posneg",
                   help="training crop centres: posneg = RandCropByPosNegLabeld (--pos foreground : --neg background), "
                        "classes = RandCropByLabelClassesd with every label value equally often within each volume, "
                        "balanced = every label value equally often across the training volumes (a "
                        "WeightedRandomSampler over (volume, label value) pairs; tasks/medical/sampling.py)")
    d.add_argument("--num-samples", type=int, default=2, help="random crops per volume")
    d.add_argument("--pos", type=float, default=1.0, help="RandCropByPosNegLabeld weight of foreground centres")
    d.add_argument("--neg", type=float, default=1.0, help="RandCropByPosNegLabeld weight of background centres")
    d.add_argument("--flip-prob", type=float, default=0.5, help="RandFlipd probability per axis")
    d.add_argument("--flip-axes", type=int, nargs="*", default=None,
                   help="spatial axes RandFlipd may mirror (after --orientation; 0 = left-right in RAS); "
                        "unset: every axis, none given: no flips")
    d.add_argument("--rot90-prob", type=float, default=0.2, help="RandRotate90d probability (square crops only)")
    d.add_argument("--shift-intensity-prob", type=float, default=0.3, help="RandShiftIntensityd probability")
    d.add_argument("--cache-rate", type=float, default=1.0, help="CacheDataset fraction of cases cached")
    s = p.add_argument_group("synthetic default (no --data)")
    s.add_argument("--synthetic-cases", type=int, default=20, help="labelled cases written (plus 2 test images)")
    s.add_argument("--synthetic-size", type=int, default=None, help="side of each case")
    s.add_argument("--synthetic-classes", type=int, default=2, help="foreground classes")
    s.add_argument("--synthetic-noise", type=float, default=0.5, help="MONAI uniform noise_max")
    s.add_argument("--synthetic-std", type=float, default=0.2, help="added Gaussian noise std (image range 0..1)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODELS, default="focal_unet", help="network to train")
    m.add_argument("--compare", action="store_true", help="train all three networks and write results.md/.csv")
    m.add_argument("--feature-size", type=int, default=12,
                   help="first-level channels of every network (SwinUNETR rounds up to a multiple of 12)")
    m.add_argument("--norm", choices=("batch", "instance"), default="batch",
                   help="decoder norm of all three (instance norm cannot train on the 1-voxel bottleneck of 32^3 "
                        "crops; MONAI's spleen UNet uses batch)")
    m.add_argument("--depths", type=int, nargs="+", default=[2, 2, 2, 2], help="FocalUNet encoder blocks per stage")
    m.add_argument("--focal-levels", type=int, nargs="+", default=[2],
                   help="FocalUNet focal levels (one or per stage)")
    m.add_argument("--focal-windows", type=int, nargs="+", default=[3],
                   help="FocalUNet focal window (one or per stage)")
    m.add_argument("--patch-size", type=int, default=2, help="FocalUNet stem stride (2 or 4)")
    m.add_argument("--decoder", choices=("auto", "focal", "unetr"), default="auto",
                   help="FocalUNet decoder: focal (paper's 2D design), unetr (SwinUNETR layout), "
                        "auto = focal in 2D, unetr in 3D")
    m.add_argument("--drop-path", type=float, default=0.0, help="FocalUNet encoder stochastic depth")
    m.add_argument("--mixer", default="focal", help="FocalUNet token mixer: focal or gnconv (focalmod.models.mixers)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--max-steps", type=int, default=200,
                   help="optimiser steps (the budget shared by --compare); the decathlon preset leaves it to the data: "
                        "80 per training case on a CPU, 100 on a GPU (tasks/medical/sizing.py)")
    o.add_argument("--batch-size", type=int, default=2, help="volumes per batch (x --num-samples crops)")
    o.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    o.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay")
    o.add_argument("--warmup-steps", type=int, default=20, help="linear warmup before the cosine decay")
    o.add_argument("--val-every", type=int, default=0,
                   help="validate every N epochs during training (0: only the final validation)")
    o.add_argument("--sw-batch-size", type=int, default=4, help="sliding-window batch")
    o.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap")
    o.add_argument("--print-every", type=int, default=25, help="print a progress line every N steps (0: never)")
    o.add_argument("--timing-repeats", type=int, default=5,
                   help="--compare: also time the three networks' training steps taking turns in one process "
                        "(median of N rounds; 0: skip)")
    o.add_argument("--no-predict", action="store_true", help="do not write NIfTI predictions of the validation cases")


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the flag values and spell out the ROI per axis (so config.yaml holds concrete values)."""
    sd = args.spatial_dims
    roi = list(args.roi_size or [])
    if len(roi) == 1:
        roi = roi * sd
    if len(roi) != sd or min(roi) <= 0:
        raise TaskError(f"--roi-size needs 1 or {sd} positive ints for --spatial-dims {sd}, got {args.roi_size}")
    args.roi_size = roi
    if args.crop_sampler not in CROP_SAMPLERS:  # a --config or preset value skips argparse's choices
        raise TaskError(f"--crop-sampler must be one of {', '.join(CROP_SAMPLERS)}, got {args.crop_sampler!r}")
    if args.flip_axes is not None and any(not 0 <= a < sd for a in args.flip_axes):
        raise TaskError(f"--flip-axes needs spatial axes in 0..{sd - 1} for --spatial-dims {sd}, got {args.flip_axes}")
    if args.pixdim is not None and len(args.pixdim) != sd:
        raise TaskError(f"--pixdim needs {sd} values for --spatial-dims {sd}, got {args.pixdim}")
    if args.intensity == "range" and (args.a_min is None or args.a_max is None or args.a_max <= args.a_min):
        raise TaskError(f"--intensity range needs --a-min < --a-max (e.g. -57 164 for a CT soft-tissue "
                        f"window), got {args.a_min}, {args.a_max}")
    if args.max_steps is None:
        if args.data is None:
            raise TaskError(f"--preset {args.preset} sizes --max-steps to --data; give --data or --max-steps")
        cases = len(read_decathlon(args.data).training)
        num_train = cases - min(max(1, round(args.val_frac * cases)), cases - 1)  # as split_cases
        line = size_to_data(args, num_train, gpu=args.accelerator != "cpu" and torch.cuda.is_available())
        if is_rank_zero():
            print(line, flush=True)
    for name in ("max_steps", "batch_size", "num_samples", "feature_size", "sw_batch_size"):
        if getattr(args, name) <= 0:
            raise TaskError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.compare and args.resume is not None:
        raise TaskError("--compare cannot --resume; resume each model's run directory instead")
    return args


def focal_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    levels = args.focal_levels[0] if len(args.focal_levels) == 1 else list(args.focal_levels)
    windows = args.focal_windows[0] if len(args.focal_windows) == 1 else list(args.focal_windows)
    return dict(depths=list(args.depths), focal_levels=levels, focal_windows=windows, patch_size=args.patch_size,
                decoder=args.decoder, drop_path_rate=args.drop_path, mixer=args.mixer)


def data_root(run: Run) -> Path:
    """`--data`, or the synthetic set written (once, by rank 0) into the run directory."""
    args = run.args
    if args.data is not None:
        return Path(args.data)
    root = run.dir / "data"
    run.on_rank_zero_first(lambda: write_synthetic_decathlon(
        root, spatial_dims=args.spatial_dims, size=args.synthetic_size, num_train=args.synthetic_cases,
        num_classes=args.synthetic_classes, noise_max=args.synthetic_noise, noise_std=args.synthetic_std,
        seed=args.seed,
    ), ready=(root / "dataset.json").is_file, what=f"the synthetic set in {root}")
    return root


def build_module(args: argparse.Namespace, in_channels: int, num_classes: int) -> SegmentationModule:
    try:
        module = SegmentationModule(
            args.model, args.spatial_dims, in_channels, num_classes, args.roi_size, args.feature_size, args.norm,
            focal_kwargs(args) if args.model == "focal_unet" else None, args.lr, args.weight_decay,
            args.warmup_steps, args.max_steps, args.sw_batch_size, args.overlap,
        )
    except (ValueError, TypeError, ImportError) as err:
        raise TaskError(f"--model {args.model}: {err}") from None
    divisor = size_divisor(module.model)
    if any(r % divisor for r in args.roi_size):
        raise TaskError(f"--roi-size {args.roi_size}: {args.model} needs every side divisible by {divisor}")
    return module


def train(run: Run) -> Summary | list[dict[str, Any]] | None:
    """One network (data checks, training, final validation, NIfTI predictions), or `--compare`."""
    # Expected on untrained or tiny runs and on 2D files; they would drown the progress lines.
    for message in (r".*is all 0, this may result in nan/inf distance", r".*always_return_as_numpy",
                    r".*axcodes .* length is smaller than", r".*smaller than the logging interval"):
        warnings.filterwarnings("ignore", message=message)
    if run.args.compare:
        return compare(run)
    args = run.args
    root = data_root(run)
    dataset = read_decathlon(root)
    for case in dataset.training:
        check_case(case, dataset.labels, args.spatial_dims, len(dataset.modalities))
    train_cases, val_cases = split_cases(dataset.training, args.val_frac, args.seed)
    cfg = data_config(vars(args), dataset.num_classes)
    module = build_module(args, len(dataset.modalities), dataset.num_classes)
    params = sum(p.numel() for p in module.model.parameters())
    run.say(f"{args.model}: {params / 1e6:.2f} M params; {dataset.name}: {len(train_cases)} train / {len(val_cases)} "
            f"val cases, {dataset.num_classes} classes, ROI {tuple(args.roi_size)}; run dir {run.dir}")

    train_loader, sampling = training_loader(train_cases, cfg, args.batch_size, args.cache_rate, args.num_workers,
                                             dataset.class_names)
    run.say(sampling)
    val_ds = CacheDataset(val_cases, build_transforms(cfg, train=False), cache_rate=args.cache_rate,
                          num_workers=max(args.num_workers, 1), progress=False)
    val_loader = DataLoader(val_ds, batch_size=1, num_workers=args.num_workers)

    timer = StepTimer(print_every=args.print_every)
    trainer = run.trainer(max_epochs=-1, monitor="val/dice" if args.val_every else None, callbacks=[timer],
                          max_steps=args.max_steps, check_val_every_n_epoch=args.val_every or 10**9,
                          num_sanity_val_steps=0)
    device = trainer.strategy.root_device  # the module goes back to the CPU after fit; measure and predict here
    reset_peak_memory(device)
    train_seconds = run.fit(trainer, module, train_loader, val_loader)
    memory_mb, memory_kind = peak_memory_mb(device)
    trainer.validate(module, val_loader, verbose=False)
    if not trainer.is_global_zero:
        return None
    val = module.last_val
    extras: dict[str, Any] = {
        "model": args.model, "dice": val["dice"],
        "dice_per_class": dict(zip(dataset.class_names[1:], val["dice_per_class"])),
        "hd95": val["hd95"], "hd95_per_class": dict(zip(dataset.class_names[1:], val["hd95_per_class"])),
        "hd95_unit": "mm", "params": params, "steps": trainer.global_step,
        "step_time_s": timer.median_seconds, "peak_memory_mb": memory_mb, "peak_memory_kind": memory_kind,
        "train_seconds": train_seconds, "spatial_dims": args.spatial_dims, "roi_size": args.roi_size,
        "train_cases": len(train_cases), "val_cases": len(val_cases), "dataset": dataset.name,
        "device": str(device), "threads": torch.get_num_threads(),
    }
    view = build_transforms(cfg, train=False)
    base = scan_baseline(network_view(train_cases, view), network_view(val_cases, view), dataset.num_classes - 1,
                         args.seed)
    baseline = Score(base.name, base.dice)
    extras["baseline_dice_per_class"] = dict(zip(dataset.class_names[1:], base.per_class))
    extras["baselines"] = {name: {"dice": mean, "dice_per_class": dict(zip(dataset.class_names[1:], per_class)),
                                  "cross_validation": base.cross_validation.get(name)}
                           for name, (mean, per_class) in ((BASELINE_NAME, base.voxel), (WINDOW_NAME, base.window))}
    if not args.no_predict:
        written = predict_files(module, [c["image"] for c in val_cases], cfg, run.dir / "predictions", device)
        extras["predictions"] = [str(p) for p in written]
        extras["dice_original_space"] = _file_dice(written, val_cases, dataset.num_classes)
    metric = Score("dice", val["dice"])
    print(f"{_summary(extras, run.dir)}\n{compare_with_baseline(metric, baseline)} (per class: "
          + ", ".join(f"{k} {v:.3f}" for k, v in extras["baseline_dice_per_class"].items()) + ")", flush=True)
    return Summary(metric, data=str(root), split=f"val ({args.val_frac:g} of the training list)",
                   params_m=params / 1e6, extras=extras, baseline=baseline)


def _file_dice(predictions: list[Path], cases: list[dict], num_classes: int) -> float:
    """Mean foreground Dice (MONAI's `compute_dice`, classes absent from a label file left out) of the written NIfTI
    predictions against the label files: checks the inversion back to each input's grid."""
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    scores = []
    for pred_path, case in zip(predictions, cases):
        pred = torch.as_tensor(np.asanyarray(nib.load(str(pred_path)).dataobj).astype(np.int64))[None, None]
        label = torch.as_tensor(np.asanyarray(nib.load(case["label"]).dataobj).astype(np.int64))[None, None]
        scores.append(compute_dice(one_hot(pred, num_classes), one_hot(label, num_classes),
                                   include_background=False, ignore_empty=True).flatten())
    return float(torch.cat(scores).nanmean()) if scores else float("nan")


def _summary(m: dict[str, Any], run_dir: Path) -> str:
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in m["dice_per_class"].items())
    return (f"{m['model']}: Dice {m['dice']:.4f} ({per_class}), HD95 {m['hd95']:.2f} mm, "
            f"{m['params'] / 1e6:.2f} M params, {m['step_time_s']:.3f} s/step, peak {m['peak_memory_mb']:.0f} MiB, "
            f"{m['steps']} steps in {m['train_seconds']:.0f} s -> {run_dir / 'metrics.json'}")


def compare(run: Run) -> list[dict[str, Any]]:
    """Train every model in its own process on the same data and flags; write results.md and results.csv."""
    args, run_dir = run.args, run.dir
    root = data_root(run)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "resume")}
    flags.update(data=str(root), compare=False)
    rows, finished = [], []
    for name in MODELS:
        child = run_dir / name
        child.mkdir(exist_ok=True)
        config = save_config(child, {**flags, "model": name, "out": str(child)}, name="compare_config.yaml")
        print(f"=== {name} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", "tasks.medical.train", "--config", str(config)])
        metrics_path = child / "metrics.json"
        if code != 0 or not metrics_path.is_file():
            rows.append({"model": name, "status": f"failed (exit {code})"})
            continue
        m = json.loads(metrics_path.read_text())
        finished.append(m)
        rows.append({
            "model": name, "dice": m["dice"], **{f"dice_{k}": v for k, v in m["dice_per_class"].items()},
            "hd95_mm": m["hd95"], "params_M": m["params"] / 1e6, "step_time_s": m["step_time_s"],
            "peak_memory_MiB": m["peak_memory_mb"], "train_s": m["train_seconds"], "steps": m["steps"],
        })
    timing = interleaved_timing(args, root) if args.timing_repeats > 0 else {}
    for row in rows:
        if row["model"] in timing:
            row["step_time_interleaved_s"] = timing[row["model"]]
    notes = []
    if timing:
        notes.append(f"step_time_interleaved_s: median of {args.timing_repeats} rounds in one process, the three "
                     f"networks taking turns on the same random batch (robust to load changes on a shared machine).")
    if finished:
        ref = finished[0]
        notes = [
            f"Same data ({root}), {args.max_steps} steps of batch {args.batch_size} x {args.num_samples} crops "
            f"{tuple(args.roi_size)}, AdamW lr {args.lr}, DiceCE loss; metrics on {ref['val_cases']} held-out "
            f"cases by sliding window (Dice: mean foreground, HD95 in mm).",
            f"Step time: median s/step (forward+backward+optimiser, first 3 excluded). Peak memory: "
            f"{ref['peak_memory_kind']}, one process per model. Device {ref['device']}, {ref['threads']} threads, "
            f"torch {torch.__version__}, monai {monai.__version__}, {platform.machine()}.",
        ]
        if ref["baseline"] is not None:
            notes.append(f"Baseline ({ref['baseline']['name']}) Dice on the same cases: "
                         f"{ref['baseline']['value']:.3f}.")
    write_table(rows, run_dir, "results", title=f"{TASK.name}: FocalUNet vs MONAI UNet vs SwinUNETR", notes=notes)
    print((run_dir / "results.md").read_text(), flush=True)
    return rows


def interleaved_timing(args: argparse.Namespace, root: Path) -> dict[str, float]:
    """Training-step seconds of the three networks, taking turns on one random batch of training crops."""
    from monai.losses import DiceCELoss

    dataset = read_decathlon(root)
    device = torch.device("cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu")
    in_channels, num_classes = len(dataset.modalities), dataset.num_classes
    nets = {name: build_model(name, args.spatial_dims, in_channels, num_classes, args.feature_size, args.norm,
                                **(focal_kwargs(args) if name == "focal_unet" else {})).to(device)
            for name in MODELS}
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size * args.num_samples, in_channels, *args.roi_size)
    x = torch.randn(shape, generator=generator).to(device)
    y = torch.randint(0, num_classes, (shape[0], 1, *args.roi_size), generator=generator).to(device)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    print(f"timing {', '.join(MODELS)} in turns ({args.timing_repeats} rounds)...", flush=True)
    return interleaved_step_times(nets, lambda m: loss(m(x), y), repeats=args.timing_repeats)


TASK = Task(
    name="medical", module="tasks.medical.train", doc=__doc__, add_options=add_options,
    presets=Path(__file__).parent / "presets",
    choose_preset=lambda args: "synthetic" if args.data is None else "decathlon",
    run=train, resolve=resolve_args, versions=("monai", "nibabel"),
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (options as given, before presets and resolution)."""
    return task_parser(TASK)


def main(argv: Sequence[str] | None = None) -> Any:
    """Train one network (returns the content of metrics.json) or `--compare` (returns the table rows)."""
    return run_task(TASK, argv)


if __name__ == "__main__":
    run_main(main)
