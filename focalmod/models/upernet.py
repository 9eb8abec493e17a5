"""UPerNet (Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018) as mmsegmentation builds
it for the FocalNet, Swin, ConvNeXt and HorNet ADE20K results (reference segmentation_interpretability.md Sec. 1).

* `UPerHead`: pyramid pooling on the last stage (pool scales 1, 2, 3, 6) + FPN over all stages, fused by a 3x3
  conv, Dropout2d and a 1x1 classifier (mmseg ``UPerHead``; keys ``psp_modules``, ``bottleneck``,
  ``lateral_convs``, ``fpn_convs``, ``fpn_bottleneck``, ``conv_seg``).
* `FCNHead`: the auxiliary head on one stage (mmseg ``FCNHead``, ``num_convs`` 3x3 convs, ``concat_input=False``).
* `UPerNet`: any backbone that returns a list of stage features (timm ``features_only`` models, focalmod
  `FocalNetFeatures`) + one LayerNorm per output (the ``norm0..3`` of mmseg's FocalNet/Swin/ConvNeXt backbones)
  + the two heads. Logits are resized (bilinear, ``align_corners=False``) to the input size, as mmseg's
  ``EncoderDecoder`` does.
* `FocalNetFeatures`: a focalmod `FocalNet` whose stem and downsamples see their input zero-padded at the
  bottom/right to a multiple of their stride, like the official segmentation backbone's ``PatchEmbed``, so any
  input size gives the official features.

Conv + BN + ReLU blocks (mmcv ``ConvModule``) have no conv bias and keys ``conv`` / ``bn``; initialisation as mmseg:
Kaiming normal (fan_out, ReLU) for those convs, N(0, 0.01) for the classifiers. The maintained alternatives differ:
transformers' ``UperNetHead`` / ``UperNetFCNHead`` have the same convs (keys ``batch_norm``, ``classifier``) but no
dropout before the classifier and HF's initialisation, and take only ``AutoBackbone`` backbones (HF's
``FocalNetBackbone`` returns stage outputs *after* the downsample and has no output norms); see
``tests/test_upernet.py``, which checks our heads against theirs with the same weights.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.models import FeatureInfo
from torch import nn

from ..layers import LayerNormNd
from .focalnet import FocalNet

__all__ = ["ConvBNReLU", "FCNHead", "FocalNetFeatures", "UPerHead", "UPerNet", "pad_to_multiple", "resize"]


def resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Bilinear resize to `size` (H, W) with ``align_corners=False`` (mmseg's ``resize`` for logits and pyramid
    levels). `size` as a list (a `torch.Size` slice works too) so that TorchScript can script the callers."""
    return F.interpolate(x, size=list(size), mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad `(B, C, H, W)` at the bottom and right so that H and W are multiples of `multiple`."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


class ConvBNReLU(nn.Module):
    """mmcv ``ConvModule`` with BatchNorm and ReLU: conv (no bias) -> BN -> ReLU, keys ``conv`` and ``bn``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _Classifier(nn.Module):
    """mmseg ``BaseDecodeHead.cls_seg``: Dropout2d, then a 1x1 conv with bias, initialised N(0, 0.01)."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))


class UPerHead(_Classifier):
    """`features` (list of `(B, in_channels[i], H_i, W_i)`, finest first) -> logits `(B, num_classes, H_0, W_0)`."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        self.in_channels = list(in_channels)
        top = self.in_channels[-1]
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvBNReLU(top, channels, 1)) for scale in pool_scales
        )
        self.bottleneck = ConvBNReLU(top + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(self.in_channels) * channels, channels, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        top = features[-1]
        pooled = [resize(ppm(top), top.shape[-2:]) for ppm in self.psp_modules]
        laterals = [conv(features[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.bottleneck(torch.cat([top] + pooled, dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down path
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [resize(out, size) for out in outs[1:]]
        return self.classify(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(_Classifier):
    """`(B, in_channels, H, W)` -> `num_convs` 3x3 ConvBNReLU -> logits `(B, num_classes, H, W)`."""

    def __init__(
        self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1, dropout: float = 0.1
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        self.convs = nn.Sequential(
            *(ConvBNReLU(in_channels if i == 0 else channels, channels, 3, padding=1) for i in range(num_convs))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.convs(x))


class FocalNetFeatures(nn.Module):
    """The stage outputs of a focalmod `FocalNet` (final norm and classifier pruned), official-segmentation style.

    The stem and every downsample see their input zero-padded at the bottom/right to a multiple of their stride,
    as the official mmseg/mmdet backbone's ``PatchEmbed`` does, so any input size works and gives the official
    features (`FocalNet` alone floors such sizes, like the classification code). The official downstream
    backbones use a k7 s4 p3 stem when ``use_conv_embed`` (classification: p2, which `FocalNet` follows); the
    T/S/B models have no conv embed. Keys: ``model.*`` (as in timm's ``features_only`` wrapper).
    `(B, in_chans, H, W)` -> list of `(B, embed_dim * 2**i, ceil(H / (patch_size * 2**i)), ...)`.
    """

    def __init__(self, model: FocalNet) -> None:
        super().__init__()
        if model.spatial_dims != 2:
            raise ValueError(f"FocalNetFeatures needs a 2D FocalNet, got spatial_dims={model.spatial_dims}")
        num_stages = len(model.layers)
        model.prune_intermediate_layers(num_stages, prune_norm=True, prune_head=True)
        self.model = model
        self.feature_info = FeatureInfo(model.feature_info, tuple(range(num_stages)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.model.stem(pad_to_multiple(x, self.model.patch_size))
        features = []
        for i, stage in enumerate(self.model.layers):
            x = stage(pad_to_multiple(x, 2) if i > 0 else x)
            features.append(x)
        return features


class UPerNet(nn.Module):
    """Backbone features -> optional per-output LayerNorm -> `UPerHead` (+ `FCNHead` auxiliary on one stage).

    Args:
        backbone: returns a list of stage features, finest first, and has timm's `feature_info` (channels). timm
            models whose features are channels-last (``output_fmt`` NHWC, e.g. Swin) are permuted.
        num_classes: classifier outputs of both heads.
        channels: UPerHead channels (512 in the official configs).
        pool_scales: pyramid pooling output sizes.
        dropout: Dropout2d before each classifier.
        aux_channels: FCN auxiliary head channels (256); 0 for no auxiliary head.
        aux_index: stage the auxiliary head reads (2: the stride-16 stage).
        out_norms: one LayerNorm per backbone output (mmseg's FocalNet/Swin/ConvNeXt/HorNet backbones have them).

    `forward(x)`: `(B, C, H, W)` -> logits `(B, num_classes, H, W)`; `forward_with_aux` also returns the auxiliary
    logits (None without an auxiliary head), for the training loss.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 150,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        aux_channels: int = 256,
        aux_index: int = 2,
        out_norms: bool = True,
    ) -> None:
        super().__init__()
        info = getattr(backbone, "feature_info", None)
        if info is None:
            raise ValueError(f"UPerNet needs a backbone with timm's `feature_info`, got {type(backbone).__name__}")
        in_channels = info.channels() if isinstance(info, FeatureInfo) else [d["num_chs"] for d in info]
        if not -len(in_channels) <= aux_index < len(in_channels):
            raise ValueError(f"aux_index {aux_index} is out of range for {len(in_channels)} backbone outputs")
        self.num_classes = num_classes
        self.aux_index = aux_index % len(in_channels)
        fmt = getattr(backbone, "output_fmt", "NCHW")
        self.features_channels_last = str(getattr(fmt, "value", fmt)) == "NHWC"
        self.backbone = backbone
        self.out_norms = nn.ModuleList(LayerNormNd(c) if out_norms else nn.Identity() for c in in_channels)
        self.decode_head = UPerHead(in_channels, num_classes, channels, pool_scales, dropout)
        self.auxiliary_head = (
            FCNHead(in_channels[self.aux_index], num_classes, aux_channels, dropout=dropout) if aux_channels else None
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        inner = getattr(self.backbone, "model", self.backbone)
        if hasattr(inner, "set_grad_checkpointing"):
            inner.set_grad_checkpointing(enable)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The normed backbone outputs (channels-first), finest first."""
        features = list(self.backbone(x))
        for i, norm in enumerate(self.out_norms):
            feature = features[i].permute(0, 3, 1, 2) if self.features_channels_last else features[i]
            features[i] = norm(feature)
        return features

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode and auxiliary logits, both resized to the input size (mmseg computes both losses there)."""
        features = self.forward_features(x)
        logits = resize(self.decode_head(features), x.shape[-2:])
        if self.auxiliary_head is None:
            return logits, None
        return logits, resize(self.auxiliary_head(features[self.aux_index]), x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.decode_head(self.forward_features(x)), x.shape[-2:])
