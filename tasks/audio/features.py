"""Spectrogram features with torchaudio: log-mel (default) or the sound paper's log1p linear-magnitude STFT.

Features are `(F, T)`: frequency bins (mel or linear) by frames. The same STFT settings give the complex
spectrogram used for the listenable explanations, and `to_linear_freq` maps a map on the feature grid back to
linear STFT bins.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn

__all__ = ["FeatureConfig", "FeatureExtractor", "apply_gain"]

FEATURE_KINDS = ("logmel", "stft")
PADS = ("zero", "repeat")  # how a clip fills its window (tasks.audio.data.load_waveform)
_LOG_EPS = 1e-6


@dataclass(frozen=True)
class FeatureConfig:
    """How a clip becomes a feature map; its dict is part of the feature-cache key."""

    kind: str = "logmel"
    sample_rate: int = 16000
    clip_seconds: float = 5.0
    n_fft: int = 1024
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 128
    normalize: str = "peak"
    pad: str = "zero"  # 'zero': silence after a short clip; 'repeat': silence trimmed, sound looped (load_waveform)

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"--features must be one of {', '.join(FEATURE_KINDS)}, got {self.kind!r}")
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise ValueError(f"--win-length ({self.win_length}) must be <= --n-fft ({self.n_fft})")
        if self.pad not in PADS:
            raise ValueError(f"--pad must be one of {', '.join(PADS)}, got {self.pad!r}")
        if self.clip_seconds <= 0:
            raise ValueError(f"--clip-seconds must be positive, got {self.clip_seconds}")

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1  # centred frames

    @property
    def num_freq(self) -> int:
        return self.n_mels if self.kind == "logmel" else self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureExtractor(nn.Module):
    """`(..., samples)` waveform -> `(..., F, T)` log features; also the matching STFT / inverse STFT."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = c = config
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length, power=None
        )
        self.register_buffer("window", torch.hann_window(c.win_length), persistent=False)
        if c.kind == "logmel":
            n_freqs = c.n_fft // 2 + 1
            fb = torchaudio.functional.melscale_fbanks(n_freqs, 0.0, c.sample_rate / 2, c.n_mels, c.sample_rate)
            self.register_buffer("mel_fb", fb, persistent=False)  # (n_freqs, n_mels)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex spectrogram `(..., n_fft // 2 + 1, T)`."""
        return self.spectrogram(wave)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of `stft` (same window and hop)."""
        c = self.config
        return torch.istft(spec, c.n_fft, c.hop_length, c.win_length, window=self.window, length=length)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        magnitude = self.stft(wave).abs()
        if self.config.kind == "stft":
            return torch.log1p(magnitude)  # the paper's log1p of the linear magnitude
        mel = torch.matmul(magnitude.pow(2).transpose(-1, -2), self.mel_fb).transpose(-1, -2)
        return torch.log(mel + _LOG_EPS)

    def to_linear_freq(self, feature_map: torch.Tensor) -> torch.Tensor:
        """`(..., F, T)` map on the feature grid -> `(..., n_fft // 2 + 1, T)`: each linear bin takes the
        filter-weighted mean of the mel bands covering it (nearest band where none does)."""
        if self.config.kind == "stft":
            return feature_map
        fb = self.mel_fb
        weights = fb / fb.sum(dim=1, keepdim=True).clamp_min(1e-12)
        empty = fb.sum(dim=1) <= 0
        if empty.any():
            centres = fb.argmax(dim=0).float()  # linear bin at each band's peak
            bins = torch.arange(fb.shape[0], device=fb.device).float()
            nearest = (bins[empty, None] - centres[None]).abs().argmin(dim=1)
            weights = weights.clone()
            weights[empty] = torch.nn.functional.one_hot(nearest, fb.shape[1]).to(weights.dtype)
        return torch.matmul(feature_map.transpose(-1, -2), weights.T).transpose(-1, -2)


def apply_gain(features: torch.Tensor, gain_db: torch.Tensor, kind: str) -> torch.Tensor:
    """Features of the waveform scaled by `gain_db` (one value per batch item), computed in the feature domain."""
    gain_db = gain_db.reshape(-1, *([1] * (features.ndim - 1)))
    if kind == "logmel":
        return features + gain_db * (math.log(10.0) / 10.0)  # power scales by 10**(g/10); exact up to eps
    return torch.log1p(torch.expm1(features) * 10 ** (gain_db / 20.0))
