"""Carry a trained segmentation run into the tools where it is used: a MONAI bundle and ONNX.

    python -m tasks.medical export --run runs/medical/<run>                   # both formats into the run dir
    python -m tasks.medical export --run runs/medical/<run> --format bundle --out exported/
    python -m monai.bundle run --config_file exported/bundle/configs/inference.json \\
        --bundle_root exported/bundle --dataset_dir my_scans/ --output_dir segmentations/

`bundle/` follows the MONAI bundle layout: `configs/metadata.json` (versions, task, the input and output tensors,
the run's Dice), `configs/inference.json` (the network built from its public class, `focalmod.models.FocalUNet` or
MONAI's, with the run's arguments; the run's deterministic transforms as MONAI transform configs; a
`SlidingWindowInferer` with the run's ROI; `AsDiscreted` argmax, `Invertd` back to each input's grid and
`SaveImaged` writing `<name>_seg.nii.gz`, the files `python -m tasks.medical predict` writes), `models/model.pt`
(the network's state dict) and `docs/README.md` (model card: metric, baseline, data, command). Without network
access `monai.bundle verify_metadata` cannot download its schema: `--schema FILE` checks metadata.json against a
local copy of it; the export always checks the specification's mandatory keys and runs `monai.bundle`'s
`verify_net_in_out` and a reload of the network from the bundle (max abs difference in metrics.json). `model.onnx`
is the network on one ROI patch (dynamic batch; the sliding window stays outside), checked in onnxruntime.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch

from ..common import Run, Score, Summary, Task, TaskError, atomic_write
from ..common.export import export_onnx, model_card, write_model_card
from ..common.trained import TrainedRun
from ..common.verbs import add_run_option
from .data import _RAS_LABELS, DataConfig
from .trained import Segmenter

FORMATS = ("bundle", "onnx")
BUNDLE_TOLERANCE = 1e-5
META_SCHEMA = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
               "meta_schema_20240725.json")
# The mandatory keys of metadata.json and of each tensor format specifier (docs.monai.io mb_specification).
# MONAI 1.6 reads `required_packages_version` where the specification says `optional_packages_version` (it renames
# the old key on reading, with a warning): the bundle writes the new name, the check accepts either.
METADATA_KEYS = ("version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version", "task",
                 "description", "authors", "copyright", "network_data_format")
TENSOR_KEYS = ("type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
               "is_patch_data", "channel_def")


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.medical fit")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="what to write")
    p.add_argument("--schema", type=Path, help="a local copy of the MONAI bundle metadata schema (the JSON at "
                   "metadata.json's \"schema\" URL): metadata.json is checked against it with monai.bundle "
                   "verify_metadata (offline)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to export")
    if args.schema is not None and not args.schema.is_file():
        raise TaskError(f"--schema: file not found: {args.schema}")


def export(run: Run) -> Summary:
    from .predict import quiet_transform_warnings

    args = run.args
    quiet_transform_warnings()
    segmenter = Segmenter.from_run(TrainedRun.open(args.run))
    model = segmenter.module.model.cpu().eval()
    example = torch.randn(2, segmenter.hparams["in_channels"], *segmenter.cfg.roi_size,
                          generator=torch.Generator().manual_seed(0))
    extras: dict[str, Any] = dict(model=segmenter.hparams["model_name"], run=str(segmenter.trained.dir),
                                  checkpoint=str(segmenter.trained.checkpoint))
    if "bundle" in args.format:
        folder = run.dir / "bundle"
        extras["bundle"] = write_bundle(segmenter, folder, example, args.schema)
        run.say(f"MONAI bundle: {folder} (network rebuilt from inference.json: max abs diff "
                f"{extras['bundle']['max_abs_diff']:.1e})")
    if "onnx" in args.format:
        extras["onnx"] = export_onnx(model, [example], run.dir / "model.onnx", input_names=["image"],
                                     output_names=["logits"])
        run.say(f"ONNX: {extras['onnx']['file']} (onnxruntime max abs diff {extras['onnx']['max_abs_diff']:.1e})")
    worst = max(extras[f]["max_abs_diff"] for f in args.format)
    return Summary(Score("max_abs_diff", worst), data=str(segmenter.trained.dir), split="export",
                   params_m=segmenter.params_m, extras=extras)


def network_config(hp: dict[str, Any]) -> dict[str, Any]:
    """The network of a run's hyper-parameters as a MONAI bundle component: its public class and arguments (the
    same construction as `tasks.medical.module.build_model`, without the training code)."""
    name, f = hp["model_name"], hp.get("feature_size", 12)
    common = dict(spatial_dims=hp["spatial_dims"], in_channels=hp["in_channels"])
    if name == "focal_unet":
        return {"_target_": "focalmod.models.FocalUNet", **common, "out_channels": hp["num_classes"],
                "feature_size": f, "norm_name": hp.get("norm", "batch"), **(hp.get("focal_kwargs") or {})}
    if name == "unet":
        return {"_target_": "monai.networks.nets.UNet", **common, "out_channels": hp["num_classes"],
                "channels": [f, 2 * f, 4 * f, 8 * f, 16 * f], "strides": [2, 2, 2, 2], "num_res_units": 2,
                "norm": hp.get("norm", "batch")}
    if name == "swin_unetr":
        return {"_target_": "monai.networks.nets.SwinUNETR", **common, "out_channels": hp["num_classes"],
                "feature_size": 12 * math.ceil(f / 12), "norm_name": hp.get("norm", "batch")}
    raise TaskError(f"--run: no bundle network for model {name!r}")


def preprocessing_config(cfg: DataConfig) -> list[dict[str, Any]]:
    """The run's deterministic image transforms (`tasks.medical.data.build_transforms(cfg, train=False)` on the
    image key) as MONAI transform configs."""
    steps: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"}]
    if cfg.orientation:
        steps.append({"_target_": "Orientationd", "keys": "image", "axcodes": cfg.orientation[: cfg.spatial_dims],
                      "labels": [list(pair) for pair in _RAS_LABELS]})
    if cfg.pixdim:
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(cfg.pixdim), "mode": "bilinear"})
    if cfg.intensity == "zscore":
        steps.append({"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True})
    else:
        steps.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": cfg.a_min, "a_max": cfg.a_max,
                      "b_min": 0.0, "b_max": 1.0, "clip": True})
    if cfg.crop_foreground:
        steps.append({"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "allow_smaller": True})
    return steps


def inference_config(segmenter: Segmenter) -> dict[str, Any]:
    """configs/inference.json: a folder of NIfTI images (`dataset_dir`, searched recursively) -> `output_dir`/
    `<name>_seg.nii.gz` label maps in each input's grid, without ignite (a plain loop in `run`)."""
    hp = segmenter.hparams
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "dataset_dir": "$@bundle_root + '/images'",
        "output_dir": "$@bundle_root + '/eval'",
        "datalist": "$sorted(set(glob.glob(os.path.join(@dataset_dir, '**', '*.nii.gz'), recursive=True) + "
                    "glob.glob(os.path.join(@dataset_dir, '**', '*.nii'), recursive=True)))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_config(hp),
        "network": "$@network_def.to(@device).eval()",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing_config(segmenter.cfg)},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': f} for f in @datalist]",
                    "transform": "@preprocessing"},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(segmenter.cfg.roi_size),
                    "sw_batch_size": hp.get("sw_batch_size", 4), "overlap": hp.get("overlap", 0.25),
                    "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": True, "to_tensor": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "output_ext": ".nii.gz", "output_dtype": "$numpy.uint8", "separate_folder": False, "resample": False,
             "print_log": False}]},
        "infer": "$lambda d: dict(d, pred=@inferer(d['image'][None].to(@device), @network)[0].cpu())",
        "initialize": [
            "$torch.set_grad_enabled(False)",
            "$@network.load_state_dict(torch.load(@bundle_root + '/models/model.pt', map_location=@device, "
            "weights_only=True))"],
        "run": ["$[@postprocessing(@infer(d)) for d in @dataset]"],
    }


