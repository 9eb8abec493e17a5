"""FocalNet block: focal modulation + MLP, each with residual, layer scale and drop path (paper Sec. 3.2)."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from .focal_modulation import FocalModulation
from .mixer_block import MixerBlock


class FocalNetBlock(MixerBlock):
    """`(B, dim, *S)` -> `(B, dim, *S)`: a `MixerBlock` whose mixer (key `modulation`) is a `FocalModulation`.

    Pre-norm (default): ``x + DP(ls1(mod(norm1(x))))``, then ``x + DP(ls2(mlp(norm2(x))))``.
    `use_post_norm=True` is the official "res-post-norm" of the large models: the norms move onto the branch
    output, ``x + DP(ls1(norm1(mod(x))))``. Keys follow the official checkpoints: `norm1`, `modulation`, `norm2`,
    `mlp.fc1/fc2`; layer scale as `ls1.gamma`/`ls2.gamma` (timm's names for the official `gamma_1/2`).
    `mixer_layer` puts another mixer (e.g. ``partial(GnConv, order=3)``) in the `modulation` slot instead; the
    focal arguments are then unused.
    """

    mixer_name = "modulation"

    def __init__(
        self,
        dim: int,
        spatial_dims: int = 2,
        mlp_ratio: float = 4.0,
        focal_level: int = 2,
        focal_window: int = 3,
        focal_factor: int = 2,
        use_post_norm: bool = False,
        use_post_norm_in_modulation: bool = False,
        normalize_modulator: bool = False,
        layerscale_value: float | None = None,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        mixer_layer: Callable[..., nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if mixer_layer is None:
            mixer_layer = partial(
                FocalModulation,
                focal_level=focal_level,
                focal_window=focal_window,
                focal_factor=focal_factor,
                normalize_modulator=normalize_modulator,
                use_post_norm=use_post_norm_in_modulation,
                proj_drop=proj_drop,
                norm_eps=norm_eps,
            )
        super().__init__(dim, mixer_layer, spatial_dims, mlp_ratio, use_post_norm, layerscale_value, proj_drop,
                         drop_path, norm_eps, device=device, dtype=dtype)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.modulation.forward_channels_last(x)[0]
