"""ESC-50 on disk: read and validate `meta/esc50.csv` against `audio/*.wav`, load clips, cache their features.

Layout (karolpiczak/ESC-50): `audio/{fold}-{src}-{take}-{target}.wav` and `meta/esc50.csv` with columns
filename, fold, target, category, esc10, src_file, take. Clips are read with `soundfile`, down-mixed to mono,
resampled with torchaudio and padded/cropped to the clip length.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
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
]

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
NUM_FOLDS = 5
NUM_TARGETS = 50
_NAME = re.compile(r"^(\d+)-[^-]+-[^-]+-(\d+)\.wav$")


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
    """Validated clips of one ESC-50 directory; `classes` maps the (possibly sparse) targets to 0..K-1."""

    root: Path
    clips: list[Clip]

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
        return self.root / "audio" / clip.filename


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
