"""The ESC-50 baseline: statistics of 40 MFCCs + logistic regression (scikit-learn), fitted on each split's training
folds and scored on its test fold, from the same clips (rate, length, normalisation) the network hears.

Per clip: mean and standard deviation over frames of 40 MFCCs (25 ms windows, 10 ms hop, 64 mel bands, DCT-II
ortho, torchaudio) and of their deltas, 160 numbers; the classic hand-made sound-classification baseline (Piczak
2015's ESC-50 baselines used MFCC summary statistics with k-NN, SVM and random forests).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchaudio
from torch import nn

from tasks.common.baseline import logistic_regression

from .data import ESC50Index, FeatureCache, extract_features
from .features import FeatureConfig

__all__ = ["BASELINE_NAME", "MFCCStatistics", "mfcc_baseline_accuracy"]

BASELINE_NAME = "MFCC statistics + logistic regression"
N_MFCC = 40


class MFCCStatistics(nn.Module):
    """`(samples,)` waveform -> `(4 * 40,)`: mean and std over frames of 40 MFCCs and of their deltas. `config`
    says how clips are loaded (as `extract_features` expects of an extractor)."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        window = round(0.025 * config.sample_rate)
        n_fft = 1 << (window - 1).bit_length()
        self.mfcc = torchaudio.transforms.MFCC(
            config.sample_rate, n_mfcc=N_MFCC, log_mels=True,
            melkwargs=dict(n_fft=n_fft, win_length=window, hop_length=round(0.010 * config.sample_rate), n_mels=64),
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        coeffs = self.mfcc(wave)  # (40, frames)
        deltas = torchaudio.functional.compute_deltas(coeffs)
        return torch.cat([coeffs.mean(-1), coeffs.std(-1), deltas.mean(-1), deltas.std(-1)])

    def cache_key(self) -> dict:
        return {"baseline": "mfcc-statistics", "n_mfcc": N_MFCC, **self.config.to_dict()}


def mfcc_baseline_accuracy(index: ESC50Index, fcfg: FeatureConfig, cache_dir, splits: Sequence) -> dict[str, float]:
    """`{split name: test accuracy}` of the baseline for each split of the protocol (`protocol.Split`s)."""
    extractor = MFCCStatistics(fcfg)
    stats = extract_features(index, extractor, FeatureCache(cache_dir, extractor.cache_key())).numpy()
    labels, folds = index.labels, index.folds
    accuracy = {}
    for split in splits:
        train, test = np.isin(folds, split.train), folds == split.test
        if not train.any() or not test.any():
            continue
        predicted = logistic_regression(stats[train], labels[train], stats[test])
        accuracy[split.name] = float((predicted == labels[test]).mean())
    return accuracy
