"""FocalNet (Yang et al., "Focal Modulation Networks", NeurIPS 2022, arXiv 2203.11926) for 1D/2D/3D inputs.

Reproduces the official `microsoft/FocalNet` classification models given the same weights. Differences in
structure only (not in numbers), shared with timm's port:
* downsample at the start of each stage (official: end of the previous one) -> keys `layers.{i+1}.downsample`;
* channels-first API (`(B, C, *S)`), channels-last compute inside blocks, no H/W threading, any input size
  at least one stem patch (sizes not divisible by the strides are floored, as in the official code);
* no `gates`/`modulator` attributes; hook `modulation.gates_tap` / `modulation.modulator_tap` instead.
"""
from typing import Sequence

import torch
from timm.layers import trunc_normal_
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from torch import nn

from ..layers import ClassifierHead, Downsample, FocalNetBlock, LayerNormNd
from ..layers._nd import check_channels_first, check_spatial_dims, checks_apply, to_channels_first, to_channels_last

__all__ = ["FocalNet", "FocalNetStage"]


class FocalNetStage(nn.Module):
    """Optional stride-2 downsample, then `depth` FocalNet blocks."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int,
        spatial_dims: int = 2,
        downsample: bool = True,
        use_overlap_down: bool = False,
        drop_path: Sequence[float] = (),
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **block_kwargs,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        self.downsample = (
            Downsample(in_dim, out_dim, spatial_dims, stride=2, overlap=use_overlap_down, norm_eps=norm_eps, **dd)
            if downsample
            else nn.Identity()
        )
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList(
            FocalNetBlock(out_dim, spatial_dims, drop_path=drop_path[i], norm_eps=norm_eps, **block_kwargs, **dd)
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

    @torch.jit.ignore
    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One block on a channels-last tensor (as in `forward`, with gradient checkpointing when enabled)."""
        return checkpoint(block.forward_channels_last, x) if self.grad_checkpointing else block.forward_channels_last(x)


