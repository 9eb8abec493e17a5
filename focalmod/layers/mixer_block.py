"""Token-mixer block shared by FocalNet and HorNet: norm -> mixer -> layer scale -> drop path, then the same with an
MLP (MetaFormer layout). The mixer is injected at construction, the way DINOv2's blocks take `attn_class`."""
from __future__ import annotations

from typing import Callable

import torch
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from ._nd import check_channels_first, checks_apply, to_channels_first, to_channels_last


class MixerBlock(nn.Module):
    """`(B, dim, *S)` -> `(B, dim, *S)`.

    Pre-norm (default): ``x + DP(ls1(mixer(norm1(x))))``, then ``x + DP(ls2(mlp(norm2(x))))``.
    `use_post_norm=True` is FocalNet's "res-post-norm" of the large models: the norms move onto the branch output,
    ``x + DP(ls1(norm1(mixer(x))))``.

    The mixer is ``mixer_layer(dim, spatial_dims=..., device=..., dtype=...)``: any module with FocalModulation's
    ``forward_channels_last(x) -> (out, maps)`` (FocalModulation, GnConv). A subclass names the attribute it lives
    under (`mixer_name`: its checkpoint key, ``modulation`` in FocalNet, ``gnconv`` in HorNet) and reads it in
    `_mix`; `block.mixer` returns it whatever the name.
    """

    mixer_name: str = "mixer"
    __jit_unused_properties__ = ["mixer"]

    def __init__(
        self,
        dim: int,
        mixer_layer: Callable[..., nn.Module],
        spatial_dims: int = 2,
        mlp_ratio: float = 4.0,
        use_post_norm: bool = False,
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
        setattr(self, self.mixer_name, mixer_layer(dim, spatial_dims=spatial_dims, **dd))
        self.ls1 = LayerScale(dim, layerscale_value, **dd) if layerscale_value is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.ls2 = LayerScale(dim, layerscale_value, **dd) if layerscale_value is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    @property
    def mixer(self) -> nn.Module:
        """The token mixer, whatever attribute name the block keeps it under."""
        return getattr(self, self.mixer_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims, self.norm1.weight.dtype)
        return to_channels_first(self.forward_channels_last(to_channels_last(x)))

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: `(B, *S, dim)` -> `(B, *S, dim)`."""
        if self.use_post_norm:
            x = x + self.drop_path1(self.ls1(self.norm1(self._mix(x))))
            return x + self.drop_path2(self.ls2(self.norm2(self._mlp(x))))
        x = x + self.drop_path1(self.ls1(self._mix(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self._mlp(self.norm2(x))))

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must read its mixer attribute {self.mixer_name!r} in _mix")

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
