"""Sliding-window prediction written back as NIfTI in each input's own grid and affine.

`python -m tasks.medical.predict --run RUN_DIR [--images a.nii.gz ...]` predicts the `test` list of the run's
dataset (or the given images) with the run's last (or best) checkpoint. Training calls `predict_files` for the
validation cases at the end of every run.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import torch
import yaml
from monai.transforms import Invertd

from tasks.common.cli import TaskError, run_main
from tasks.common.trainer import AtomicCheckpointIO

from .data import DataConfig, build_transforms, data_config, read_decathlon
from .module import SegmentationModule

__all__ = ["predict_files"]


def _output_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + "_seg.nii.gz"
    return name + "_seg.nii.gz"


@torch.no_grad()
def predict_files(module: SegmentationModule, images: Sequence[str | Path], cfg: DataConfig, out_dir: Path,
                  device: torch.device | str = "cpu") -> list[Path]:
    """Predict each image (validation transforms, sliding window, argmax), undo the transforms with `Invertd`
    (crop, spacing, orientation) and save `<name>_seg.nii.gz` (uint8 labels) with the input file's affine."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transforms = build_transforms(cfg, train=False, keys=("image",))
    invert = Invertd("pred", transform=transforms, orig_keys="image", nearest_interp=True)
    module = module.to(device).eval()
    written = []
    for path in map(Path, images):
        original = nib.load(str(path))
        data = transforms({"image": str(path)})
        logits = module.infer(data["image"].unsqueeze(0).to(device))[0]
        data["pred"] = logits.argmax(0, keepdim=True).to(torch.float32).cpu()
        pred = np.asarray(invert(data)["pred"])[0]
        spatial = tuple(original.shape[: cfg.spatial_dims])
        if pred.shape != spatial:
            raise TaskError(f"{path}: prediction shape {pred.shape} after inverting the transforms does not match "
                            f"the image {spatial}")
        target = out_dir / _output_name(path)
        nib.save(nib.Nifti1Image(np.rint(pred).astype(np.uint8), original.affine), str(target))
        written.append(target)
    return written


def load_run(run_dir: Path, checkpoint: str = "last") -> tuple[SegmentationModule, dict]:
    """The module of a finished run (weights only, `torch.load(weights_only=True)`) and its resolved config."""
    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / "config.yaml", run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not config_path.is_file():
        raise TaskError(f"--run: no config.yaml in {run_dir} (expected a tasks.medical.train run directory)")
    if not ckpt_path.is_file():
        raise TaskError(f"--run: no checkpoints/{checkpoint}.ckpt in {run_dir}")
    config = yaml.safe_load(config_path.read_text())
    state = AtomicCheckpointIO().load_checkpoint(ckpt_path)
    module = SegmentationModule(**state["hyper_parameters"])
    module.load_state_dict(state["state_dict"])
    return module, config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.medical.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by tasks.medical.train")
    parser.add_argument("--images", type=Path, nargs="*", default=None,
                        help="NIfTI images to segment (default: the 'test' list of the run's dataset.json)")
    parser.add_argument("--checkpoint", default="last", choices=("last", "best"), help="which checkpoint to use")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUN/predictions_test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    module, config = load_run(args.run, args.checkpoint)
    images = args.images
    if images is None:
        root = Path(config["data"]) if config.get("data") else args.run / "data"
        images = read_decathlon(root).test
        if not images:
            raise TaskError(f"{root / 'dataset.json'} has no 'test' list: pass --images")
    for image in map(Path, images):
        if not image.is_file():
            raise TaskError(f"--images: {image} does not exist")
    written = predict_files(module, images, data_config(config), args.out or args.run / "predictions_test",
                            args.device)
    for path in written:
        print(path)


if __name__ == "__main__":
    run_main(main)
