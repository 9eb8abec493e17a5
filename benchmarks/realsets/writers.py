"""Writers of the on-disk layouts the task CLIs read (ESC-50, image folders, Medical Segmentation Decathlon) and the
provenance record every evaluation set carries (`SOURCE.json`: package, version, licence, what was taken)."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tasks.audio.data import ESC50_COLUMNS
from tasks.common.files import atomic_write

__all__ = ["Provenance", "SoundClip", "package_version", "write_decathlon", "write_esc50", "write_image_folder"]

ESC50_RATE = 44100  # the real ESC-50 files: 5 s, 44.1 kHz, mono, 16-bit PCM
ESC50_SECONDS = 5.0


@dataclass(frozen=True)
class Provenance:
    """Where an evaluation set comes from: the registry package holding the recordings, scans or photos."""

    name: str
    package: str  # e.g. "hydrogen-drumkits (Debian)", "nilearn (PyPI)"
    licence: str
    description: str

    def record(self, root: Path, version_of: str, source: Path, counts: dict[str, Any]) -> None:
        """Write `root/SOURCE.json`."""
        info = dict(set=self.name, package=self.package, version=package_version(version_of), licence=self.licence,
                    source=str(source), description=self.description, counts=counts)
        atomic_write(root / "SOURCE.json", json.dumps(info, indent=2) + "\n")


def package_version(name: str) -> str:
    """Installed version of a Python distribution, else of a Debian package (dpkg), else 'unknown'."""
    try:
        return version(name)
    except PackageNotFoundError:
        pass
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def fresh_dir(root: Path) -> Path:
    """`root`, emptied (a generator always writes the whole set)."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return root


@dataclass(frozen=True)
class SoundClip:
    """One ESC-50 row with its mono waveform at `ESC50_RATE` (at most 5 s; shorter clips are padded with zeros, as
    ESC-50 pads its short events)."""

    wave: np.ndarray
    fold: int
    target: int
    category: str
    src: str  # no '-' (ESC-50 file names are fold-src-take-target)
    take: str


def write_esc50(root: Path, clips: Sequence[SoundClip]) -> Path:
    """`root/audio/{fold}-{src}-{take}-{target}.wav` (5 s, 44.1 kHz, 16-bit) and `root/meta/esc50.csv` (written
    last); `esc10` is False for every row."""
    import soundfile as sf

    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(exist_ok=True)
    length = int(ESC50_RATE * ESC50_SECONDS)
    rows = []
    for clip in clips:
        if "-" in clip.src or "-" in clip.take:
            raise ValueError(f"ESC-50 src and take may not contain '-': {clip.src!r}, {clip.take!r}")
        wave = np.zeros(length, np.float32)
        wave[: min(length, len(clip.wave))] = clip.wave[:length]
        name = f"{clip.fold}-{clip.src}-{clip.take}-{clip.target}.wav"
        sf.write(root / "audio" / name, wave, ESC50_RATE, subtype="PCM_16")
        rows.append((name, clip.fold, clip.target, clip.category, "False", clip.src, clip.take))
    with open(root / "meta" / "esc50.csv.tmp", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ESC50_COLUMNS)
        writer.writerows(rows)
    (root / "meta" / "esc50.csv.tmp").replace(root / "meta" / "esc50.csv")
    return root


def read_mono(path: Path, rate: int = ESC50_RATE) -> np.ndarray:
    """A sound file (WAV, FLAC, AIFF, OGG: libsndfile) as mono float32 at `rate` Hz, peak 1 (silence stays 0)."""
    import soundfile as sf
    import torch
    import torchaudio

    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    wave = data.mean(axis=1)
    if file_rate != rate:
        wave = torchaudio.functional.resample(torch.from_numpy(wave), int(file_rate), rate).numpy()
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return wave / peak if peak > 0 else wave


def write_image_folder(root: Path, images: Iterable[tuple[str, str, str, Any]]) -> Path:
    """`root/<split>/<class>/<name>` for `(split, class, name, PIL image)` items."""
    for split, label, name, image in images:
        path = root / split / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return root


def write_decathlon(root: Path, name: str, description: str, modality: str, labels: Sequence[str],
                    cases: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> Path:
    """`root/imagesTr`, `root/labelsTr` (NIfTI) and `root/dataset.json` (written last) from `(case id, image,
    label, affine)` items; `labels[0]` is the background."""
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    training = []
    for case_id, image, label, affine in cases:
        file = f"{case_id}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / file)
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), root / "labelsTr" / file)
        training.append({"image": f"./imagesTr/{file}", "label": f"./labelsTr/{file}"})
    dataset = {"name": name, "description": description, "tensorImageSize": "3D", "modality": {"0": modality},
               "labels": {str(i): n for i, n in enumerate(labels)}, "numTraining": len(training), "numTest": 0,
               "training": training, "test": []}
    atomic_write(root / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    return root
