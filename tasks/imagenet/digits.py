"""Embedded default dataset: scikit-learn's bundled handwritten digits (1797 real 8x8 scans, 10 classes) written
as PNG files in the ImageNet folder layout, so the default run goes through the same loader as real ImageNet.

Split: stratified 80/20 with `train_test_split(random_state=0)` -> 1437 train / 360 val images. Each 8x8 image
(values 0..16) is scaled to 0..255 and upsampled with bicubic interpolation to `size`x`size` grayscale
(the loader converts to RGB, as for any ImageNet JPEG).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tasks.common import TaskError

SPLIT_SEED = 0
VAL_FRACTION = 0.2


def default_cache_dir() -> Path:
    """`$FOCALMOD_CACHE`, else `~/.cache/focalmod`."""
    return Path(os.environ.get("FOCALMOD_CACHE") or Path.home() / ".cache" / "focalmod")


def digits_image_folder(cache_dir: Path | None = None, size: int = 32) -> Path:
    """Write (once) and return `<cache>/digits_<size>px` holding `train/<digit>/*.png` and `val/<digit>/*.png`.

    Safe when several processes call it at once (DDP ranks): each writes a private temp folder and renames it
    into place; the first rename wins and the others discard their copy."""
    root = Path(cache_dir or default_cache_dir())
    target = root / f"digits_{size}px"
    if (target / "manifest.json").is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".digits_{size}px."))
    except OSError as err:
        raise TaskError(f"cannot write the digits set under {root} ({err.strerror}); set FOCALMOD_CACHE to a "
                        "writable folder or pass --data") from None
    try:
        _write(tmp, size)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first (target exists and is not empty)
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write(folder: Path, size: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(
        index, test_size=VAL_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    for split, ids in (("train", train_idx), ("val", val_idx)):
        for i in sorted(ids):
            label = int(digits.target[i])
            pixels = np.clip(digits.images[i] * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
            img = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)
            out = folder / split / str(label) / f"{i:04d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            img.save(out)
    manifest = {
        "source": "sklearn.datasets.load_digits",
        "size": size,
        "split_seed": SPLIT_SEED,
        "val_fraction": VAL_FRACTION,
        "train": len(train_idx),
        "val": len(val_idx),
        "classes": [str(c) for c in range(10)],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
