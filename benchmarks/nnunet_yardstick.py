"""nnU-Net as the yardstick: nnU-Net's default trainer, the Focal-UNet trainer inside nnU-Net and our own pipeline
(`tasks.medical fit`) on the same split and the same number of training iterations, on the scan sets of
benchmarks/realsets.

    python -m benchmarks.nnunet_yardstick                       # both scan sets, 3d_fullres, 5 x 10 iterations
    python -m benchmarks.nnunet_yardstick --configuration 2d --epochs 10 --iters 20 --sets mni-tissue

Needs nnunetv2 (`focalmod[nnunet]`) and the realsets packages (nilearn; mricron-data for colin-structures; a set whose
source is missing is reported and skipped). Each row is kept in `--out`/work/<set>/<row>.json: a row measured before
is not run again (unless --rerun), and the table holds every row measured in `--out`, so the sets can run as separate
processes (e.g. one per core with `--sets NAME`) and rows can be added later (`--rows nnunet_focal_unet:8`). The split
is `tasks.medical`'s (`split_cases`, --val-frac, --seed), written to nnU-Net's `splits_final.json` as fold 0, so all
three train on the same cases and are scored on the same held-out cases, by one Dice function on the prediction files
in the images' own grid. Every run is a child process with --threads torch threads (OMP_NUM_THREADS); CPU time is the
child's user + system time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import yaml

from tasks.common.files import atomic_write, write_table

SETS = {"mni-tissue": 901, "colin-structures": 902}


def _child(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run `cmd`; (CPU seconds of the child, wall seconds). Output goes to `log`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def _console_script(name: str) -> str:
    """nnunetv2's command `name`, next to this interpreter first (a venv that is not activated), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found beside {sys.executable} or on PATH: install nnunetv2 (docs/medical.md)")
    return found


def dice_from_files(pred_files: dict[str, Path], label_files: dict[str, Path], labels: dict[int, str]
                    ) -> dict[str, float]:
    """Per-class Dice pooled over the cases (sum of intersections / sum of sizes), foreground classes only."""
    inter = {k: 0 for k in labels if k}
    size = {k: 0 for k in labels if k}
    for case, label_path in label_files.items():
        pred = np.asarray(nib.load(pred_files[case]).dataobj).astype(np.int64)
        label = np.asarray(nib.load(label_path).dataobj).astype(np.int64)
        if pred.shape != label.shape:
            raise ValueError(f"{pred_files[case]}: shape {pred.shape}, label {label.shape}")
        for k in inter:
            inter[k] += int(((pred == k) & (label == k)).sum())
            size[k] += int((pred == k).sum() + (label == k).sum())
    return {labels[k]: 2 * inter[k] / size[k] if size[k] else float("nan") for k in inter}


MODELS = {  # row kind -> the name the table gives it, in table order
    "nnunet_default": "nnU-Net default network (PlainConvUNet)",
    "nnunet_focal_unet": "Focal-UNet inside nnU-Net",
    "nnunet_focal_unet_adamw": "Focal-UNet inside nnU-Net, AdamW",
    "tasks_medical": "tasks.medical fit (Focal-UNet)",
}
TRAINERS = {"nnunet_default": "nnUNetTrainerBudget", "nnunet_focal_unet": "nnUNetTrainerFocalUNetBudget",
            "nnunet_focal_unet_adamw": "nnUNetTrainerFocalUNetAdamWBudget"}


def parse_row(spec: str) -> tuple[str, int]:
    """``KIND:N`` -> (kind, N): N nnU-Net epochs of --iters iterations, or tasks.medical steps (0: its own sizing)."""
    kind, _, n = spec.partition(":")
    if kind not in MODELS or not n.isdigit():
        raise argparse.ArgumentTypeError(f"{spec!r} is not KIND:N with KIND one of {', '.join(MODELS)}")
    return kind, int(n)


