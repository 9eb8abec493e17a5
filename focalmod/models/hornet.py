"""HorNet (Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
NeurIPS 2022, arXiv 2207.14284) for 1D/2D/3D inputs, built from `focalmod.layers.GnConv`.

Reproduces the official `raoyongming/HorNet` classifiers given the same weights (converted by
`focalmod.checkpoints.hornet`). Differences in structure only: the stem is `stem.{proj,norm}`, the downsample
between stages sits at the start of each stage (`stages.{i}.downsample.{norm,proj}`), blocks live in
`stages.{i}.blocks.{j}`, 1x1 convs are Linear layers, layer scale is timm's `ls1/ls2.gamma`, the MLP is timm's
`mlp.fc1/fc2`, and the final norm (applied after pooling, as in the official code) is `head.norm`.
"""
from collections import OrderedDict
from typing import Sequence

import torch
from timm.layers import DropPath, LayerScale, Mlp, trunc_normal_
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from torch import nn

from ..layers import ClassifierHead, Downsample, GnConv, LayerNormNd, conv_nd
from ..layers._nd import check_channels_first, check_spatial_dims, checks_apply, to_channels_first, to_channels_last

__all__ = ["HorNet", "HorNetBlock", "HorNetStage", "NormClassifierHead"]


class HorNetBlock(nn.Module):
    """`(B, dim, *S)` -> same. ``x + DP(ls1(gnconv(norm1(x))))``, then ``x + DP(ls2(mlp(norm2(x))))``."""

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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.dim, self.spatial_dims = dim, spatial_dims
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.gnconv = GnConv(dim, order, spatial_dims, mixer=mixer, gf_size=gf_size, scale=scale, **dd)
        self.ls1 = LayerScale(dim, layerscale_value, **dd) if layerscale_value else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, **dd)
        self.ls2 = LayerScale(dim, layerscale_value, **dd) if layerscale_value else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims, self.norm1.weight.dtype)
        return to_channels_first(self.forward_channels_last(to_channels_last(x)))

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: `(B, *S, dim)` -> `(B, *S, dim)`."""
        x = x + self.drop_path1(self.ls1(self.gnconv.forward_channels_last(self.norm1(x))[0]))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class HorNetStage(nn.Module):
    """Optional LayerNorm + stride-2 conv downsample (official order: norm first), then `depth` blocks."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int,
        spatial_dims: int = 2,
        downsample: bool = True,
        drop_path: Sequence[float] = (),
        norm_eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **block_kwargs,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        self.downsample = (
            nn.Sequential(
                OrderedDict(
                    norm=LayerNormNd(in_dim, eps=norm_eps, **dd),
                    proj=conv_nd(spatial_dims)(in_dim, out_dim, 2, stride=2, **dd),
                )
            )
            if downsample
            else nn.Identity()
        )
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList(
            HorNetBlock(out_dim, spatial_dims, drop_path=drop_path[i], norm_eps=norm_eps, **block_kwargs, **dd)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(self.downsample(x))
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block.forward_channels_last, x)
            else:
                x = block.forward_channels_last(x)
        return to_channels_first(x)


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


class HorNet(nn.Module):
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
    """

    __jit_unused_properties__ = ["min_input_size"]  # eager-only (input checks); TorchScript skips it

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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.spatial_dims = check_spatial_dims(spatial_dims)
        num_stages = len(depths)
        if num_stages == 0 or any(d <= 0 for d in depths):
            raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
        orders = _per_stage("orders", orders, num_stages)
        mixers = _per_stage("mixers", mixers, num_stages)
        if gf_sizes is None:
            gf_sizes = [_rfft_grid(img_size, 4 * 2**i, spatial_dims) if m == "gf" else None for i, m in
                        enumerate(mixers)]
        gf_sizes = _per_stage("gf_sizes", list(gf_sizes), num_stages)
        self.num_classes, self.in_chans, self.patch_size = num_classes, in_chans, 4
        self.embed_dim = [embed_dim * 2**i for i in range(num_stages)]
        self.num_features = self.head_hidden_size = self.embed_dim[-1]
        self.grad_checkpointing = False

        self.stem = Downsample(in_chans, embed_dim, spatial_dims, stride=4, norm_eps=norm_eps, **dd)
        drop_path = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under meta
        self.stages = nn.Sequential()
        self.feature_info = []
        for i, depth in enumerate(depths):
            self.stages.append(
                HorNetStage(
                    self.embed_dim[max(i - 1, 0)],
                    self.embed_dim[i],
                    depth,
                    spatial_dims,
                    downsample=i > 0,
                    drop_path=drop_path[sum(depths[:i]) : sum(depths[: i + 1])],
                    norm_eps=norm_eps,
                    order=orders[i],
                    mixer=mixers[i],
                    gf_size=gf_sizes[i],
                    scale=scale,
                    mlp_ratio=mlp_ratio,
                    layerscale_value=layerscale_value,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=self.embed_dim[i], reduction=4 * 2**i, module=f"stages.{i}"))
        self.head = NormClassifierHead(self.num_features, num_classes, global_pool, drop_rate, norm_eps, **dd)
        self.apply(_init_weights)
        if isinstance(self.head.fc, nn.Linear):
            with torch.no_grad():
                self.head.fc.weight.mul_(head_init_scale)
                self.head.fc.bias.mul_(head_init_scale)

    @property
    def min_input_size(self) -> int:
        """Smallest spatial side the stride-4 stem and the stride-2 downsamples accept."""
        return self.patch_size * 2 ** (len(self.stages) - 1)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        p = self.stem.proj.weight
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool, device=p.device, dtype=p.dtype)

    def _check_input(self, x: torch.Tensor) -> None:
        if not checks_apply(x):
            return
        check_channels_first(type(self).__name__, x, self.in_chans, self.spatial_dims, self.stem.proj.weight.dtype)
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f"{type(self).__name__} needs every spatial side >= {self.min_input_size} "
                f"(stem stride 4 and {len(self.stages) - 1} stride-2 stages), got {tuple(x.shape)}"
            )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Stage outputs (channels-first), timm's contract: `(final, [intermediates])` or only the list.

        `norm` has no effect: HorNet's final norm acts on pooled features (it lives in the head), as in timm's
        ConvNeXt with ``head_norm_first=False``.
        """
        if output_fmt not in ("NCHW", "NCL", "NCDHW"):
            raise ValueError(f"output_fmt must be channels-first, got {output_fmt!r}")
        if not torch.jit.is_scripting():
            self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if max_index < len(self.embed_dim) - 1 or prune_norm:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.head = ClassifierHead(self.num_features, 0, "")
        elif prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _per_stage(name: str, value, num_stages: int) -> list:
    values = [value] * num_stages if isinstance(value, (int, str)) else list(value)
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages}), got {value!r}")
    return values


def _rfft_grid(img_size: int | Sequence[int], stride: int, spatial_dims: int) -> tuple[int, ...]:
    """rfft grid of a stage map: ``(*S[:-1], S[-1] // 2 + 1)`` with ``S = img_size // stride``."""
    sizes = [img_size] * spatial_dims if isinstance(img_size, int) else list(img_size)
    if len(sizes) != spatial_dims:
        raise ValueError(f"img_size needs {spatial_dims} values, got {img_size!r}")
    fmap = [max(s // stride, 1) for s in sizes]
    return (*fmap[:-1], fmap[-1] // 2 + 1)


def _init_weights(module: nn.Module) -> None:
    """Official init: truncated normal (std .02) for conv / Linear weights, zero bias."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
