"""Sound data on disk: read and validate a `--data` folder, load clips, cache their features.

Three layouts are read (`read_sounds` tells them apart), all into the same table (`ESC50Index`, one `Clip` per file
with its fold), so everything after reading is one code path:

- ESC-50 (karolpiczak/ESC-50, `read_esc50`): `audio/{fold}-{src}-{take}-{target}.wav` and `meta/esc50.csv` with
  columns filename, fold, target, category, esc10, src_file, take;
- a folder per class: `<class>/*.wav|.flac|.ogg` (also `train/<class>/...`, `test/<class>/...`: the split folders
  are merged), the class being the folder's name;
- Hugging Face `audiofolder` with metadata: `metadata.csv` with columns `file_name` (relative to the CSV's folder)
  and `label`, at the top and/or in split folders (`train/metadata.csv`, `test/metadata.csv`, ...; merged).

Classes are numbered in natural-sort order of their names ("2" before "10"). Folds come from a `fold` column (1..5)
where the layout has one, else from a seeded stratified split into 5 folds (scikit-learn `StratifiedKFold`,
shuffled with the run's `--split-seed`, by default its `--seed`), so a resumed run and the verbs get the same folds.
Clips are read with `soundfile`, down-mixed to mono, resampled with torchaudio and padded/cropped to the clip length.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch
import torchaudio

from tasks.common import TaskError
from tasks.common.files import atomic_write

from .features import PADS

__all__ = [
    "PADS",
    "trim_silence",
    "ESC50_COLUMNS",
    "Clip",
    "ESC50Index",
    "FeatureCache",
    "extract_features",
    "load_waveform",
    "read_esc50",
    "read_sounds",
    "read_run_data",
    "stratified_folds",
    "AUDIO_EXTENSIONS",
    "LAYOUTS",
]

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
NUM_FOLDS = 5
NUM_TARGETS = 50
_NAME = re.compile(r"^(\d+)-[^-]+-[^-]+-(\d+)\.wav$")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")  # what soundfile (libsndfile) reads everywhere
SPLIT_NAMES = ("train", "training", "validation", "valid", "val", "dev", "test", "testing", "eval", "evaluation")
METADATA = "metadata.csv"
LAYOUTS = {
    "esc50": "ESC-50 (meta/esc50.csv + audio/*.wav)",
    "class-folders": "a folder per class (<class>/*.wav, .flac or .ogg)",
    "audiofolder": "Hugging Face audiofolder (metadata.csv with file_name and label columns, at the top or in split "
                   "folders such as train/metadata.csv)",
}
ESC50_SPLIT = "the ESC-50 folds (fold column of meta/esc50.csv)"


@dataclass(frozen=True)
class Clip:
    """One row of `esc50.csv`."""

    filename: str
    fold: int
    target: int
    category: str
    esc10: bool
    src_file: str
    take: str


@dataclass
class ESC50Index:
    """Validated clips of one `--data` folder; `classes` maps the (possibly sparse) targets to 0..K-1. `layout`: a
    key of `LAYOUTS`; `split`: where the folds come from (words); `audio_dir`: what clip file names are relative to
    (None: ESC-50's `root/audio`)."""

    root: Path
    clips: list[Clip]
    layout: str = "esc50"
    split: str = ESC50_SPLIT
    audio_dir: Path | None = None

    @functools.cached_property
    def targets(self) -> list[int]:
        return sorted({c.target for c in self.clips})

    @property
    def class_names(self) -> list[str]:
        names = {c.target: c.category for c in self.clips}
        return [names[t] for t in self.targets]

    @property
    def labels(self) -> np.ndarray:
        """Class index (position of the clip's target in `targets`) of every clip."""
        lookup = {t: i for i, t in enumerate(self.targets)}
        return np.array([lookup[c.target] for c in self.clips], dtype=np.int64)

    @property
    def folds(self) -> np.ndarray:
        return np.array([c.fold for c in self.clips], dtype=np.int64)

    def path(self, clip: Clip) -> Path:
        return (self.root / "audio" if self.audio_dir is None else self.audio_dir) / clip.filename


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _parse_bool(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise TaskError(f"{where}: esc10 must be True or False, got {value!r}")


def _parse_int(value: str, column: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TaskError(f"{where}: {column} must be an integer, got {value!r}") from None


def _read_rows(csv_path: Path) -> list[Clip]:
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ESC50_COLUMNS if c not in header]
        if missing:
            raise TaskError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; expected {', '.join(ESC50_COLUMNS)}, "
                f"found {', '.join(header) or 'no header'}"
            )
        reader.fieldnames = header
        clips = []
        for line, row in enumerate(reader, start=2):
            name = (row["filename"] or "").strip()
            where = f"{csv_path} line {line} ({name or 'no filename'})"
            if not name:
                raise TaskError(f"{where}: empty filename")
            fold = _parse_int(row["fold"], "fold", where)
            target = _parse_int(row["target"], "target", where)
            if not 1 <= fold <= NUM_FOLDS:
                raise TaskError(f"{where}: fold {fold} is out of range; ESC-50 folds are 1..{NUM_FOLDS}")
            if not 0 <= target < NUM_TARGETS:
                raise TaskError(f"{where}: target {target} is out of range; ESC-50 targets are 0..{NUM_TARGETS - 1}")
            match = _NAME.match(name)
            if match and (int(match.group(1)), int(match.group(2))) != (fold, target):
                raise TaskError(f"{where}: file name says fold {match.group(1)}, target {match.group(2)}; "
                                f"the row says fold {fold}, target {target}")
            clips.append(
                Clip(name, fold, target, row["category"].strip(), _parse_bool(row["esc10"], where),
                     row["src_file"].strip(), row["take"].strip())
            )
    return clips


def _check_consistency(csv_path: Path, clips: list[Clip]) -> None:
    if not clips:
        raise TaskError(f"{csv_path}: no rows")
    seen, dupes, category = set(), [], {}
    for c in clips:
        if c.filename in seen:
            dupes.append(c.filename)
        seen.add(c.filename)
        if category.setdefault(c.target, c.category) != c.category:
            raise TaskError(f"{csv_path}: target {c.target} is both {category[c.target]!r} and {c.category!r}")
    if dupes:
        raise TaskError(f"{csv_path}: duplicate filename(s) {_names(dupes)}")


def read_esc50(root: Path, esc10: bool = False) -> ESC50Index:
    """Read `root/meta/esc50.csv`, check it against `root/audio/*.wav`; `esc10` keeps the ESC-10 rows only.

    Raises `TaskError` naming the problem: missing directory/CSV, missing columns, bad fold/target values,
    duplicate rows, files listed but absent, or WAV files present but not listed.
    """
    root = Path(root)
    csv_path, audio_dir = root / "meta" / "esc50.csv", root / "audio"
    if not root.is_dir():
        raise TaskError(f"--data: {root} is not a directory (expected an ESC-50 root with meta/ and audio/)")
    if not csv_path.is_file():
        raise TaskError(f"--data: {csv_path} not found (expected the ESC-50 metadata file meta/esc50.csv)")
    if not audio_dir.is_dir():
        raise TaskError(f"--data: {audio_dir} not found (expected the ESC-50 audio/ directory of .wav files)")
    clips = _read_rows(csv_path)
    _check_consistency(csv_path, clips)
    listed = {c.filename for c in clips}
    on_disk = {p.name for p in audio_dir.iterdir() if p.suffix.lower() == ".wav"}
    missing, extra = sorted(listed - on_disk), sorted(on_disk - listed)
    if missing:
        raise TaskError(f"{audio_dir}: {len(missing)} file(s) listed in {csv_path.name} are missing: {_names(missing)}")
    if extra:
        raise TaskError(f"{audio_dir}: {len(extra)} WAV file(s) not listed in {csv_path.name}: {_names(extra)}")
    if esc10:
        clips = [c for c in clips if c.esc10]
        if not clips:
            raise TaskError(f"--esc10: {csv_path} has no rows with esc10=True")
    return ESC50Index(root, clips)


def _layouts_text() -> str:
    return "; ".join(LAYOUTS.values())


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _audio_files(folder: Path, recursive: bool = True) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _metadata_files(root: Path) -> list[Path]:
    """`root/metadata.csv` and `root/<split>/metadata.csv` (the audiofolder convention), those present."""
    return [p for p in [root / METADATA, *(d / METADATA for d in _visible_dirs(root))] if p.is_file()]


def _class_dirs(root: Path) -> list[Path]:
    """The class folders of a folder-per-class layout: `root/<class>/`, or `root/<split>/<class>/` when every
    top-level folder is named as a split (train/, test/, ...); only those holding audio files."""
    tops = _visible_dirs(root)
    if tops and all(d.name.lower() in SPLIT_NAMES for d in tops) and not any(_audio_files(d, False) for d in tops):
        tops = [c for d in tops for c in _visible_dirs(d)]
    return [d for d in tops if _audio_files(d)]


def detect_layout(root: Path) -> str:
    """Which of `LAYOUTS` the folder `root` is in; one `TaskError` naming the three when it is in none."""
    if (root / "meta" / "esc50.csv").is_file() or ((root / "meta").is_dir() and (root / "audio").is_dir()):
        return "esc50"
    if _metadata_files(root):
        return "audiofolder"
    if _class_dirs(root):
        return "class-folders"
    raise TaskError(f"--data: {root} is in none of the accepted layouts: {_layouts_text()}")


def _class_folder_rows(root: Path) -> list[tuple[str, str, int | None]]:
    """(file name relative to `root`, class name, None) of every audio file of a folder-per-class layout."""
    loose = [p.name for p in _audio_files(root, recursive=False)]
    if loose:
        raise TaskError(f"--data: {root} holds {len(loose)} audio file(s) outside the class folders: {_names(loose)} "
                        f"(expected {root}/<class>/<file>)")
    rows = []
    for class_dir in _class_dirs(root):
        rows += [(p.relative_to(root).as_posix(), class_dir.name, None) for p in _audio_files(class_dir)]
    return rows


def _metadata_rows(root: Path, num_folds: int) -> list[tuple[str, str, int | None]]:
    """(file name relative to `root`, label, fold or None) of every row of the audiofolder metadata files; checks
    the columns, empty cells, fold values, duplicates, listed files that are missing and audio files not listed."""
    rows, with_fold, seen, dupes = [], set(), set(), []
    metas = _metadata_files(root)
    for meta in metas:
        with open(meta, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in ("file_name", "label") if c not in header]
            if missing:
                raise TaskError(f"{meta}: missing column(s) {', '.join(missing)}; the audiofolder layout needs "
                                f"file_name and label (and optionally fold), found {', '.join(header) or 'no header'}")
            reader.fieldnames = header
            with_fold.add("fold" in header)
            for line, row in enumerate(reader, start=2):
                name, label = (row["file_name"] or "").strip(), (row["label"] or "").strip()
                where = f"{meta} line {line} ({name or 'no file_name'})"
                if not name or not label:
                    raise TaskError(f"{where}: empty {'file_name' if not name else 'label'}")
                fold = None
                if "fold" in header:
                    fold = _parse_int(row["fold"], "fold", where)
                    if not 1 <= fold <= num_folds:
                        raise TaskError(f"{where}: fold {fold} is out of range; folds are 1..{num_folds}")
                rel = Path(os.path.relpath(meta.parent / name, root)).as_posix()
                if rel in seen:
                    dupes.append(rel)
                seen.add(rel)
                rows.append((rel, label, fold))
    if len(with_fold) > 1:
        raise TaskError(f"--data: some of {', '.join(map(str, metas))} have a fold column and some do not; give it "
                        "in all of them or in none (then the folds are a stratified split)")
    if not rows:
        raise TaskError(f"--data: {', '.join(map(str, metas))} list no files")
    if dupes:
        raise TaskError(f"--data: file(s) listed twice in {METADATA}: {_names(dupes)}")
    absent = [r[0] for r in rows if not (root / r[0]).is_file()]
    if absent:
        raise TaskError(f"--data: {len(absent)} file(s) listed in {METADATA} are missing under {root}: "
                        f"{_names(absent)}")
    unlisted = [p.relative_to(root).as_posix() for p in _audio_files(root)]
    unlisted = [n for n in unlisted if n not in seen]
    if unlisted:
        raise TaskError(f"--data: {len(unlisted)} audio file(s) under {root} are not listed in any {METADATA}: "
                        f"{_names(unlisted)}")
    return rows


def stratified_folds(labels: np.ndarray, seed: int, num_folds: int = NUM_FOLDS, where: str = "--data"
                     ) -> np.ndarray:
    """Fold (1..`num_folds`) of every item: scikit-learn's `StratifiedKFold(num_folds, shuffle=True,
    random_state=seed)` over the items in the order given, fold k holding the test items of its k-th split; each
    class is spread evenly over the folds (a class with fewer items than folds is missing from some)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if len(labels) < num_folds:
        raise TaskError(f"{where}: {len(labels)} clip(s) cannot be split into {num_folds} folds")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a class smaller than num_folds: said in the split text
            parts = list(StratifiedKFold(num_folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)),
                                                                                          labels))
    except ValueError as err:
        raise TaskError(f"{where}: cannot split into {num_folds} stratified folds: {err}") from None
    folds = np.zeros(len(labels), dtype=np.int64)
    for k, (_, test) in enumerate(parts, start=1):
        folds[test] = k
    return folds


def _index_from_rows(root: Path, layout: str, rows: list[tuple[str, str, int | None]], seed: int,
                     num_folds: int) -> ESC50Index:
    """The table of a layout other than ESC-50: targets are the natural-sort positions of the class names, folds
    the given ones or a stratified split."""
    from timm.utils.misc import natural_key

    classes = sorted({label for _, label, _ in rows}, key=natural_key)
    target = {c: i for i, c in enumerate(classes)}
    if all(fold is not None for _, _, fold in rows):
        folds = np.array([fold for _, _, fold in rows], dtype=np.int64)
        split = f"the fold column of {METADATA}"
    else:
        folds = stratified_folds(np.array([target[label] for _, label, _ in rows]), seed, num_folds,
                                 where=f"--data {root}")
        counts = {c: n for c, n in zip(*np.unique([label for _, label, _ in rows], return_counts=True))}
        small = sorted((c for c in classes if counts[c] < num_folds), key=natural_key)
        split = (f"a stratified {num_folds}-fold split (scikit-learn StratifiedKFold, shuffled, seed {seed})"
                 + (f"; {len(small)} class(es) with fewer than {num_folds} clips are missing from some folds: "
                    f"{_names(small)}" if small else ""))
    clips = [Clip(name, int(fold), target[label], label, False, Path(name).stem, "")
             for (name, label, _), fold in zip(rows, folds)]
    return ESC50Index(root, clips, layout=layout, split=split, audio_dir=root)


def read_sounds(root: Path, esc10: bool = False, seed: int = 0, num_folds: int = NUM_FOLDS) -> ESC50Index:
    """The clips of the `--data` folder `root` in any of `LAYOUTS` (`detect_layout`), as one table: ESC-50 through
    `read_esc50`, the others with class indices in natural-sort order of their names and folds from a `fold` column
    or a stratified split seeded with `seed` (`stratified_folds`). `esc10` needs the ESC-50 layout.

    Raises `TaskError` naming the problem: not a folder, no accepted layout, missing columns, bad folds, files
    listed but absent or present but not listed."""
    root = Path(root)
    if not root.is_dir():
        raise TaskError(f"--data: {root} is not a directory (expected {_layouts_text()})")
    layout = detect_layout(root)
    if layout == "esc50":
        return read_esc50(root, esc10=esc10)
    if esc10:
        raise TaskError(f"--esc10 keeps ESC-50's esc10 rows; {root} is in the {LAYOUTS[layout]} layout, not ESC-50")
    rows = _metadata_rows(root, num_folds) if layout == "audiofolder" else _class_folder_rows(root)
    return _index_from_rows(root, layout, rows, seed, num_folds)


def read_run_data(root: Path, config: dict) -> ESC50Index:
    """`read_sounds` of `root` with the settings of a training run's config.yaml (`esc10`, `split_seed`, else its
    `seed` for runs from before `--split-seed`), so the verbs see the folds training used."""
    seed = config.get("split_seed")
    if seed is None:
        seed = config.get("seed") or 0
    return read_sounds(root, esc10=bool(config.get("esc10")), seed=int(seed))


@functools.lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


TRIM_TOP_DB = 60.0  # librosa.effects.trim's default: frames this far below the loudest count as silence


def trim_silence(wave: torch.Tensor, sample_rate: int, top_db: float = TRIM_TOP_DB) -> torch.Tensor:
    """`wave` without its leading and trailing silence: 10 ms frames whose RMS is more than `top_db` below the
    loudest frame's (as `librosa.effects.trim`); an all-silent clip is returned unchanged."""
    hop = max(sample_rate // 100, 1)
    frames = torch.nn.functional.pad(wave, (0, (-wave.numel()) % hop)).reshape(-1, hop)
    rms = frames.pow(2).mean(dim=1).sqrt()
    active = torch.nonzero(rms > rms.max() * 10 ** (-top_db / 20)).flatten()
    if active.numel() == 0:
        return wave
    return wave[int(active[0]) * hop:(int(active[-1]) + 1) * hop]


def load_waveform(
    path: Path, sample_rate: int, num_samples: int, normalize: str = "peak", pad: str = "zero"
) -> torch.Tensor:
    """`(num_samples,)` float32: the file read with soundfile, averaged to mono, resampled to `sample_rate`,
    cropped at the end when longer; `normalize='peak'` divides by the clip's maximum (as the sound paper).

    `pad='zero'` fills a shorter clip with silence at the end (as ESC-50's own files); `pad='repeat'` first trims the
    leading and trailing silence (`trim_silence`) and then repeats the sound until the clip is full, so a short
    event fills the network's input instead of a few frames of it (a drum hit or a word in a 5 s window)."""
    if pad not in PADS:
        raise ValueError(f"--pad must be one of {', '.join(PADS)}, got {pad!r}")
    path = Path(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        raise TaskError(f"cannot read WAV file {path}: {err}") from None
    if data.shape[0] == 0:
        raise TaskError(f"WAV file {path} is empty (zero samples)")
    if not np.isfinite(data).all():
        raise TaskError(f"WAV file {path} holds NaN or infinite samples")
    wave = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        wave = _resampler(int(rate), int(sample_rate))(wave)
    if pad == "repeat":
        wave = trim_silence(wave, sample_rate)
        wave = wave.repeat(-(-num_samples // wave.numel()))
    wave = wave[:num_samples]
    if wave.numel() < num_samples:
        wave = torch.nn.functional.pad(wave, (0, num_samples - wave.numel()))
    if normalize == "peak":
        wave = wave / wave.abs().max().clamp_min(1e-8)
    elif normalize != "none":
        raise ValueError(f"normalize must be 'peak' or 'none', got {normalize!r}")
    return wave


class FeatureCache:
    """Per-file feature cache on disk: `<dir>/<params hash>/<file stem>-<file key>.npy`.

    The key covers the feature parameters and the file's resolved path, size and mtime, so a changed file or
    setting is recomputed and nothing stale is reused. Writes are atomic (safe with several DDP ranks)."""

    def __init__(self, directory: Path | None, params: dict) -> None:
        self.params_key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        self.directory = Path(directory) / self.params_key if directory is not None else None
        self.hits = self.misses = 0

    def _path(self, source: Path) -> Path:
        st = source.stat()
        key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
        return self.directory / f"{source.stem}-{key}.npy"

    def get(self, source: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for `source`, or `compute()` stored for next time."""
        if self.directory is None:
            self.misses += 1
            return compute()
        path = self._path(Path(source))
        if path.is_file():
            try:
                value = np.load(path, allow_pickle=False)
                self.hits += 1
                return value
            except (OSError, ValueError):
                pass  # truncated by a crash of an older version: recompute
        self.misses += 1
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        atomic_write(path, buffer.getbuffer())
        return value


def extract_features(
    index: ESC50Index,
    extractor: torch.nn.Module,
    cache: FeatureCache,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """`(N, F, T)` features of every clip of `index` (in order), through `cache`; `extractor.config` says how
    clips are loaded (rate, length, normalisation)."""
    cfg = extractor.config
    out = []
    for i, clip in enumerate(index.clips):
        path = index.path(clip)

        def compute(path: Path = path) -> np.ndarray:
            wave = load_waveform(path, cfg.sample_rate, cfg.num_samples, cfg.normalize, cfg.pad)
            with torch.no_grad():
                return extractor(wave).numpy().astype(np.float32)

        out.append(torch.from_numpy(cache.get(path, compute)))
        if progress is not None:
            progress(i + 1, len(index.clips))
    return torch.stack(out)
