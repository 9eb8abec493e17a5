"""HorNet (Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
NeurIPS 2022, arXiv 2207.14284) for 1D/2D/3D inputs, built from `focalmod.layers.GnConv`.

Reproduces the official `raoyongming/HorNet` classifiers given the same weights (converted by
`focalmod.checkpoints.hornet`). Differences in structure only: the stem is `stem.{proj,norm}`, the downsample
between stages sits at the start of each stage (`stages.{i}.downsample.{norm,proj}`), blocks live in
`stages.{i}.blocks.{j}`, 1x1 convs are Linear layers, layer scale is timm's `ls1/ls2.gamma`, the MLP is timm's
`mlp.fc1/fc2`, and the final norm (applied after pooling, as in the official code) is `head.norm`.
"""
from collections import OrderedDict
from functools import partial
from typing import List, Sequence, Tuple

import torch
from torch import nn

from ..layers import ClassifierHead, Downsample, GnConv, LayerNormNd, conv_nd
from ..layers._nd import to_channels_first, to_channels_last
from ..layers.mixer_block import MixerBlock
from .backbone import HierarchicalBackbone, Stage, build_stages, init_weights, per_stage, stage_dims
from .mixers import check_mixer, mixer_layers

__all__ = ["HorNet", "HorNetBlock", "HorNetStage", "NormClassifierHead"]

HorNetStage = Stage  # the stage class of every hierarchical backbone (downsample, then blocks)


