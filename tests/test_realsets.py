"""benchmarks.realsets: each generator on a tiny source tree in the real package's format (Hydrogen drumkit.xml +
samples, Tux Paint and Hedgewars OGGs, Fashion-MNIST IDX files, scikit-image's lfw_subset.npy, RGBA stamps and
objects, the nilearn MNI152 and MRIcron Colin27/AAL NIfTI files); what it writes must pass the task loaders' own
checks."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from benchmarks.realsets import REALSETS
from benchmarks.realsets.images import read_idx, write_faces, write_fashion, write_objects, write_stamps
from benchmarks.realsets.scans import brain_blocks, write_colin_structures, write_mni_tissue
from benchmarks.realsets.sounds import (
    DRUM_FOLDS,
    drum_class,
    phrase_class,
    write_drums,
    write_languages,
    write_phrases,
    write_voices,
)
from tasks.audio.data import read_esc50

RATE = 44100


def _tone(seconds: float, freq: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def _kit(root: Path, kit: str, instruments: dict[str, list[str]]) -> None:
    """A Hydrogen kit folder: drumkit.xml (namespaced, as Hydrogen writes it) and one FLAC per layer."""
    (root / kit).mkdir(parents=True)
    parts = []
    for i, (name, files) in enumerate(instruments.items()):
        layers = "".join(f"<layer><filename>{f}</filename><min>0</min><max>1</max></layer>" for f in files)
        parts.append(f"<instrument><id>{i}</id><name>{name}</name>{layers}</instrument>")
        for n, f in enumerate(files):
            sf.write(root / kit / f, _tone(0.2, 100 + 300 * i + 10 * n, channels=2), 48000)
    (root / kit / "drumkit.xml").write_text(
        '<?xml version="1.0"?><drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
        f"<name>{kit}</name><instrumentList>{''.join(parts)}</instrumentList></drumkit_info>")


def test_drum_instrument_names_map_to_classes() -> None:
    assert [drum_class(n) for n in ("Kick (Tama Superstar 22\")", "c3 - bass drum 1", "Hi-Hat Closed", "Closed HH",
                                    "Sabian Hat Pedal", "Pearl Tom Floor", "Snare Rimshot", "Crash/Ride Bow",
                                    "China (Paiste Alpha 18\")", "Stick", "Snare Roll", "Cowbell")] == [
        "kick", "kick", "hihat", "hihat", "hihat", "tom", "snare", "cymbal", "cymbal", None, None, None]


def test_drums_set_holds_out_whole_kits(tmp_path: Path) -> None:
    source = tmp_path / "drumkits"
    kits = sorted(DRUM_FOLDS)[:3]
    for kit in kits:
        _kit(source, kit, {"Kick": ["k1.flac", "k2.flac"], "Snare": ["s.flac"], "Closed HH": ["h.flac"],
                           "Tom Low": ["t.flac"], "Crash": ["c.flac"], "Cowbell": ["cb.flac"]})
    root = write_drums(tmp_path / "out", source, per_class_per_kit=1)
    index = read_esc50(root)  # the task's own loader and its checks
    assert index.class_names == ["kick", "hihat", "cymbal", "snare", "tom"] and len(index.clips) == 3 * 5
    assert sorted(set(index.folds.tolist())) == sorted({DRUM_FOLDS[k] for k in kits})
    info = sf.info(index.path(index.clips[0]))
    assert (info.samplerate, info.frames, info.channels) == (RATE, 5 * RATE, 1)
    provenance = json.loads((root / "SOURCE.json").read_text())
    assert provenance["package"].startswith("hydrogen-drumkits") and provenance["licence"]
    with pytest.raises(FileNotFoundError, match="apt-get install hydrogen-drumkits"):
        write_drums(tmp_path / "none", tmp_path / "missing")


def test_phrases_set_holds_out_whole_voices(tmp_path: Path) -> None:
    source = tmp_path / "voices"
    for v, voice in enumerate(("British", "Default", "Pirate")):
        (source / voice).mkdir(parents=True)
        for n, stem in enumerate(("Hello", "Uh-oh", "Jump1", "Jump2") + (("Extra",) if v == 0 else ())):
            sf.write(source / voice / f"{stem}.ogg", _tone(0.3, 200 + 100 * n), RATE, format="OGG", subtype="VORBIS")
    root = write_phrases(tmp_path / "out", source)
    index = read_esc50(root)
    assert index.class_names == ["hello", "jump", "uhoh"], "phrases every voice says; numbered grunts pooled"
    assert len(index.clips) == 3 * 4 and sorted(set(index.folds.tolist())) == [1, 2, 4]
    assert [phrase_class(s) for s in ("Ow3", "Ooff1", "Takecover")] == ["ow", "ooff", "takecover"]


def test_voices_set_holds_out_whole_phrases(tmp_path: Path) -> None:
    source = tmp_path / "voices"
    stems = ("Hello", "Uh-oh", "Jump1", "Jump2", "Traitor", "Takecover", "Ow1", "Ow2", "Ooff1")
    for v, voice in enumerate(("British", "Default_es", "Pirate")):
        (source / voice).mkdir(parents=True)
        for n, stem in enumerate(stems + (("Extra",) if v == 0 else ())):
            sf.write(source / voice / f"{stem}.ogg", _tone(0.3, 200 + 100 * n + 30 * v), RATE, format="OGG",
                     subtype="VORBIS")
    (source / "empty").mkdir()  # not a voice pack: no recordings
    root = write_voices(tmp_path / "out", source)
    index = read_esc50(root)
    assert index.class_names == ["british", "default_es", "pirate"] and len(index.clips) == 3 * len(stems)
    assert sorted(set(index.folds.tolist())) == [1, 2, 3, 4, 5], "7 phrases dealt to 5 folds"
    fold_of = {}
    for clip in index.clips:  # every recording of a phrase (grunts pooled) in one fold, in every voice
        assert fold_of.setdefault(clip.src_file.rstrip("0123456789"), clip.fold) == clip.fold
    provenance = json.loads((root / "SOURCE.json").read_text())
    assert provenance["counts"]["classes"] == 3 and provenance["counts"]["phrases"] == len(stems)
    with pytest.raises(FileNotFoundError, match="apt-get install hedgewars-data"):
        write_voices(tmp_path / "none", tmp_path / "missing")


def test_languages_set_keeps_a_stamp_in_one_fold(tmp_path: Path) -> None:
    source = tmp_path / "stamps"
    (source / "animals").mkdir(parents=True)
    for s in range(30):
        for lang in ("fr", "ru", "xx"):
            sf.write(source / "animals" / f"stamp{s}_desc_{lang}.ogg", _tone(0.2, 300 + 20 * s), RATE, format="OGG",
                     subtype="VORBIS")
    root = write_languages(tmp_path / "out", source, clips_per_language=5)
    index = read_esc50(root)
    assert index.class_names == ["fr", "ru"] and len(index.clips) <= 10
    assert all(sf.info(index.path(c)).frames == 5 * RATE for c in index.clips)


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_faces_and_stamps_write_image_folders(tmp_path: Path) -> None:
    from tasks.imagenet.data import FolderData

    rng = np.random.default_rng(0)
    fm = tmp_path / "fashion-mnist"
    fm.mkdir()
    for prefix, n in (("train", 40), ("t10k", 30)):
        _idx(fm / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _idx(fm / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    assert read_idx(fm / "train-labels-idx1-ubyte.gz").tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    fashion = FolderData.from_root(write_fashion(tmp_path / "fashion", fm, train_per_class=2, val_per_class=3))
    assert len(fashion.classes) == 10 and len(list(fashion.val_dir.rglob("*.png"))) == 30
    np.save(tmp_path / "lfw_subset.npy", rng.random((20, 25, 25)))
    faces = FolderData.from_root(write_faces(tmp_path / "faces", tmp_path / "lfw_subset.npy"))
    assert faces.classes == ["face", "other"] and len(list(faces.val_dir.rglob("*.png"))) == 8
    assert Image.open(next(faces.train_dir.rglob("*.png"))).size == (25, 25)
    stamps_src = tmp_path / "tux"
    for folder in ("animals/birds", "animals/birds/cartoon", "animals/mammals/dogs", "food/fruit", "food/vegetables",
                   "plants/flowers"):
        (stamps_src / folder).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            rgba = np.zeros((20, 30, 4), np.uint8)
            rgba[5:15, 5:25] = (200, 30, 30, 255)  # opaque object on a transparent background
            Image.fromarray(rgba).save(stamps_src / folder / f"s{i}.png")
    stamps = FolderData.from_root(write_stamps(tmp_path / "stamps", stamps_src))
    assert stamps.classes == ["bird", "flower", "fruit", "mammal", "vegetable"]
    assert len(list((stamps.train_dir / "bird").glob("*.jpg"))) == 2, "cartoon stamps are left out"
    photo = np.asarray(Image.open(next((stamps.train_dir / "bird").glob("*.jpg"))))
    assert photo.shape == (20, 30, 3) and photo[0, 0].min() > 240, "transparent pixels become white"
    for f, folder in enumerate(("symbols/money/euro", "symbols/money/us/coins", "symbols/money/00_symbols",
                                "household/tools", "hobbies/music/string", "animals/fish", "space/planets", "space")):
        (stamps_src / folder).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            name = f"coin{i}" if "money" in folder else f"o{f}{i}"  # the same coin name in two currencies
            Image.fromarray(np.full((12, 16, 4), 128, np.uint8)).save(stamps_src / folder / f"{name}.png")
    objects = FolderData.from_root(write_objects(tmp_path / "objects", stamps_src))
    assert objects.classes == ["fish", "instrument", "money", "space", "tool"]
    money = sorted(p.name for p in (tmp_path / "objects").rglob("money/*.jpg"))
    assert len(money) == 6 and "euro_coin0.jpg" in money and "us_coins_coin0.jpg" in money, "no currency signs"
    assert len(list((objects.train_dir / "space").glob("*.jpg"))) + len(
        list((objects.val_dir / "space").glob("*.jpg"))) == 6, "sub-folders belong to their class"


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, affine), path)


def test_brain_sets_are_a_dozen_decathlon_blocks_with_world_affines(tmp_path: Path) -> None:
    from tasks.medical.data import check_case, read_decathlon

    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-90, -126, -72)
    ball = np.linalg.norm(np.indices((30, 36, 30)) - np.array([15, 18, 15])[:, None, None, None], axis=0)
    t1 = np.clip(200 - 6 * ball, 0, 255).astype(np.uint8)
    mni = tmp_path / "nilearn"
    mni.mkdir()
    _nifti(mni / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", t1, affine)
    _nifti(mni / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz", ((ball > 6) & (ball < 12)).astype(np.float32),
           affine)
    _nifti(mni / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz", (ball <= 6).astype(np.float32), affine)
    colin = tmp_path / "mricron"
    colin.mkdir()
    aal = np.where(ball < 4, 71, np.where(ball < 12, 1, 0)).astype(np.uint8)
    aal[:, :8][aal[:, :8] > 0] = 95  # the posterior part: cerebellum
    _nifti(colin / "ch2.nii.gz", t1, affine)
    _nifti(colin / "aal.nii.gz", aal, affine)
    for root, labels in ((write_mni_tissue(tmp_path / "mni", mni), [0, 1, 2]),
                         (write_colin_structures(tmp_path / "colin", colin), [0, 1, 2, 3])):
        dataset = read_decathlon(root)
        assert len(dataset.training) == 12 and sorted(dataset.labels) == labels
        for case in dataset.training:
            check_case(case, dataset.labels, spatial_dims=3, num_modalities=1)
        import nibabel as nib

        first = nib.load(dataset.training[0]["image"])
        assert first.get_data_dtype() == np.uint8
        values = set()
        for case in dataset.training:
            image = nib.load(case["image"])
            origin = image.affine[:3, 3]
            voxel = np.round(np.linalg.solve(affine[:3, :3], origin - affine[:3, 3])).astype(int)
            block = np.asarray(image.dataobj)
            np.testing.assert_array_equal(block, np.clip(t1 / np.percentile(t1[t1 > 0], 99.9) * 255, 0, 255).round()
                                          [tuple(slice(v, v + s) for v, s in zip(voxel, block.shape))])
            values |= set(np.unique(np.asarray(nib.load(case["label"]).dataobj)).tolist())
        assert values == set(labels), "every class appears in some block"
    blocks = list(brain_blocks(ball < 12))
    covered = np.zeros(ball.shape, int)
    for _, slices in blocks:
        covered[slices] += 1
    assert len(blocks) == 12 and covered.max() == 1 and covered[ball < 12].min() == 1, "a tiling of the brain"


def test_registry_lists_two_sets_per_modality_at_least() -> None:
    tasks = [s.task for s in REALSETS.values()]
    assert {t: tasks.count(t) >= 2 for t in set(tasks)} == {
        "tasks.audio.esc50": True, "tasks.imagenet.train": True, "tasks.medical.train": True}