def run_set(name: str, args: argparse.Namespace, work: Path) -> None:
    """Every row of `name` not measured yet in `work` (one JSON file per row: `<set>/<key>_<iterations>.json`)."""
    from benchmarks.realsets import REALSETS
    from tasks.medical.data import read_decathlon, split_cases
    from tasks.medical.nnunet_raw import write_nnunet_raw

    dataset_id = SETS[name]
    todo = [(key, n) for key, n in args.rows if args.rerun or not _row_file(work, name, key, n).exists()]
    if not todo:
        print(f"{name}: every row measured before (in {work / name}); --rerun measures them again", flush=True)
        return
    decathlon = REALSETS[name].write(work / name / "decathlon")
    raw = write_nnunet_raw(read_decathlon(decathlon), work / "raw", dataset_id, name.replace("-", ""))
    dataset = read_decathlon(raw)
    train, val = split_cases(dataset.training, args.val_frac, args.seed)
    case_id = {c["label"]: Path(c["label"]).name[: -len(".nii.gz")] for c in dataset.training}
    env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
               nnUNet_results=str(work / "results"), nnUNet_n_proc_DA="1", nnUNet_def_n_proc="1",
               OMP_NUM_THREADS=str(args.threads), FOCALMOD_NNUNET_ITERS=str(args.iters),
               FOCALMOD_NNUNET_VAL_ITERS=str(args.val_iters))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _child([_console_script("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", args.configuration,
            "-np", "1", "--verify_dataset_integrity"], env, logs / f"{name}_plan.log")
    pre = next((work / "preprocessed").glob(f"Dataset{dataset_id:03d}_*"))
    (pre / "splits_final.json").write_text(json.dumps([{"train": [case_id[c["label"]] for c in train],
                                                        "val": [case_id[c["label"]] for c in val]}]))
    plans = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"][args.configuration]
    labels = {case_id[c["label"]]: Path(c["label"]) for c in val}
    env["nnUNet_n_proc_DA"] = "0"
    for key, n in todo:
        log = logs / f"{name}_{key}_{n}.log"
        if key in TRAINERS:  # n: nnU-Net epochs of --iters iterations
            cpu, wall = _child([sys.executable, "-m", "focalmod.integrations.nnunet", "train", str(dataset_id),
                                args.configuration, "0", "-tr", TRAINERS[key], "-device", "cpu"],
                               {**env, "FOCALMOD_NNUNET_EPOCHS": str(n)}, log)
            folder = (work / "results" / pre.name / f"{TRAINERS[key]}__nnUNetPlans__{args.configuration}" /
                      "fold_0" / "validation")
            preds = {case: folder / f"{case}.nii.gz" for case in labels}
            iterations = n * args.iters
            settings = (f"nnU-Net {args.configuration}, patch {plans['patch_size']}, batch {plans['batch_size']}, "
                        f"{n} x {args.iters} it, {'AdamW 1e-3' if key.endswith('adamw') else 'SGD 0.01'} poly, DC+CE, "
                        "deep supervision, mirror TTA")
        else:  # n: tasks.medical steps, 0 = its own --data sizing
            run = work / "runs" / f"{name}_{n}"
            steps = [] if n == 0 else ["--max-steps", str(n)]
            cpu, wall = _child([sys.executable, "-m", "tasks.medical", "fit", "--data", str(raw), *steps,
                                "--val-frac", str(args.val_frac), "--seed", str(args.seed), "--threads",
                                str(args.threads), "--no-progress", "--print-every", "0", "--out", str(run)], env, log)
            metrics = json.loads((run / "metrics.json").read_text())
            by_name = {Path(p).name[: -len("_seg.nii.gz")]: Path(p) for p in metrics["predictions"]}
            preds = {case: by_name[f"{case}_0000"] for case in labels}
            iterations = int(metrics["steps"])
            config = yaml.safe_load((run / "config.yaml").read_text())
            settings = (f"tasks.medical fit ({'its --data sizing' if n == 0 else 'decathlon preset'}), ROI "
                        f"{metrics.get('roi_size')}, batch {config['batch_size']} x {config['num_samples']} crops, "
                        f"{iterations} steps, AdamW, DiceCE, sliding window")
        row = _row(name, MODELS[key], iterations, dice_from_files(preds, labels, dataset.labels), cpu, wall, settings)
        atomic_write(_row_file(work, name, key, n), json.dumps(row, indent=1))
        print(f"{name}: {row['model']}, {iterations} iterations: mean Dice {row['dice_mean']:.3f} in "
              f"{cpu / 60:.1f} CPU-min", flush=True)


def _row_file(work: Path, name: str, key: str, n: int) -> Path:
    return work / name / f"{key}_{n}.json"


def _rows(work: Path) -> list[dict[str, Any]]:
    """Every row measured in `work`, by set, then model, then iterations."""
    rows = [json.loads(f.read_text()) for name in SETS for f in (work / name).glob("*_*.json")]
    order = {model: i for i, model in enumerate(MODELS.values())}
    return sorted(rows, key=lambda r: (list(SETS).index(r["dataset"]), order[r["model"]], r["iterations"]))


def _row(dataset: str, model: str, iterations: int, dice: dict[str, float], cpu: float, wall: float,
         settings: str) -> dict:
    values = [v for v in dice.values() if v == v]
    return {"dataset": dataset, "model": model, "iterations": iterations,
            "dice_mean": float(np.mean(values)) if values else float("nan"),
            **{f"dice_{k}": v for k, v in dice.items()}, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "settings": settings}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nnunet_yardstick", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--configuration", default="3d_fullres", choices=["2d", "3d_fullres"])
    parser.add_argument("--epochs", type=int, default=5, help="nnU-Net epochs of the budget")
    parser.add_argument("--iters", type=int, default=10, help="training iterations per nnU-Net epoch")
    parser.add_argument("--rows", type=parse_row, nargs="+", metavar="KIND:N",
                        help=f"the rows to measure, KIND one of {', '.join(MODELS)}; N: nnU-Net epochs of --iters "
                        "iterations, or tasks.medical steps (0: its own --data sizing). Default: nnunet_default, "
                        "nnunet_focal_unet at --epochs, tasks_medical at --epochs x --iters (the same iterations)")
    parser.add_argument("--val-iters", type=int, default=2, help="nnU-Net's pseudo-Dice iterations per epoch")
    parser.add_argument("--val-frac", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nnunet_yardstick"))
    parser.add_argument("--rerun", action="store_true", help="measure rows again that --out holds already")
    args = parser.parse_args(argv)
    args.rows = args.rows or [("nnunet_default", args.epochs), ("nnunet_focal_unet", args.epochs),
                              ("tasks_medical", args.epochs * args.iters)]
    work = args.out / "work"
    skipped = []
    for name in args.sets:
        try:
            run_set(name, args, work)
        except FileNotFoundError as err:  # the set's source package is not installed
            skipped.append(f"{name}: {err}")
            print(f"skipping {name}: {err}", flush=True)
    rows = _rows(work)  # every set measured in this --out, so sets run by separate processes end in one table
    import torch

    notes = [f"Same split (tasks.medical split_cases, val-frac {args.val_frac}, seed {args.seed}; nnU-Net fold 0 via "
             f"splits_final.json); iterations: optimiser steps (nnU-Net: batches of its planned patches; "
             "tasks.medical: batches of its crops); Dice pooled over the "
             "validation cases on the prediction files in the images' grid. CPU s: child process user+system time, "
             f"{args.threads} thread(s); {platform.machine()} ({torch.backends.cpu.get_cpu_capability()}), "
             f"torch {torch.__version__}, "
             f"nnunetv2 {_version('nnunetv2')}, monai {_version('monai')}.",
             *(f"Skipped {s}" for s in skipped)]
    if rows:
        write_table(rows, args.out, "nnunet_yardstick", title="nnU-Net yardstick: nnU-Net vs Focal-UNet in nnU-Net vs "
                    "tasks.medical", notes=notes)
        print((args.out / "nnunet_yardstick.md").read_text(), flush=True)
    return rows


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
