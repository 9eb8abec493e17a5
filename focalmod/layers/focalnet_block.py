"""FocalNet block: focal modulation + MLP, each with residual, layer scale and drop path (paper Sec. 3.2)."""
from __future__ import annotations

import torch
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from ._nd import check_channels_first, checks_apply, to_channels_first, to_channels_last
from .focal_modulation import FocalModulation


class FocalNetBlock(nn.Module):
    """`(B, dim, *S)` -> `(B, dim, *S)`.

    Pre-norm (default): ``x + DP(ls1(mod(norm1(x))))``, then ``x + DP(ls2(mlp(norm2(x))))``.
    `use_post_norm=True` is the official "res-post-norm" of the large models: the norms move onto the branch
    output, ``x + DP(ls1(norm1(mod(x))))``. Keys follow the official checkpoints: `norm1`, `modulation`, `norm2`,
    `mlp.fc1/fc2`; layer scale as `ls1.gamma`/`ls2.gamma` (timm's names for the official `gamma_1/2`).
    """

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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.dim, self.spatial_dims, self.use_post_norm = dim, spatial_dims, use_post_norm
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.modulation = FocalModulation(
            dim,
            spatial_dims=spatial_dims,
            focal_level=focal_level,
            focal_window=focal_window,
            focal_factor=focal_factor,
            normalize_modulator=normalize_modulator,
            use_post_norm=use_post_norm_in_modulation,
            proj_drop=proj_drop,
            norm_eps=norm_eps,
            **dd,
        )
        self.ls1 = LayerScale(dim, layerscale_value, **dd) if layerscale_value is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.ls2 = LayerScale(dim, layerscale_value, **dd) if layerscale_value is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims, self.norm1.weight.dtype)
        return to_channels_first(self.forward_channels_last(to_channels_last(x)))

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: `(B, *S, dim)` -> `(B, *S, dim)`."""
        if self.use_post_norm:
            x = x + self.drop_path1(self.ls1(self.norm1(self.modulation.forward_channels_last(x)[0])))
            return x + self.drop_path2(self.ls2(self.norm2(self._mlp(x))))
        x = x + self.drop_path1(self.ls1(self.modulation.forward_channels_last(self.norm1(x))[0]))
        return x + self.drop_path2(self.ls2(self._mlp(self.norm2(x))))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
