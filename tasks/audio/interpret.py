"""The sound paper's interpretation: last-stage modulator magnitude over the spectrogram, and a listenable
explanation (Della Libera et al. 2024, "activation map thresholding": the map upsampled to the spectrogram,
thresholded at its 0.9 quantile, applied to the STFT magnitude and inverted with the original phase); and the
scores of those maps beside post-hoc explanations (`focalmod.interpret`)."""
from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from focalmod.viz import modulation_maps, quantile_mask
from tasks.common.explain import score_and_plot

from .features import FeatureExtractor
from .models import SpectrogramClassifier

__all__ = ["explain_clip", "last_stage_modulator_map", "listenable_explanation", "score_explanations_of"]


@torch.no_grad()
def last_stage_modulator_map(classifier: SpectrogramClassifier, inputs: torch.Tensor) -> torch.Tensor:
    """`(B, T, F)` on the feature grid: L2 norm over channels of the last stage's (last block's) modulator, from
    `focalmod.viz.modulation_maps`, upsampled (bilinear in 2D; linear over time and constant over frequency for
    1D models, which have no frequency axis).

    `inputs`: what the classifier's `forward` takes (standardised features `(B, F, T)`)."""
    try:
        magnitude = modulation_maps(classifier, inputs, stages=[-1])[-1].magnitude.to(inputs.device)  # (B, *S)
    except ValueError as err:  # no FocalModulation (HorNet, gnConv mixer)
        raise ValueError(f"no modulator maps for this model: {err}") from None
    freq, frames = inputs.shape[-2:]
    if classifier.spatial_dims == 1:
        line = F.interpolate(magnitude[:, None], size=frames, mode="linear", align_corners=False)[:, 0]
        return line[:, :, None].expand(-1, -1, freq)
    return F.interpolate(magnitude[:, None], size=(frames, freq), mode="bilinear", align_corners=False)[:, 0]


def listenable_explanation(
    wave: torch.Tensor, feature_map: torch.Tensor, extractor: FeatureExtractor, quantile: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(masked waveform, binary mask (n_fft//2+1, T))` for one clip `wave (samples,)` and its map `(T, F)`."""
    spec = extractor.stft(wave)  # (n_freqs, T) complex
    linear_map = extractor.to_linear_freq(feature_map.T.to(wave.dtype))
    linear_map = linear_map[:, : spec.shape[-1]]
    mask = quantile_mask(linear_map[None], quantile)[0].to(spec.real.dtype)
    return extractor.istft(spec * mask, length=wave.shape[-1]), mask


def explain_clip(
    out_stem: Path,
    wave: torch.Tensor,
    features: torch.Tensor,
    feature_map: torch.Tensor,
    extractor: FeatureExtractor,
    quantile: float = 0.9,
    title: str = "",
) -> dict[str, Path]:
    """Write `<stem>_map.png` (spectrogram, modulator map, masked spectrogram), `<stem>_explanation.wav`
    (the masked listenable clip) and `<stem>_original.wav`; returns their paths."""
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    masked, mask = listenable_explanation(wave, feature_map, extractor, quantile)
    rate = extractor.config.sample_rate
    paths = {
        "png": out_stem.with_name(out_stem.name + "_map.png"),
        "wav": out_stem.with_name(out_stem.name + "_explanation.wav"),
        "original": out_stem.with_name(out_stem.name + "_original.wav"),
    }
    peak = max(float(wave.abs().max()), 1e-8)
    sf.write(paths["wav"], (masked / peak).clamp(-1, 1).numpy(), rate)
    sf.write(paths["original"], (wave / peak).clamp(-1, 1).numpy(), rate)

    seconds = wave.shape[-1] / rate
    log_mag = torch.log1p(extractor.stft(wave).abs()).numpy()
    panels = [
        ("input features", features.numpy(), "feature bin"),
        ("last-stage modulator |m|", feature_map.T.numpy(), "feature bin"),
        (f"mask (q={quantile}) on STFT magnitude", log_mag * mask.numpy(), "STFT bin"),
    ]
    fig = Figure(figsize=(13, 3.4), layout="constrained")  # Agg canvas, no pyplot state
    axes = fig.subplots(1, 3)
    for ax, (name, image, ylabel) in zip(axes, panels):
        ax.imshow(image, origin="lower", aspect="auto", extent=(0, seconds, 0, image.shape[0]), cmap="magma")
        ax.set(title=name, xlabel="time (s)", ylabel=ylabel)
    fig.suptitle(title)
    fig.savefig(paths["png"], dpi=90)
    return paths


def score_explanations_of(classifier: SpectrogramClassifier, inputs: torch.Tensor, figure: Path,
                          quantile: float = 0.9, seed: int = 0) -> dict[str, dict[str, float]]:
    """`tasks.common.explain.score_and_plot` for `inputs` (standardised features `(B, F, T)`; masked positions take
    0, the feature mean), on the backbone's input grid (time x frequency in 2D, frames in 1D), where masking acts."""
    return score_and_plot(classifier.backbone, classifier.to_input(inputs).contiguous(), figure, quantile, seed,
                          spectrogram=True)
