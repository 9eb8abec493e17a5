"""One builder for multi-scale backbones + FPN, so torchvision's detectors compare FocalNet, Swin, ConvNeXt and ResNet.

`build_backbone(name)` returns a `PyramidBackbone`: a feature body giving stride-4..32 maps (channels and strides
from its `feature_info`), optional per-output LayerNorms (the official FocalNet detection backbone's `norm{i}`),
and torchvision's `FeaturePyramidNetwork` + `LastLevelMaxPool` - the same pieces as torchvision's
`BackboneWithFPN`, but for bodies that return a list of feature maps.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import timm
import torch
import torchvision
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import focalmod
from focalmod.layers import LayerNormNd

from ..common import TaskError

__all__ = ["PyramidBackbone", "build_backbone", "load_mmdet_backbone"]

TORCHVISION_BACKBONES = ("resnet50",)


class PyramidBackbone(nn.Module):
    """`body(x)` -> list of NCHW maps -> optional per-output norms -> FPN; output `OrderedDict` '0'..'3', 'pool'.

    Attributes: `out_channels` (FPN width, read by torchvision's detectors), `in_channels` and `strides` of the
    body outputs.
    """

    def __init__(
        self,
        body: nn.Module,
        in_channels: Sequence[int],
        strides: Sequence[int],
        out_channels: int = 256,
        out_norm: bool = False,
        channels_last_output: bool = False,
        fpn_norm: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.in_channels, self.strides = list(in_channels), list(strides)
        self.out_norms = nn.ModuleList(LayerNormNd(c) for c in in_channels) if out_norm else None
        self.channels_last_output = channels_last_output
        self.fpn = FeaturePyramidNetwork(self.in_channels, out_channels, LastLevelMaxPool(), norm_layer=fpn_norm)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        if self.channels_last_output:  # timm Swin's features_only maps are NHWC
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        if self.out_norms is not None:
            feats = [norm(f) for norm, f in zip(self.out_norms, feats)]
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_backbone(
    name: str,
    out_channels: int = 256,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    checkpoint: str | Path | None = None,
    focal_windows: int | Sequence[int] | None = None,
    fpn_norm: Callable[[int], nn.Module] | None = None,
    **overrides: Any,
) -> PyramidBackbone:
    """FPN backbone for `name`: a focalmod FocalNet (`focalnet_*`), torchvision `resnet50`, or any timm model that
    supports `features_only` (e.g. `swin_tiny_patch4_window7_224`, `convnext_tiny`). Never downloads weights.

    Args:
        checkpoint: backbone weights. FocalNet: an ImageNet checkpoint in any format `focalmod.load_checkpoint`
            reads (kernels resized by the official surgery when `focal_windows` differ) or an mmdet FocalNet
            detector checkpoint (`state_dict`, `backbone.` prefix, per-output `norm{i}`). timm / torchvision: a
            state dict of that model.
        focal_windows: FocalNet kernel size of the first focal level (detection configs use 9 -> kernels 9, 11
            (SRF) or 9, 11, 13 (LRF)); None keeps the variant's.
        fpn_norm: norm layer factory for the FPN convs (e.g. GroupNorm for training from scratch); None: none.
        **overrides: constructor arguments for the model (e.g. `embed_dim=32, depths=(1, 1, 2, 1)`).
    """
    out_indices = tuple(out_indices)
    fpn = dict(out_channels=out_channels, fpn_norm=fpn_norm)
    if name in focalmod.list_models("focalnet_*"):
        return _focalnet(name, fpn, out_indices, checkpoint, focal_windows, overrides)
    if focal_windows is not None:
        raise TaskError(f"--focal-window applies to FocalNet backbones only, not {name!r}")
    if name in TORCHVISION_BACKBONES:
        return _torchvision_resnet(name, fpn, out_indices, checkpoint, overrides)
    if name.startswith("focalnet"):
        names = ", ".join(focalmod.list_models("focalnet_*"))
        raise TaskError(f"--backbone: unknown FocalNet {name!r}; choose from {names}")
    if not timm.is_model(name):
        raise TaskError(
            f"--backbone: {name!r} is neither a focalmod FocalNet, torchvision resnet50, nor a timm model name"
        )
    return _timm(name, fpn, out_indices, checkpoint, overrides)


def _focalnet(
    name: str,
    fpn: dict[str, Any],
    out_indices: tuple[int, ...],
    checkpoint: str | Path | None,
    focal_windows: int | Sequence[int] | None,
    overrides: dict[str, Any],
) -> PyramidBackbone:
    if focal_windows is not None:
        overrides = {**overrides, "focal_windows": focal_windows}
    mmdet = _read_mmdet(checkpoint) if checkpoint is not None else None
    body = focalmod.create_model(
        name,
        features_only=True,
        out_indices=out_indices,
        checkpoint_path=None if checkpoint is None or mmdet is not None else str(checkpoint),
        **overrides,
    )
    info = body.feature_info
    backbone = PyramidBackbone(body, info.channels(), info.reduction(), out_norm=True, **fpn)
    if mmdet is not None:
        load_mmdet_backbone(backbone, mmdet, out_indices, source=str(checkpoint))
    return backbone


def _read_mmdet(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The `backbone.*` entries (prefix removed) of an mmdet detector checkpoint, or None for any other file."""
    from focalmod.checkpoints import CheckpointError, read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise TaskError(f"--backbone-checkpoint: file not found: {path}")
    try:
        obj = read_checkpoint(path)  # weights-only unpickling or safetensors
    except CheckpointError as err:
        raise TaskError(f"--backbone-checkpoint: {err}") from None
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not any(k.startswith("backbone.") for k in sd):
        return None
    return {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}


def load_mmdet_backbone(
    backbone: PyramidBackbone, state_dict: dict[str, torch.Tensor], out_indices: Sequence[int], source: str = ""
) -> None:
    """Load an mmdet FocalNet backbone (prefix already removed): `norm{i}` -> per-output norms, the rest (official
    key names) -> the FocalNet body through `focalmod.load_checkpoint` (strict)."""
    from focalmod.checkpoints import load_checkpoint

    state_dict = dict(state_dict)
    for j, i in enumerate(out_indices):
        for p in ("weight", "bias"):
            key = f"norm{i}.{p}"
            if key not in state_dict:
                raise TaskError(f"--backbone-checkpoint {source}: mmdet backbone has no {key!r} for output {i}")
            getattr(backbone.out_norms[j], p).data.copy_(state_dict.pop(key))
    for key in [k for k in state_dict if k.split(".")[0].startswith("norm") and k.split(".")[0][4:].isdigit()]:
        state_dict.pop(key)  # norms of outputs this detector does not use
    load_checkpoint(backbone.body.model, state_dict, strict=True)


def _timm(
    name: str, fpn: dict[str, Any], out_indices: tuple[int, ...], checkpoint: str | Path | None, overrides: dict
) -> PyramidBackbone:
    kwargs = dict(overrides)
    if name.startswith("swin"):
        kwargs.setdefault("strict_img_size", False)  # any input size (padded to windows inside timm)
    if checkpoint is not None:  # timm reads a local file through the pretrained-cfg overlay: no download
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(checkpoint)})
    # `out_indices` count pyramid levels from stride 4; timm's count its feature maps, which start at stride 2 for
    # ResNets and similar stems: map by stride.
    wanted = [4 * 2**i for i in out_indices]
    body = timm.create_model(name, features_only=True, **kwargs)
    reductions = body.feature_info.reduction()
    missing = [r for r in wanted if r not in reductions]
    if missing:
        raise TaskError(f"--backbone {name}: no feature map at stride {missing} (timm gives strides {reductions})")
    indices = [reductions.index(r) for r in wanted]
    if indices != list(range(len(reductions))):
        body = timm.create_model(name, features_only=True, out_indices=indices, **kwargs)
    info = body.feature_info
    nhwc = str(getattr(body, "output_fmt", "NCHW")).endswith("NHWC")
    return PyramidBackbone(body, info.channels(), info.reduction(), channels_last_output=nhwc, **fpn)


