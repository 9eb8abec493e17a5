"""Procedural ESC-50-format dataset: short clips whose classes differ only in spectro-temporal pattern.

Same layout as ESC-50 (`meta/esc50.csv` with its seven columns, `audio/{fold}-{src}-{take}-{target}.wav`, 5 folds,
takes of one source kept in one fold), so the real loader and protocol run on it unchanged. Every class draws its
frequencies from overlapping ranges, with random onsets, durations, gains and background-noise SNRs: only the
pattern over time and frequency (steady, sweeping, harmonic, modulated, impulsive, ...) identifies it.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .data import ESC50_COLUMNS

__all__ = ["SYNTH_CLASSES", "generate_synthetic_esc50"]

Rng = np.random.Generator


def _tone(t: np.ndarray, freq: np.ndarray | float) -> np.ndarray:
    """Sine whose instantaneous frequency is `freq` (scalar or per-sample), phase-continuous."""
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float64), t.shape)
    return np.sin(2 * np.pi * np.cumsum(freq) * (t[1] - t[0]))


def _pure_tone(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    return _tone(t, p["f"])


def _chirp(t: np.ndarray, rng: Rng, p: dict, up: bool) -> np.ndarray:
    lo, hi = p["f"] * 0.6, p["f"] * 0.6 * p["ratio"]
    ramp = t / t[-1]
    f = lo * (hi / lo) ** (ramp if up else 1 - ramp)
    return _tone(t, f)


def _harmonics(t: np.ndarray, f0: float, n: int) -> np.ndarray:
    return sum(_tone(t, f0 * k) / k for k in range(1, n + 1) if f0 * k < 7000)


def _harmonic_stack(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    return _harmonics(t, p["f0"], p["n"])


def _am_tone(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    return _tone(t, p["f"]) * (0.5 + 0.5 * np.sin(2 * np.pi * p["am_rate"] * t + rng.uniform(0, 2 * np.pi)))


def _fm_tone(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    return _tone(t, p["f"] * (1 + p["depth"] * np.sin(2 * np.pi * p["slow_rate"] * t)))


def _click_train(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    x = np.zeros_like(t)
    period = int(len(t) / (t[-1] + t[1] - t[0]) / p["rate"])
    x[rng.integers(0, period) :: period] = 1.0
    return x * 4.0


def _noise_bursts(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    x = np.zeros_like(t)
    sr = 1.0 / (t[1] - t[0])
    for _ in range(rng.integers(3, 6)):
        n = int(sr * rng.uniform(0.03, 0.07))
        start = rng.integers(0, max(len(t) - n, 1))
        x[start : start + n] += rng.standard_normal(min(n, len(t) - start))
    return x


def _band_noise(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(len(t)))
    freqs = np.fft.rfftfreq(len(t), t[1] - t[0])
    spec[np.abs(np.log2(np.maximum(freqs, 1.0) / p["f"])) > 0.5] = 0  # one octave wide
    return np.fft.irfft(spec, len(t))


def _tone_pips(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    period = 1.0 / p["fast_rate"]  # short pips, faster than am_tone's smooth bulges
    gate = (np.mod(t, period) < 0.3 * period).astype(np.float64)
    return _tone(t, p["f"]) * gate


def _trill(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    high = np.mod(t, 2.0 / p["rate"]) < 1.0 / p["rate"]
    return _tone(t, np.where(high, min(p["f"] * (0.5 + p["ratio"]), 7000.0), p["f"]))  # jumps of >= an octave


def _damped_harmonic(t: np.ndarray, rng: Rng, p: dict) -> np.ndarray:
    return _harmonics(t, p["f0"], p["n"]) * np.exp(-t * p["decay"])


def _source_params(rng: Rng) -> dict:
    """Parameters shared by the takes of one source (the same 'recording'), from class-independent ranges."""
    return dict(
        f=float(np.exp(rng.uniform(np.log(400), np.log(3000)))),
        f0=float(rng.uniform(150, 500)),
        n=int(rng.integers(4, 9)),
        ratio=float(rng.uniform(1.5, 3.0)),
        rate=float(rng.uniform(6, 12)),
        slow_rate=float(rng.uniform(3, 6)),
        am_rate=float(rng.uniform(4, 8)),
        fast_rate=float(rng.uniform(10, 16)),
        depth=float(rng.uniform(0.1, 0.2)),
        decay=float(rng.uniform(6, 12)),
    )


# name -> generator(t, rng, params) of the event (unit-free; it is normalised afterwards).
SYNTH_CLASSES: dict[str, Callable[[np.ndarray, Rng, dict], np.ndarray]] = {
    "pure_tone": _pure_tone,
    "chirp_up": lambda t, rng, p: _chirp(t, rng, p, up=True),
    "chirp_down": lambda t, rng, p: _chirp(t, rng, p, up=False),
    "harmonic_stack": _harmonic_stack,
    "am_tone": _am_tone,
    "fm_tone": _fm_tone,
    "click_train": _click_train,
    "noise_bursts": _noise_bursts,
    "band_noise": _band_noise,
    "tone_pips": _tone_pips,
    "trill": _trill,
    "damped_harmonic": _damped_harmonic,
}


def _render(name: str, params: dict, rng: Rng, sample_rate: int, seconds: float) -> np.ndarray:
    """One clip: the event at a random onset/duration, raised-cosine edges, background noise at a random SNR."""
    n = int(round(sample_rate * seconds))
    length = int(n * rng.uniform(0.55, 0.8))
    onset = int(rng.integers(0, n - length + 1))
    t = np.arange(length) / sample_rate
    event = SYNTH_CLASSES[name](t, rng, params)
    ramp = min(int(0.01 * sample_rate), length // 2)
    edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
    event[:ramp] *= edge
    event[length - ramp :] *= edge[::-1]
    event /= np.sqrt(np.mean(event**2)) + 1e-12
    snr_db = rng.uniform(6, 24)
    clip = rng.standard_normal(n) * 10 ** (-snr_db / 20)
    clip[onset : onset + length] += event
    return (clip / np.abs(clip).max() * rng.uniform(0.2, 0.9)).astype(np.float32)


def generate_synthetic_esc50(
    root: Path,
    num_classes: int = 12,
    clips_per_class_per_fold: int = 4,
    takes_per_source: int = 2,
    sample_rate: int = 16000,
    seconds: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write an ESC-50-format dataset to `root` (`meta/esc50.csv`, `audio/*.wav`) and return `root`.

    `clips_per_class_per_fold` clips come from `ceil(clips / takes_per_source)` sources per class and fold; a
    source's takes (A, B, ...) share their parameters and fold, as fragments of one Freesound file do in ESC-50.
    The first 10 classes are marked `esc10=True`. Deterministic in `seed`.
    """
    if not 1 <= num_classes <= len(SYNTH_CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(SYNTH_CLASSES)}, got {num_classes}")
    if clips_per_class_per_fold < 1 or takes_per_source < 1:
        raise ValueError("clips_per_class_per_fold and takes_per_source must be >= 1")
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(SYNTH_CLASSES)[:num_classes]
    rows, src_id = [], 100000
    for fold in range(1, 6):
        for target, name in enumerate(names):
            for i in range(clips_per_class_per_fold):
                take_index = i % takes_per_source
                if take_index == 0:
                    src_id += 1
                    params = _source_params(rng)
                take = chr(ord("A") + take_index)
                filename = f"{fold}-{src_id}-{take}-{target}.wav"
                audio = _render(name, params, rng, sample_rate, seconds)
                sf.write(root / "audio" / filename, audio, sample_rate, subtype="PCM_16")
                rows.append([filename, fold, target, name, str(target < 10), str(src_id), take])
    tmp = root / "meta" / ".esc50.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ESC50_COLUMNS)
        writer.writerows(rows)
    tmp.replace(root / "meta" / "esc50.csv")  # the CSV last: its presence marks a complete dataset
    return root
