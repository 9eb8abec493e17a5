"""Image-folder evaluation sets (`train/<class>/*`, `val/<class>/*`) from real photos shipped by registry packages.

- `fashion`: Zalando's Fashion-MNIST product photos (Debian `dataset-fashion-mnist`, 28 x 28 grey, 10 classes);
  training images from its training file, validation images from its test file.
- `faces`: face / not-face crops from Labeled Faces in the Wild (scikit-image's `skimage/data/lfw_subset.npy`,
  100 faces then 100 other patches, 25 x 25 grey).
- `stamps`: colour photos of animals, fruit, vegetables and flowers cut out for Tux Paint (Debian
  `tuxpaint-stamps-default`, cartoons left out), put on a white background, any size; a class is its stamp folder.
- `objects`: the same package's photo stamps of other things: coins and banknotes, tools, musical instruments, fish,
  planets and the moon (other folders than `stamps`, so no image is in both sets).
"""
from __future__ import annotations

import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from .writers import Provenance, fresh_dir, write_image_folder

__all__ = ["FACES", "FASHION", "OBJECTS", "STAMPS", "write_faces", "write_fashion", "write_objects", "write_stamps"]

FASHION = Provenance("fashion", "dataset-fashion-mnist (Debian)", "MIT",
                     "Fashion-MNIST product photos, 28x28 grey, 10 classes; val from its test file")
FACES = Provenance("faces", "scikit-image (PyPI), skimage/data/lfw_subset.npy", "LFW: research use; scikit-image BSD-3",
                   "25x25 grey crops: 100 faces (Labeled Faces in the Wild) and 100 non-face patches")
STAMPS = Provenance("stamps", "tuxpaint-stamps-default (Debian)", "GPL-2 / CC (per stamp, see its copyright file)",
                    "colour photos of birds, mammals, fruit, vegetables, flowers on white; 2/3 train, 1/3 val")
OBJECTS = Provenance("objects", "tuxpaint-stamps-default (Debian)", "GPL-2 / CC (per stamp, see its copyright file)",
                     "colour photos of money, tools, musical instruments, fish, planets on white; 2/3 train, 1/3 val")

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
STAMP_DIR = Path("/usr/share/tuxpaint/stamps")
STAMP_CLASSES = {"bird": "animals/birds", "mammal": "animals/mammals", "fruit": "food/fruit",
                 "vegetable": "food/vegetables", "flower": "plants/flowers"}
OBJECT_CLASSES = {"money": "symbols/money", "tool": "household/tools", "instrument": "hobbies/music",
                  "fish": "animals/fish", "space": "space"}
NOT_PHOTOS = {"cartoon", "00_symbols"}  # stamp folders of drawings: cartoons, currency signs


def _image(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.asarray(array, dtype=np.uint8))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, gzip or plain) as an array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    _, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: IDX type 0x{dtype_code:02x}, expected unsigned bytes (0x08)")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_fashion(out: Path, source: Path = FASHION_DIR, train_per_class: int = 40, val_per_class: int = 20) -> Path:
    """The first `train_per_class` / `val_per_class` images of each class of the training / test file."""
    source = Path(source)
    if not (source / "train-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError(f"{source}: no Fashion-MNIST files; apt-get install dataset-fashion-mnist or pass "
                                "--source")
    root = fresh_dir(out)
    for split, prefix, per_class in (("train", "train", train_per_class), ("val", "t10k", val_per_class)):
        images, labels = read_idx(source / f"{prefix}-images-idx3-ubyte.gz"), read_idx(
            source / f"{prefix}-labels-idx1-ubyte.gz")
        picked = [i for c in range(10) for i in np.flatnonzero(labels == c)[:per_class]]
        write_image_folder(root, ((split, FASHION_CLASSES[labels[i]], f"{prefix}{i:05d}.png", _image(images[i]))
                                  for i in picked))
    FASHION.record(root, "dataset-fashion-mnist", source, {"train": 10 * train_per_class, "val": 10 * val_per_class})
    return root


def lfw_subset_path() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / "lfw_subset.npy"


def write_faces(out: Path, source: Path | None = None, val_fraction: float = 0.4, seed: int = 0) -> Path:
    """The 200 crops of `lfw_subset.npy` (first half faces), a stratified random `val_fraction` for validation."""
    source = Path(source) if source is not None else lfw_subset_path()
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: pip install scikit-image, or pass --source")
    crops = np.load(source)
    half = len(crops) // 2
    labels = np.array(["face"] * half + ["other"] * (len(crops) - half))
    rng = np.random.default_rng(seed)
    val = np.zeros(len(crops), bool)
    for label in ("face", "other"):
        members = np.flatnonzero(labels == label)
        val[rng.permutation(members)[: round(val_fraction * len(members))]] = True
    scale = 255.0 if crops.max() <= 1.0 else 1.0
    root = fresh_dir(out)
    write_image_folder(root, (("val" if val[i] else "train", labels[i], f"{i:03d}.png",
                               _image(np.clip(crops[i] * scale, 0, 255).round())) for i in range(len(crops))))
    FACES.record(root, "scikit-image", source, {"train": int((~val).sum()), "val": int(val.sum())})
    return root


def _on_white(path: Path):
    from PIL import Image

    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def write_stamps(out: Path, source: Path = STAMP_DIR, val_fraction: float = 1 / 3, seed: int = 0) -> Path:
    """Every photo stamp (PNG, not under a `NOT_PHOTOS` folder) of the `STAMP_CLASSES` folders and their sub-folders,
    as JPEG on white; a random `val_fraction` of each class for validation."""
    return _write_stamp_classes(out, Path(source), STAMP_CLASSES, STAMPS, val_fraction, seed)


def write_objects(out: Path, source: Path = STAMP_DIR, val_fraction: float = 1 / 3, seed: int = 0) -> Path:
    """As `write_stamps`, for the `OBJECT_CLASSES` folders."""
    return _write_stamp_classes(out, Path(source), OBJECT_CLASSES, OBJECTS, val_fraction, seed)


def _write_stamp_classes(out: Path, source: Path, classes: dict[str, str], provenance: Provenance,
                         val_fraction: float, seed: int) -> Path:
    if not source.is_dir():
        raise FileNotFoundError(f"{source} not found: apt-get install tuxpaint-stamps-default, or pass --source")
    rng = np.random.default_rng(seed)
    root = fresh_dir(out)
    counts = {}
    for label, folder in classes.items():
        files = sorted(p for p in (source / folder).rglob("*.png")
                       if not NOT_PHOTOS & set(p.relative_to(source).parts))
        val = set(rng.permutation(len(files))[: round(val_fraction * len(files))].tolist())
        stems = Counter(p.stem for p in files)  # a stem in two sub-folders (US and Canadian pennies): named by path
        names = [f"{p.stem if stems[p.stem] == 1 else '_'.join(p.relative_to(source / folder).with_suffix('').parts)}"
                 ".jpg" for p in files]
        write_image_folder(root, (("val" if i in val else "train", label, names[i], _on_white(p))
                                  for i, p in enumerate(files)))
        counts[label] = {"train": len(files) - len(val), "val": len(val)}
    if not any(c["train"] for c in counts.values()):
        raise FileNotFoundError(f"{source}: no photo stamps under {', '.join(classes.values())}")
    provenance.record(root, "tuxpaint-stamps-default", source, counts)
    return root
