"""The ESC-50 baseline: statistics of 40 MFCCs + a classical classifier (scikit-learn), fitted on each split's
training folds and scored on its test fold, from the same clips (rate, length, normalisation) the network hears.

Per clip: mean and standard deviation over frames of 40 MFCCs (25 ms windows, 10 ms hop, 64 mel bands, DCT-II
ortho, torchaudio) and of their deltas, 160 numbers; the classic hand-made sound-classification baseline (Piczak
2015's ESC-50 baselines used MFCC summary statistics with k-NN, SVM and random forests). The classifier, standardised
logistic regression or an RBF-kernel SVM (the stronger cheap variant), is chosen per split by 3-fold cross-validation
inside its training folds (the test fold is never used to choose).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchaudio
from torch import nn

from tasks.common.baseline import BaselineChoice, choose_baseline, fit_predict

from .data import ESC50Index, FeatureCache, extract_features
from .features import FeatureConfig

__all__ = ["CLASSIFIERS", "FEATURES_NAME", "MFCCStatistics", "baseline_name", "mfcc_baseline"]

FEATURES_NAME = "MFCC statistics"
CLASSIFIERS = ("logistic regression", "RBF SVM")
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


def mfcc_baseline(index: ESC50Index, fcfg: FeatureConfig, cache_dir, splits: Sequence, seed: int = 0
                  ) -> dict[str, tuple[float, BaselineChoice]]:
    """`{split name: (test accuracy, the classifier cross-validation chose)}` for each split of the protocol
    (`protocol.Split`s)."""
    extractor = MFCCStatistics(fcfg)
    stats = extract_features(index, extractor, FeatureCache(cache_dir, extractor.cache_key())).numpy()
    labels, folds = index.labels, index.folds
    results = {}
    for split in splits:
        train, test = np.isin(folds, split.train), folds == split.test
        if not train.any() or not test.any():
            continue
        choice = choose_baseline({FEATURES_NAME: stats[train]}, labels[train], CLASSIFIERS, seed)
        predicted = fit_predict(choice.classifier, stats[train], labels[train], stats[test], seed)
        results[split.name] = (float((predicted == labels[test]).mean()), choice)
    return results


def baseline_name(choices: Sequence[BaselineChoice]) -> str:
    """The baseline's name for a run: the chosen pair, or both classifiers when the splits chose differently."""
    names = sorted({c.name for c in choices})
    if len(names) == 1:
        return names[0]
    return f"{FEATURES_NAME} + {' or '.join(sorted({c.classifier for c in choices}))} (chosen per fold by CV)"
