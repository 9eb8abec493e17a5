"""Segment the user's NIfTI images with a trained run: label maps written back in each input's own grid and affine.

    python -m tasks.medical predict --run runs/medical/<run>                  # the `test` list of its dataset.json
    python -m tasks.medical predict --run runs/medical/<run> --inputs scans/ "more/*.nii.gz"

Each image goes through the run's deterministic transforms (orientation, spacing, intensity, foreground crop), is
segmented by sliding-window inference with the run's ROI, and the argmax is mapped back through the transforms with
MONAI's `Invertd` and saved as `predictions/<name>_seg.nii.gz` (uint8 label values) with the input file's affine.
A file that cannot be read is named and skipped; the others are still written, and the command then exits
non-zero listing the skipped files. Writes metrics.json and config.yaml beside predictions/. Training calls
`predict_files` for its validation cases at the end of every run.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Invertd

from ..common import Run, Score, Summary, Task, TaskError
from ..common.trained import TrainedRun
from ..common.verbs import add_run_option, find_inputs
from .data import DataConfig, build_transforms, read_decathlon
from .module import SegmentationModule

__all__ = ["NIFTI_SUFFIXES", "TASK", "output_name", "predict_files"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def output_name(path: Path) -> str:
    """`<name>_seg.nii.gz` for `<name>.nii(.gz)`: the file predict and the exported bundle write for `path`."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)] + "_seg.nii.gz"
    return name + "_seg.nii.gz"


@torch.no_grad()
def predict_files(module: SegmentationModule, images: Sequence[str | Path], cfg: DataConfig, out_dir: Path,
                  device: torch.device | str = "cpu", skipped: list[Path] | None = None) -> list[Path]:
    """Predict each image (validation transforms, sliding window, argmax), undo the transforms with `Invertd`
    (crop, spacing, orientation) and save `<name>_seg.nii.gz` (uint8 labels) with the input file's affine.
    An image that cannot be read or transformed is a `TaskError` naming it, or, with a `skipped` list, is
    reported, appended there and left out."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transforms = build_transforms(cfg, train=False, keys=("image",))
    invert = Invertd("pred", transform=transforms, orig_keys="image", nearest_interp=True)
    module = module.to(device).eval()
    written = []
    for path in map(Path, images):
        try:
            original = nib.load(str(path))
            data = transforms({"image": str(path)})
        except Exception as err:  # nibabel and MONAI raise many types for unreadable files
            message = f"cannot read {path} as a {cfg.spatial_dims}D NIfTI image: {type(err).__name__}: " \
                      f"{str(err).splitlines()[0] if str(err) else ''}"
            if skipped is None:
                raise TaskError(message) from None
            print(f"{message}: skipped", flush=True)
            skipped.append(path)
            continue
        logits = module.infer(data["image"].unsqueeze(0).to(device))[0]
        data["pred"] = logits.argmax(0, keepdim=True).to(torch.float32).cpu()
        pred = np.asarray(invert(data)["pred"])[0]
        spatial = tuple(original.shape[: cfg.spatial_dims])
        if pred.shape != spatial:
            raise TaskError(f"{path}: prediction shape {pred.shape} after inverting the transforms does not match "
                            f"the image {spatial}")
        target = out_dir / output_name(path)
        nib.save(nib.Nifti1Image(np.rint(pred).astype(np.uint8), original.affine), str(target))
        written.append(target)
    return written


def quiet_transform_warnings() -> None:
    """MONAI's expected warnings on 2D files (axcodes of a 3D world) would drown the progress lines."""
    for message in (r".*axcodes .* length is smaller than", r".*always_return_as_numpy"):
        warnings.filterwarnings("ignore", message=message)


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.medical fit")
    p.add_argument("--inputs", nargs="+", help=".nii / .nii.gz files, folders (searched recursively) or glob "
                   "patterns (default: the 'test' list of the run's dataset.json)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run whose model segments the images")
    if args.inputs:
        find_inputs(args.inputs, NIFTI_SUFFIXES)  # one clear error before the run directory is made


def default_inputs(trained: TrainedRun) -> list[Path]:
    """The `test` list of the run's dataset.json (the synthetic set's in the run directory without --data)."""
    from .trained import data_root

    root = data_root(trained)
    test = read_decathlon(root).test
    if not test:
        raise TaskError(f"{root / 'dataset.json'} has no 'test' list: pass --inputs")
    return [Path(p) for p in test]


def predict(run: Run) -> Summary:
    from .trained import Segmenter

    args = run.args
    quiet_transform_warnings()
    segmenter = Segmenter.from_run(TrainedRun.open(args.run))
    files = find_inputs(args.inputs, NIFTI_SUFFIXES) if args.inputs else default_inputs(segmenter.trained)
    device = torch.device("cuda" if args.accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    run.say(f"segmenting {len(files)} image(s) with {segmenter.hparams['model_name']} "
            f"({len(segmenter.class_names)} label values, ROI {tuple(segmenter.cfg.roi_size)}) on {device}")
    skipped: list[Path] = []
    written = predict_files(segmenter.module, files, segmenter.cfg, run.dir / "predictions", device, skipped)
    print(f"{len(written)} label map(s) written: {run.dir / 'predictions'}", flush=True)
    fractions = [float((np.asanyarray(nib.load(str(p)).dataobj) > 0).mean()) for p in written]
    extras = dict(images=len(written), predictions=[str(p) for p in written], model=segmenter.hparams["model_name"],
                  run=str(segmenter.trained.dir), checkpoint=str(segmenter.trained.checkpoint),
                  classes=segmenter.class_names, foreground_fraction_per_image=fractions)
    return Summary(Score("mean_foreground_fraction", float(np.mean(fractions)) if fractions else None),
                   data=", ".join(map(str, args.inputs or files)), split="predict", params_m=segmenter.params_m,
                   extras=extras, skipped=[str(p) for p in skipped])


TASK = Task(name="medical-predict", module="tasks.medical predict", doc=__doc__, add_options=add_options,
            run=predict, resolve=check, versions=("monai", "nibabel"))


if __name__ == "__main__":  # `python -m tasks.medical.predict` (before the verbs): the predict verb
    from ..common import run_main, run_task

    run_main(lambda argv: run_task(TASK, argv))