class FocalNet(nn.Module):
    """Hierarchical (or, with one stage, isotropic) FocalNet for `(B, in_chans, *S)` inputs.

    Args:
        spatial_dims: 1, 2 or 3.
        in_chans: input channels (3 for RGB images, mel bins for 1D spectrogram frames, 1 for CT volumes).
        num_classes: classifier outputs; 0 gives pooled features.
        global_pool: 'avg', 'max' or '' (no pooling).
        embed_dim: channels of the first stage; stage i has `embed_dim * 2**i`.
        depths: blocks per stage.
        focal_levels, focal_windows: per stage (an int is used for every stage).
        patch_size: stem stride (4 for the hierarchical models, 16 for the isotropic ones).
        use_conv_embed: overlapping stem (k7 s4 p2) and downsamples (k3 s2 p1), official `use_conv_embed`.
        use_post_norm: res-post-norm blocks (official `use_postln`).
        use_post_norm_in_modulation: LayerNorm inside the modulation (official `use_postln_in_modulation`).
        normalize_modulator: divide the aggregated context by L+1.
        layerscale_value: layer-scale init (1e-4 for the large models), None for none.
        drop_rate, proj_drop_rate, drop_path_rate: head dropout, projection/MLP dropout, stochastic depth
            (linear ramp over all blocks, as in the official code).
    """

    __jit_unused_properties__ = ["min_input_size"]  # eager-only (input checks); TorchScript skips it

    def __init__(
        self,
        spatial_dims: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        mlp_ratio: float = 4.0,
        focal_levels: int | Sequence[int] = 2,
        focal_windows: int | Sequence[int] = 3,
        patch_size: int = 4,
        use_conv_embed: bool = False,
        use_post_norm: bool = False,
        use_post_norm_in_modulation: bool = False,
        normalize_modulator: bool = False,
        layerscale_value: float | None = None,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.spatial_dims = check_spatial_dims(spatial_dims)
        num_stages = len(depths)
        if num_stages == 0 or any(d <= 0 for d in depths):
            raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
        focal_levels = _per_stage("focal_levels", focal_levels, num_stages)
        focal_windows = _per_stage("focal_windows", focal_windows, num_stages)
        self.num_classes, self.in_chans = num_classes, in_chans
        self.embed_dim = [embed_dim * 2**i for i in range(num_stages)]
        self.num_features = self.head_hidden_size = self.embed_dim[-1]
        self.patch_size = patch_size
        self.grad_checkpointing = False

        self.stem = Downsample(
            in_chans, embed_dim, spatial_dims, stride=patch_size, overlap=use_conv_embed, norm_eps=norm_eps, **dd
        )
        drop_path = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under meta
        self.layers = nn.Sequential()
        self.feature_info = []
        for i, depth in enumerate(depths):
            self.layers.append(
                FocalNetStage(
                    self.embed_dim[max(i - 1, 0)],
                    self.embed_dim[i],
                    depth,
                    spatial_dims,
                    downsample=i > 0,
                    use_overlap_down=use_conv_embed,
                    drop_path=drop_path[sum(depths[:i]) : sum(depths[: i + 1])],
                    norm_eps=norm_eps,
                    mlp_ratio=mlp_ratio,
                    focal_level=focal_levels[i],
                    focal_window=focal_windows[i],
                    use_post_norm=use_post_norm,
                    use_post_norm_in_modulation=use_post_norm_in_modulation,
                    normalize_modulator=normalize_modulator,
                    layerscale_value=layerscale_value,
                    proj_drop=proj_drop_rate,
                    **dd,
                )
            )
            self.feature_info.append(
                dict(num_chs=self.embed_dim[i], reduction=patch_size * 2**i, module=f"layers.{i}")
            )
        self.isotropic = num_stages == 1
        if self.isotropic:  # one stage: every block is a feature level (like timm's ViTs), all at stride patch_size
            self.feature_info = [
                dict(num_chs=embed_dim, reduction=patch_size, module=f"layers.0.blocks.{j}") for j in range(depths[0])
            ]
        self.norm = LayerNormNd(self.num_features, eps=norm_eps, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, global_pool, drop_rate, **dd)
        self.apply(_init_weights)

    @property
    def min_input_size(self) -> int:
        """Smallest spatial side the strided stem and downsamples accept."""
        return self.patch_size * 2 ** (len(self.layers) - 1)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=[(r"^layers\.(\d+)", None), (r"^norm", (99999,))]
            if coarse
            else [
                (r"^layers\.(\d+).downsample", (0,)),
                (r"^layers\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        p = next(self.parameters())
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool, device=p.device, dtype=p.dtype)

    def _check_input(self, x: torch.Tensor) -> None:
        if not checks_apply(x):
            return
        check_channels_first(type(self).__name__, x, self.in_chans, self.spatial_dims, self.stem.proj.weight.dtype)
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f"{type(self).__name__} needs every spatial side >= {self.min_input_size} "
                f"(stem stride {self.patch_size} and {len(self.layers) - 1} stride-2 stages), got {tuple(x.shape)}"
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
        """Feature-level outputs (channels-first), timm's contract: `(final, [intermediates])` or only the list.

        Levels are the stages, or the blocks of an isotropic (one-stage) model; `norm` applies the final norm to
        the last level only.
        """
        if output_fmt not in ("NCHW", "NCL", "NCDHW"):
            raise ValueError(f"output_fmt must be channels-first, got {output_fmt!r}")
        if not torch.jit.is_scripting():
            self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        last_idx = len(self.feature_info) - 1
        intermediates = []
        x = self.stem(x)
        if self.isotropic:
            stage = self.layers[0]
            blocks = stage.blocks if torch.jit.is_scripting() or not stop_early else stage.blocks[: max_index + 1]
            x = to_channels_last(stage.downsample(x))
            for i, block in enumerate(blocks):
                x = stage.run_block(block, x)
                if i in take_indices:
                    level = to_channels_first(x)
                    intermediates.append(self.norm(level) if norm and i == last_idx else level)
            x = to_channels_first(x)
            num_run = len(blocks)
        else:
            stages = self.layers if torch.jit.is_scripting() or not stop_early else self.layers[: max_index + 1]
            for i, stage in enumerate(stages):
                x = stage(x)
                if i in take_indices:
                    intermediates.append(self.norm(x) if norm and i == last_idx else x)
            num_run = len(stages)
        if intermediates_only:
            return intermediates
        if num_run == last_idx + 1:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.feature_info) - 1
        if self.isotropic:
            self.layers[0].blocks = self.layers[0].blocks[: max_index + 1]
        else:
            self.layers = self.layers[: max_index + 1]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.head = ClassifierHead(self.num_features, 0, "")
        elif prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_input(x)
        return self.norm(self.layers(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _per_stage(name: str, value: int | Sequence[int], num_stages: int) -> list[int]:
    values = [value] * num_stages if isinstance(value, int) else list(value)
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages}), got {value!r}")
    return values


def _init_weights(module: nn.Module) -> None:
    """Official init: truncated normal (std .02) for Linear weights, zero bias; convs keep PyTorch's default."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