def metadata(segmenter: Segmenter) -> dict[str, Any]:
    """configs/metadata.json (the MONAI bundle specification's keys)."""
    hp, cfg, metrics = segmenter.hparams, segmenter.cfg, segmenter.trained.metrics or {}
    roi = list(cfg.roi_size)
    dice = (metrics.get("metric") or {}).get("value")
    value_range = [0, 1] if cfg.intensity != "zscore" else []
    return {
        "schema": META_SCHEMA,
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by focalmod from {segmenter.trained.checkpoint.name}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"nibabel": _version("nibabel"), **(
            {"focalmod": _version("focalmod")} if hp["model_name"] == "focal_unet" else {})},
        "name": f"{hp['model_name']} {metrics.get('data', segmenter.trained.dir.name)}",
        "task": f"{cfg.spatial_dims}D segmentation of {', '.join(segmenter.class_names[1:])}",
        "description": f"{hp['model_name']} trained with `{metrics.get('command', 'python -m tasks.medical fit')}` "
                       f"(focalmod); sliding-window inference on {tuple(roi)} patches.",
        "authors": "focalmod",
        "copyright": "see the training data's licence",
        "data_source": str(metrics.get("data", "")),
        "data_type": "nibabel",
        "image_classes": f"{len(segmenter.modalities)} channel(s): {', '.join(segmenter.modalities)}",
        "label_classes": ", ".join(f"{i} is {name}" for i, name in enumerate(segmenter.class_names)),
        "pred_classes": f"{len(segmenter.class_names)} channels, channel i scores label value i; argmax gives the "
                        "label map",
        "eval_metrics": {"mean_dice": dice} if dice is not None else {},
        "intended_use": "research; not for diagnostic use",
        "references": ["Yang et al., Focal Modulation Networks, NeurIPS 2022. https://arxiv.org/abs/2203.11926"],
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": "/".join(segmenter.modalities),
                "num_channels": hp["in_channels"], "spatial_shape": roi, "dtype": "float32",
                "value_range": value_range, "is_patch_data": True,
                "channel_def": {str(i): m for i, m in enumerate(segmenter.modalities)}}},
            "outputs": {"pred": {
                "type": "image", "format": "labels", "modality": "n/a", "num_channels": hp["num_classes"],
                "spatial_shape": roi, "dtype": "float32", "value_range": [], "is_patch_data": True,
                "channel_def": {str(i): name for i, name in enumerate(segmenter.class_names)}}},
        },
    }


