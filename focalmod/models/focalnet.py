"""FocalNet (Yang et al., "Focal Modulation Networks", NeurIPS 2022, arXiv 2203.11926) for 1D/2D/3D inputs.

Reproduces the official `microsoft/FocalNet` classification models given the same weights. Differences in
structure only (not in numbers), shared with timm's port:
* downsample at the start of each stage (official: end of the previous one) -> keys `layers.{i+1}.downsample`;
* channels-first API (`(B, C, *S)`), channels-last compute inside blocks, no H/W threading, any input size
  at least one stem patch (sizes not divisible by the strides are floored, as in the official code);
* no `gates`/`modulator` attributes; hook `modulation.gates_tap` / `modulation.modulator_tap` instead.
"""
from functools import partial
from typing import List, Sequence, Tuple

import torch

from ..layers import ClassifierHead, Downsample, FocalNetBlock, LayerNormNd
from .backbone import HierarchicalBackbone, Stage, build_stages, init_weights, per_stage, stage_dims
from .mixers import check_mixer, mixer_layers

__all__ = ["FocalNet", "FocalNetStage"]

FocalNetStage = Stage  # the stage class of every hierarchical backbone (downsample, then blocks)


class FocalNet(HierarchicalBackbone):
    """Hierarchical (or, with one stage, isotropic) FocalNet for `(B, in_chans, *S)` inputs.

    Args:
        spatial_dims: 1, 2 or 3.
        in_chans: input channels (3 for RGB images, mel bins for 1D spectrogram frames, 1 for CT volumes).
        num_classes: classifier outputs; 0 gives pooled features.
        global_pool: 'avg', 'max', 'avgmax' ((avg + max) / 2, as timm) or '' (no pooling).
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
        mixer: token mixer of every block, kept under the block's `modulation` key: 'focal' (focal modulation with
            the focal arguments above) or 'gnconv' (HorNet's gnConv, order 2, 3, 4, 5 by stage width, for
            comparisons with everything else equal).
    """

    stages_name = "layers"

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
        mixer: str = "focal",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {"device": device, "dtype": dtype}
        dims = stage_dims(spatial_dims, embed_dim, depths)
        num_stages = len(dims)
        levels = per_stage("focal_levels", focal_levels, num_stages)
        windows = per_stage("focal_windows", focal_windows, num_stages)
        # None: each block builds its FocalModulation from the focal arguments
        mixer_layer = [None] * num_stages if check_mixer(mixer) == "focal" else mixer_layers(mixer, dims)
        block = partial(FocalNetBlock, spatial_dims=spatial_dims, mlp_ratio=mlp_ratio, use_post_norm=use_post_norm,
                        use_post_norm_in_modulation=use_post_norm_in_modulation,
                        normalize_modulator=normalize_modulator, layerscale_value=layerscale_value,
                        proj_drop=proj_drop_rate, norm_eps=norm_eps, **dd)
        # Built in the order they are registered (stem, stages, norm, head), so a seed gives the same weights as ever.
        stem = Downsample(in_chans, embed_dim, spatial_dims, stride=patch_size, overlap=use_conv_embed,
                          norm_eps=norm_eps, **dd)
        stages = build_stages(
            dims, depths, drop_path_rate,
            partial(Downsample, spatial_dims=spatial_dims, stride=2, overlap=use_conv_embed, norm_eps=norm_eps, **dd),
            lambda i, rate: block(dims[i], focal_level=levels[i], focal_window=windows[i], drop_path=rate,
                                  mixer_layer=mixer_layer[i]),
        )
        super().__init__(
            spatial_dims, in_chans, num_classes, patch_size, dims,
            stem=stem,
            stages=stages,
            norm=LayerNormNd(dims[-1], eps=norm_eps, **dd),
            head=ClassifierHead(dims[-1], num_classes, global_pool, drop_rate, **dd),
            block_levels=num_stages == 1,
        )
        self.apply(init_weights)

    def forward_levels(
        self, x: torch.Tensor, take_indices: List[int], stop: int
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return self.layers.forward_levels(x, take_indices, stop, self.isotropic)