class HorNetBlock(MixerBlock):
    """`(B, dim, *S)` -> same. ``x + DP(ls1(gnconv(norm1(x))))``, then ``x + DP(ls2(mlp(norm2(x))))``.

    A `MixerBlock` whose mixer (key `gnconv`) is a `GnConv` of `order` with spatial filter `mixer` ('dw7' or 'gf');
    `mixer_layer` puts another token mixer in that slot instead. `layerscale_value` None or 0: no layer scale.
    """

    mixer_name = "gnconv"

    def __init__(
        self,
        dim: int,
        spatial_dims: int = 2,
        order: int = 5,
        mixer: str = "dw7",
        gf_size: Sequence[int] | None = None,
        scale: float = 1.0 / 3.0,
        mlp_ratio: float = 4.0,
        layerscale_value: float | None = 1e-6,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        mixer_layer=None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if mixer_layer is None:
            mixer_layer = partial(GnConv, order=order, mixer=mixer, gf_size=gf_size, scale=scale)
        super().__init__(dim, mixer_layer, spatial_dims, mlp_ratio, layerscale_value=layerscale_value or None,
                         drop_path=drop_path, norm_eps=norm_eps, device=device, dtype=dtype)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.gnconv.forward_channels_last(x)[0]


class NormClassifierHead(ClassifierHead):
    """HorNet/ConvNeXt head: pool -> LayerNorm -> dropout -> `fc`; `pre_logits` returns the normed features."""

    def __init__(self, in_features: int, num_classes: int, pool_type: str = "avg", drop_rate: float = 0.0,
                 norm_eps: float = 1e-6, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, num_classes, pool_type, drop_rate, device=device, dtype=dtype)
        self.norm = nn.LayerNorm(in_features, eps=norm_eps, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        x = to_channels_first(self.norm(to_channels_last(x))) if self.pool_type == "" else self.norm(x)
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class HorNet(HierarchicalBackbone):
    """Hierarchical HorNet for `(B, in_chans, *S)` inputs.

    Args:
        spatial_dims: 1, 2 or 3.
        in_chans, num_classes, global_pool: as in timm (`num_classes=0` gives pooled, normed features).
        embed_dim: channels of stage 1 (official `base_dim`); stage i has `embed_dim * 2**i`.
        depths: blocks per stage ((2, 3, 18, 2) for every released size).
        orders: gnConv order per stage (official 2, 3, 4, 5).
        mixers: spatial mixer per stage, 'dw7' or 'gf' ('gf' in stages 3-4 for the `_gf` models).
        gf_sizes: GF weight grid per stage (None entries for dw stages); when None it is derived from
            `img_size`: the rfft grid ``(*S[:-1], S[-1] // 2 + 1)`` of that stage's map ((14, 8), (7, 4) at 224).
        img_size: input side used to derive `gf_sizes` (any size still runs; the GF weight is resized).
        scale: gnConv depthwise scale (1/3).
        layerscale_value: layer-scale init (1e-6); None or 0 for none.
        drop_rate, drop_path_rate: head dropout and stochastic depth (linear ramp over all blocks).
        head_init_scale: multiplies the initial classifier weights (official `head_init_scale`).
        mixer: token mixer of every block, kept under the block's `gnconv` key: 'gnconv' (HorNet's, with `orders`,
            `mixers`, `gf_sizes` above) or 'focal' (focal modulation, 2 levels, window 3; for comparisons with
            everything else equal).

    The final norm acts on pooled features (it lives in the head, `head.norm`), as in the official code.
    """

    stages_name = "stages"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 64,
        depths: Sequence[int] = (2, 3, 18, 2),
        orders: Sequence[int] = (2, 3, 4, 5),
        mixers: str | Sequence[str] = "dw7",
        gf_sizes: Sequence[Sequence[int] | None] | None = None,
        img_size: int | Sequence[int] = 224,
        scale: float = 1.0 / 3.0,
        mlp_ratio: float = 4.0,
        layerscale_value: float | None = 1e-6,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_init_scale: float = 1.0,
        norm_eps: float = 1e-6,
        mixer: str = "gnconv",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {"device": device, "dtype": dtype}
        dims = stage_dims(spatial_dims, embed_dim, depths)
        num_stages = len(dims)
        orders = per_stage("orders", orders, num_stages)
        mixers = per_stage("mixers", mixers, num_stages)
        if gf_sizes is None:
            gf_sizes = [_rfft_grid(img_size, 4 * 2**i, spatial_dims) if m == "gf" else None for i, m in
                        enumerate(mixers)]
        gf_sizes = per_stage("gf_sizes", list(gf_sizes), num_stages)
        # None: each block builds its GnConv from the arguments above
        mixer_layer = [None] * num_stages if check_mixer(mixer) == "gnconv" else mixer_layers(mixer, dims)
        block = partial(HorNetBlock, spatial_dims=spatial_dims, scale=scale, mlp_ratio=mlp_ratio,
                        layerscale_value=layerscale_value, norm_eps=norm_eps, **dd)
        # Built in the order they are registered (stem, stages, head), so a seed gives the same weights as ever.
        stem = Downsample(in_chans, embed_dim, spatial_dims, stride=4, norm_eps=norm_eps, **dd)
        stages = build_stages(
            dims, depths, drop_path_rate, partial(_downsample, spatial_dims=spatial_dims, norm_eps=norm_eps, **dd),
            lambda i, rate: block(dims[i], order=orders[i], mixer=mixers[i], gf_size=gf_sizes[i], drop_path=rate,
                                  mixer_layer=mixer_layer[i]),
        )
        super().__init__(
            spatial_dims, in_chans, num_classes, 4, dims, stem=stem, stages=stages, norm=nn.Identity(),
            head=NormClassifierHead(dims[-1], num_classes, global_pool, drop_rate, norm_eps, **dd),
        )
        self.apply(partial(init_weights, types=(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)))
        if isinstance(self.head.fc, nn.Linear):
            with torch.no_grad():
                self.head.fc.weight.mul_(head_init_scale)
                self.head.fc.bias.mul_(head_init_scale)

    def forward_levels(
        self, x: torch.Tensor, take_indices: List[int], stop: int
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return self.stages.forward_levels(x, take_indices, stop, False)


def _downsample(in_dim: int, out_dim: int, spatial_dims: int, norm_eps: float, **dd) -> nn.Module:
    """HorNet's between-stage downsample, official order: LayerNorm first, then a stride-2 conv."""
    return nn.Sequential(OrderedDict(norm=LayerNormNd(in_dim, eps=norm_eps, **dd),
                                     proj=conv_nd(spatial_dims)(in_dim, out_dim, 2, stride=2, **dd)))


def _rfft_grid(img_size: int | Sequence[int], stride: int, spatial_dims: int) -> tuple[int, ...]:
    """rfft grid of a stage map: ``(*S[:-1], S[-1] // 2 + 1)`` with ``S = img_size // stride``."""
    sizes = [img_size] * spatial_dims if isinstance(img_size, int) else list(img_size)
    if len(sizes) != spatial_dims:
        raise ValueError(f"img_size needs {spatial_dims} values, got {img_size!r}")
    fmap = [max(s // stride, 1) for s in sizes]
    return (*fmap[:-1], fmap[-1] // 2 + 1)