class _ResNetBody(nn.Module):
    """torchvision ResNet stages `layer1..4` as a list of maps (strides 4, 8, 16, 32)."""

    def __init__(self, resnet: nn.Module, out_indices: tuple[int, ...]) -> None:
        super().__init__()
        layers = {f"layer{i + 1}": str(i) for i in out_indices}
        self.getter = torchvision.models._utils.IntermediateLayerGetter(resnet, return_layers=layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.getter(x).values())


def _torchvision_resnet(
    name: str, fpn: dict[str, Any], out_indices: tuple[int, ...], checkpoint: str | Path | None, overrides: dict
) -> PyramidBackbone:
    resnet = getattr(torchvision.models, name)(weights=None, **overrides)
    if checkpoint is not None:
        try:
            sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:
            raise TaskError(f"--backbone-checkpoint: cannot read {checkpoint}: {type(err).__name__}: {err}") from None
        missing, unexpected = resnet.load_state_dict(sd, strict=False)
        bad = [k for k in missing if not k.startswith("fc.")] + [k for k in unexpected if not k.startswith("fc.")]
        if bad:
            raise TaskError(f"--backbone-checkpoint {checkpoint}: not a {name} state dict (keys: {bad[:5]})")
    channels = [256 * 2**i for i in out_indices]
    strides = [4 * 2**i for i in out_indices]
    return PyramidBackbone(_ResNetBody(resnet, out_indices), channels, strides, **fpn)