def check_metadata(meta: dict[str, Any]) -> list[str]:
    """The mandatory keys of the bundle specification that `meta` lacks (`[]`: none)."""
    aliases = {"required_packages_version": "optional_packages_version"}
    missing = [k for k in METADATA_KEYS if k not in meta and aliases.get(k) not in meta]
    formats = meta.get("network_data_format") or {}
    for side in ("inputs", "outputs"):
        for name, spec in (formats.get(side) or {}).items():
            missing += [f"network_data_format.{side}.{name}.{k}" for k in TENSOR_KEYS if k not in spec]
        if not formats.get(side):
            missing.append(f"network_data_format.{side}")
    return missing


def write_bundle(segmenter: Segmenter, folder: Path, example: torch.Tensor, schema: Path | None = None
                 ) -> dict[str, Any]:
    """The MONAI bundle folder; returns {"folder", "max_abs_diff" (network rebuilt from inference.json and
    models/model.pt against the trained one), "metadata_checked"}."""
    from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

    model = segmenter.module.model.cpu().eval()
    meta = metadata(segmenter)
    missing = check_metadata(meta)
    if missing:
        raise TaskError(f"bundle metadata.json lacks {', '.join(missing)}")
    for sub in ("models", "configs", "docs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    meta_file = atomic_write(folder / "configs" / "metadata.json", json.dumps(meta, indent=4))
    config_file = atomic_write(folder / "configs" / "inference.json",
                               json.dumps(inference_config(segmenter), indent=4))
    torch.save(model.state_dict(), folder / "models" / "model.pt")
    metrics = segmenter.trained.metrics
    usage = ("from monai.bundle import run  # or: python -m monai.bundle run --config_file configs/inference.json ...\n"
             f"run(config_file='{folder.name}/configs/inference.json', bundle_root='{folder.name}',\n"
             "    dataset_dir='my_scans', output_dir='segmentations')  # writes <name>_seg.nii.gz per .nii(.gz) image")
    extra = [f"Label values: {', '.join(f'{i} {n}' for i, n in enumerate(segmenter.class_names))}. Input: "
             f"{', '.join(segmenter.modalities)}; sliding window over {tuple(segmenter.cfg.roi_size)} patches.", ""]
    write_model_card(folder / "docs", model_card(f"{segmenter.hparams['model_name']} (MONAI bundle)", metrics,
                                                 usage, extra))
    checked = "mandatory keys of the bundle specification"
    quiet = contextlib.redirect_stdout(io.StringIO())
    if schema is not None:
        try:
            with quiet:
                verify_metadata(meta_file=str(meta_file), filepath=str(schema))
        except ValueError as err:
            raise TaskError(f"bundle metadata.json does not satisfy --schema {schema}: {err}") from None
        checked = f"schema {schema}"
    with quiet:
        verify_net_in_out(net_id="network_def", meta_file=str(meta_file), config_file=str(config_file),
                          device="cpu")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    rebuilt = parser.get_parsed_content("network_def").eval()
    rebuilt.load_state_dict(torch.load(folder / "models" / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        diff = float((rebuilt(example) - model(example)).abs().max())
    if not diff <= BUNDLE_TOLERANCE:
        raise TaskError(f"bundle: the network rebuilt from {config_file} differs from the trained one by {diff:.2e}")
    return {"folder": str(folder), "max_abs_diff": diff, "metadata_checked": checked}


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


TASK = Task(name="medical-export", module="tasks.medical export", doc=__doc__, add_options=add_options,
            run=export, resolve=check, trainer=False, versions=("monai", "nibabel"))
