"""nnU-Net's raw layout as an input of tasks.medical (read into the structure `read_decathlon` returns).

Layout (nnU-Net v2, documentation/dataset_format.md)::

    DatasetXXX_Name/
      dataset.json    {"channel_names": {"0": "CT", ...}, "labels": {"background": 0, "organ": 1, ...},
                       "numTraining": N, "file_ending": ".nii.gz"}
      imagesTr/       CASE_0000.nii.gz, CASE_0001.nii.gz, ...   (one file per channel)
      labelsTr/       CASE.nii.gz
      imagesTs/       optional, CASE_0000.nii.gz, ...

One channel gives each case one image path (exactly as a Decathlon case); several give a list of channel paths,
which MONAI's `LoadImaged` stacks as the channel axis.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.cli import TaskError

from .data import DecathlonDataset

__all__ = ["is_nnunet_raw", "read_nnunet_raw", "write_nnunet_raw"]

REQUIRED = ("channel_names", "labels", "numTraining", "file_ending")
# Everything else nnU-Net v2's dataset.json documents or its converters write (descriptive only).
OPTIONAL = ("name", "description", "reference", "licence", "license", "release", "tensorImageSize",
            "overwrite_image_reader_writer", "dataset", "converted_by")
NIFTI_ENDINGS = (".nii.gz", ".nii")
_READERS = (None, "NibabelIO", "NibabelIOWithReorient", "SimpleITKIO")  # all read NIfTI


def is_nnunet_raw(info: dict[str, Any]) -> bool:
    """An nnU-Net v2 dataset.json names its channels and file ending (a Decathlon one has 'modality', 'training')."""
    return "channel_names" in info or "file_ending" in info


def _labels(meta: Path, labels: Any) -> dict[int, str]:
    if not isinstance(labels, dict) or not labels:
        raise TaskError(f"{meta}: 'labels' must map label names to integer values, got {labels!r}")
    out: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise TaskError(f"{meta}: label {name!r} is a region {value} (nnU-Net region-based training); "
                            "tasks.medical trains one value per class")
        if isinstance(value, bool) or not isinstance(value, int) or value in out:
            raise TaskError(f"{meta}: label {name!r} must have a distinct integer value, got {value!r}")
        out[value] = str(name)
    if sorted(out) != list(range(len(out))) or len(out) < 2:
        raise TaskError(f"{meta}: label values must be 0..K-1 (0 = background, K >= 2), got {sorted(out)}")
    return out


def _channels(meta: Path, channel_names: Any) -> list[str]:
    if not isinstance(channel_names, dict) or not channel_names:
        raise TaskError(f"{meta}: 'channel_names' must map '0', '1', ... to channel names, got {channel_names!r}")
    if sorted(channel_names, key=lambda k: (not str(k).isdigit(), str(k))) != [str(i) for i in
                                                                              range(len(channel_names))]:
        raise TaskError(f"{meta}: 'channel_names' keys must be '0'..'{len(channel_names) - 1}', got "
                        f"{list(channel_names)}")
    return [str(channel_names[str(i)]) for i in range(len(channel_names))]


def _case_files(folder: Path, case: str, num_channels: int, ending: str, meta: Path) -> list[Path]:
    files = [folder / f"{case}_{c:04d}{ending}" for c in range(num_channels)]
    for path in files:
        if not path.is_file():
            raise TaskError(f"{path}: missing channel file of case {case!r} ({meta} declares {num_channels} "
                            f"channel(s): {case}_0000{ending} .. {case}_{num_channels - 1:04d}{ending})")
    return files


def _image_cases(folder: Path, ending: str) -> dict[str, list[Path]]:
    """Case id -> its channel files, from the `CASE_XXXX<ending>` names in `folder`."""
    pattern = re.compile(rf"^(.+)_(\d{{4}}){re.escape(ending)}$")
    cases: dict[str, list[Path]] = {}
    for path in sorted(folder.glob(f"*{ending}")):
        match = pattern.match(path.name)
        if match is None:
            raise TaskError(f"{path}: image names in {folder.name}/ must be CASE_XXXX{ending} (XXXX = 4-digit channel)")
        cases.setdefault(match.group(1), []).append(path)
    return cases


def _explicit_cases(root: Path, meta: Path, dataset: Any, num_channels: int) -> list[dict[str, Any]]:
    """The optional 'dataset' key: {case: {"images": [...], "label": ...}} with paths relative to the folder."""
    if not isinstance(dataset, dict) or not dataset:
        raise TaskError(f"{meta}: 'dataset' must map case ids to {{'images': [...], 'label': ...}}")
    out = []
    for case, entry in dataset.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("images"), list) or "label" not in entry:
            raise TaskError(f"{meta}: dataset[{case!r}] must be {{'images': [...], 'label': ...}}, got {entry!r}")
        if len(entry["images"]) != num_channels:
            raise TaskError(f"{meta}: dataset[{case!r}] lists {len(entry['images'])} image(s) for {num_channels} "
                            "channel(s)")
        paths = [(root / p).resolve() for p in [*entry["images"], entry["label"]]]
        for path in paths:
            if not path.is_file():
                raise TaskError(f"{path}: listed by {meta} dataset[{case!r}] but does not exist")
        out.append(_case(paths[:-1], paths[-1]))
    return out


def _case(images: list[Path], label: Path) -> dict[str, Any]:
    return {"image": str(images[0]) if len(images) == 1 else [str(p) for p in images], "label": str(label)}


def read_nnunet_raw(root: Path, info: dict[str, Any] | None = None) -> DecathlonDataset:
    """Parse and check an nnU-Net v2 raw dataset folder: dataset.json keys, label values, and that every case has
    its label and every declared channel file (and no other). Returns the `read_decathlon` structure."""
    root = Path(root)
    meta = root / "dataset.json"
    if info is None:
        try:
            info = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TaskError(f"{meta}: cannot read it as JSON: {err}") from None
    unknown = sorted(set(info) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        hint = " (region-based training is not supported)" if "regions_class_order" in unknown else ""
        raise TaskError(f"{meta}: unknown key(s) {unknown} for an nnU-Net v2 dataset.json{hint}; expected "
                        f"{', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}")
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        raise TaskError(f"{meta}: missing key(s) {missing} (nnU-Net v2 dataset.json needs {', '.join(REQUIRED)})")
    ending = info["file_ending"]
    if ending not in NIFTI_ENDINGS:
        raise TaskError(f"{meta}: file_ending {ending!r}: tasks.medical reads NIfTI ({' or '.join(NIFTI_ENDINGS)})")
    if info.get("overwrite_image_reader_writer") not in _READERS:
        raise TaskError(f"{meta}: overwrite_image_reader_writer {info['overwrite_image_reader_writer']!r} is not a "
                        f"NIfTI reader ({', '.join(r for r in _READERS if r)})")
    labels = _labels(meta, info["labels"])
    channels = _channels(meta, info["channel_names"])
    if "dataset" in info:
        training = _explicit_cases(root, meta, info["dataset"], len(channels))
    else:
        images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
        for folder in (images_dir, labels_dir):
            if not folder.is_dir():
                raise TaskError(f"{folder}: missing (nnU-Net raw layout: imagesTr/, labelsTr/, dataset.json)")
        label_files = sorted(labels_dir.glob(f"*{ending}"))
        images = _image_cases(images_dir, ending)
        training = []
        for label in label_files:
            case = label.name[: -len(ending)]
            files = _case_files(images_dir, case, len(channels), ending, meta)
            extra = sorted(set(images.pop(case, [])) - set(files))
            if extra:
                raise TaskError(f"{extra[0]}: channel beyond the {len(channels)} declared in {meta} 'channel_names'")
            training.append(_case(files, label))
        if images:
            case = sorted(images)[0]
            raise TaskError(f"{images[case][0]}: image of case {case!r} has no label {labels_dir / (case + ending)}")
    if not isinstance(info["numTraining"], int) or info["numTraining"] != len(training):
        raise TaskError(f"{meta}: numTraining is {info['numTraining']!r} but {len(training)} training case(s) found")
    if not training:
        raise TaskError(f"{meta}: no training cases")
    test: list[str] = []
    if (root / "imagesTs").is_dir() and len(channels) == 1:  # predict takes one file per image
        test = [str(files[0].resolve()) for _, files in sorted(_image_cases(root / "imagesTs", ending).items())]
    name = str(info.get("name") or re.sub(r"^Dataset\d+_", "", root.name))
    return DecathlonDataset(root, name, labels, channels, training, test)


def _case_id(path: str) -> str:
    name = Path(path).name
    return next((name[: -len(e)] for e in NIFTI_ENDINGS if name.endswith(e)), name)


def write_nnunet_raw(dataset: DecathlonDataset, raw_root: Path, dataset_id: int, name: str | None = None) -> Path:
    """Copy a dataset (as `read_decathlon` returns it) into `raw_root/DatasetXXX_Name` in nnU-Net's raw layout:
    one file per channel (a Decathlon image with modalities last is split), labels, imagesTs, v2 dataset.json."""
    import nibabel as nib

    name = re.sub(r"[^A-Za-z0-9]", "", name or dataset.name) or "Data"
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    channels = len(dataset.modalities)

    def images(source: str | list[str], target: Path, case: str) -> None:
        if isinstance(source, list):
            for c, path in enumerate(source):
                shutil.copyfile(path, target / f"{case}_{c:04d}.nii.gz")
        elif channels == 1:
            shutil.copyfile(source, target / f"{case}_0000.nii.gz")
        else:
            image = nib.load(source)
            data = np.asanyarray(image.dataobj)
            for c in range(channels):
                nib.save(nib.Nifti1Image(data[..., c], image.affine, image.header), target / f"{case}_{c:04d}.nii.gz")

    for case in dataset.training:
        case_id = _case_id(case["label"])
        images(case["image"], folder / "imagesTr", case_id)
        shutil.copyfile(case["label"], folder / "labelsTr" / f"{case_id}.nii.gz")
    for path in dataset.test:
        images(path, folder / "imagesTs", _case_id(path))
    info = {"channel_names": {str(i): m for i, m in enumerate(dataset.modalities)},
            "labels": {dataset.labels[k]: k for k in sorted(dataset.labels)},
            "numTraining": len(dataset.training), "file_ending": ".nii.gz", "name": dataset.name}
    (folder / "dataset.json").write_text(json.dumps(info, indent=2))
    return folder
