"""Focal-UNet: a FocalNet encoder with skip connections for 2D/3D segmentation.

Two decoders on the same encoder (a real `focalmod.models.FocalNet`, so its weights load from any FocalNet
checkpoint and it follows every change made there):

* ``decoder="focal"`` - the paper's 2D design (Naderi et al., "Focal-UNet", arXiv 2212.09263): an asymmetric
  decoder with one FocalNet block per level; the bottleneck and each level end in a patch expanding
  (transposed conv, stride 2), skips are fused by concat + Linear 2C->C, and a final patch expanding by the stem
  stride feeds a 1x1 classifier (the paper uses 7x7; 1x1 as in Swin-UNet keeps the full-resolution cost low).
* ``decoder="unetr"`` - MONAI's SwinUNETR layout with our encoder in place of Swin's: the stage outputs plus one
  more stride-2 `Downsample` (the bottleneck, like Swin's last patch merging) give five hidden states that go
  through `UnetrBasicBlock` / `UnetrUpBlock` / `UnetOutBlock` exactly as in SwinUNETR (needs MONAI).

Input-size rule: every spatial side must be divisible by `size_divisor` = ``patch_size * 2**len(depths)`` for the
unetr decoder (32 for the defaults, like SwinUNETR's ``patch_size**5``) and ``patch_size * 2**(len(depths) - 1)``
for the focal decoder; `forward` raises a ValueError naming the sizes otherwise.
"""
from typing import Any, List, Sequence

import torch
from torch import nn

from ..layers import Downsample, FocalNetBlock, LayerNormNd
from ..layers._nd import (
    check_channels_first,
    check_positive,
    checks_apply,
    conv_nd,
    to_channels_first,
    to_channels_last,
)
from .backbone import per_stage
from .focalnet import FocalNet
from .mixers import check_mixer, mixer_layers

__all__ = ["FocalUNet", "PatchExpand"]

_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
DECODERS = ("auto", "focal", "unetr")


class PatchExpand(nn.Module):
    """Patch expanding: transposed conv with kernel = stride = `scale`, then channels-first LayerNorm.

    `(B, in_chs, *S)` -> `(B, out_chs, *S * scale)`.
    """

    def __init__(self, in_chs: int, out_chs: int, spatial_dims: int, scale: int = 2, norm: bool = True) -> None:
        super().__init__()
        self.proj = _CONV_TRANSPOSE[spatial_dims](in_chs, out_chs, kernel_size=scale, stride=scale)
        self.norm = LayerNormNd(out_chs) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class _FocalDecoderLevel(nn.Module):
    """Concat with the skip -> Linear 2C->C -> `depth` FocalNet blocks -> optional PatchExpand (C -> C/2, x2)."""

    def __init__(self, dim: int, spatial_dims: int, depth: int, expand: bool, **block_kwargs: Any) -> None:
        super().__init__()
        self.fuse = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(FocalNetBlock(dim, spatial_dims, **block_kwargs) for _ in range(depth))
        self.expand = PatchExpand(dim, dim // 2, spatial_dims) if expand else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.fuse(to_channels_last(torch.cat([x, skip], dim=1)))
        for block in self.blocks:
            x = block.forward_channels_last(x)
        return self.expand(to_channels_first(x))


class _FocalDecoder(nn.Module):
    """The paper's asymmetric decoder: bottleneck expand, one level per skip (deepest first), final x`patch_size`."""

    def __init__(self, dims: list[int], spatial_dims: int, patch_size: int, out_channels: int, depth: int,
                 focal_levels: list[int], focal_windows: list[int], mlp_ratio: float, mixer: str = "focal") -> None:
        super().__init__()
        self.has_skips = len(dims) > 1
        self.bottleneck_expand = PatchExpand(dims[-1], dims[-2], spatial_dims) if self.has_skips else nn.Identity()
        mixer_layer = [None] * len(dims) if mixer == "focal" else mixer_layers(mixer, dims)  # as in the encoder
        self.levels = nn.ModuleList(
            _FocalDecoderLevel(dims[i], spatial_dims, depth, expand=i > 0, focal_level=focal_levels[i],
                               focal_window=focal_windows[i], mlp_ratio=mlp_ratio, mixer_layer=mixer_layer[i])
            for i in reversed(range(len(dims) - 1))
        )
        self.final_expand = PatchExpand(dims[0], dims[0], spatial_dims, scale=patch_size)
        self.out = conv_nd(spatial_dims)(dims[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        if not self.has_skips:  # one stage
            return self.out(self.final_expand(hidden[-1]))
        x = self.bottleneck_expand(hidden[-1])
        for i, level in enumerate(self.levels):  # deepest skip first
            x = level(x, hidden[len(hidden) - 2 - i])
        return self.out(self.final_expand(x))


class _UnetrDecoder(nn.Module):
    """SwinUNETR's decoder (MONAI blocks) on `len(depths) + 1` hidden states; the last is the extra downsample."""

    def __init__(self, dims: list[int], spatial_dims: int, patch_size: int, in_channels: int, out_channels: int,
                 norm_name: str | tuple) -> None:
        super().__init__()
        try:
            from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
        except ImportError as err:  # monai is the `medical` extra
            raise ImportError("FocalUNet(decoder='unetr') needs MONAI: pip install 'focalmod[medical]'") from err
        sd, f = spatial_dims, dims[0]

        def basic(ch_in: int, ch_out: int) -> nn.Module:
            return UnetrBasicBlock(sd, ch_in, ch_out, kernel_size=3, stride=1, norm_name=norm_name, res_block=True)

        def up(ch_in: int, ch_out: int, scale: int = 2) -> nn.Module:
            return UnetrUpBlock(sd, ch_in, ch_out, kernel_size=3, upsample_kernel_size=scale, norm_name=norm_name,
                                res_block=True)

        self.bottleneck_down = Downsample(dims[-1], 2 * dims[-1], sd, stride=2)
        self.input_block = basic(in_channels, f)  # SwinUNETR encoder1 (full resolution)
        self.skip_blocks = nn.ModuleList(basic(d, d) for d in dims[:-1])  # encoder2..4
        self.bottleneck_block = basic(2 * dims[-1], 2 * dims[-1])  # encoder10
        self.up_blocks = nn.ModuleList(up(2 * d, d) for d in reversed(dims))  # decoder5..2
        self.final_up = up(f, f, scale=patch_size)  # decoder1
        self.out = UnetOutBlock(sd, f, out_channels)

    def forward(self, x: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        skips: List[torch.Tensor] = []
        for i, block in enumerate(self.skip_blocks):
            skips.append(block(hidden[i]))
        skips.append(hidden[-1])
        dec = self.bottleneck_block(self.bottleneck_down(hidden[-1]))
        for i, block in enumerate(self.up_blocks):  # deepest skip first
            dec = block(dec, skips[len(skips) - 1 - i])
        return self.out(self.final_up(dec, self.input_block(x)))


class FocalUNet(nn.Module):
    """FocalNet encoder + skip connections + focal or UNETR decoder; `(B, in_channels, *S)` -> `(B, out_channels, *S)`.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (modalities).
        out_channels: segmentation classes including background.
        feature_size: channels of the first encoder stage; stage i has `feature_size * 2**i`.
        depths: FocalNet blocks per encoder stage.
        focal_levels, focal_windows: per stage (an int applies to every stage).
        patch_size: stride of the encoder stem (2 like SwinUNETR, 4 like the paper's FocalNet-T).
        drop_path_rate: stochastic depth of the encoder (linear ramp, as in FocalNet).
        decoder: ``"focal"`` (paper's 2D design), ``"unetr"`` (SwinUNETR layout, MONAI blocks) or ``"auto"``
            (focal for 2D, unetr for 3D).
        decoder_depth: FocalNet blocks per level of the focal decoder (1 in the paper).
        mlp_ratio: MLP width of every FocalNet block.
        norm_name: MONAI norm of the unetr decoder blocks.
        use_conv_embed: overlapping stem/downsamples in the encoder (FocalNet's `use_conv_embed`).
        mixer: token mixer of every FocalNet block (encoder and decoder): ``"focal"`` (focal modulation) or
            ``"gnconv"`` (HorNet's, order 2, 3, 4, 5 by width, for controlled comparisons).
        encoder_kwargs: extra `FocalNet` constructor arguments (e.g. ``use_post_norm=True``).

    The encoder is `self.encoder` (a `FocalNet` without head): ``focalmod.load_checkpoint(net.encoder, path,
    strict=False)`` initialises it from ImageNet weights as in the paper. `size_divisor` is the input-size rule.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        feature_size: int = 48,
        depths: Sequence[int] = (2, 2, 2, 2),
        focal_levels: int | Sequence[int] = 2,
        focal_windows: int | Sequence[int] = 3,
        patch_size: int = 2,
        drop_path_rate: float = 0.0,
        decoder: str = "auto",
        decoder_depth: int = 1,
        mlp_ratio: float = 4.0,
        norm_name: str | tuple = "instance",
        use_conv_embed: bool = False,
        mixer: str = "focal",
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("feature_size", feature_size), ("patch_size", patch_size),
                            ("decoder_depth", decoder_depth)):
            check_positive(name, value)
        depths = tuple(depths) if isinstance(depths, (list, tuple)) else depths
        if not isinstance(depths, tuple) or not depths or any(not isinstance(d, int) or d <= 0 for d in depths):
            raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
        levels = per_stage("focal_levels", focal_levels, len(depths))
        windows = per_stage("focal_windows", focal_windows, len(depths))
        if any(not isinstance(v, int) or v < 1 for v in levels):
            raise ValueError(f"focal_levels must be positive ints, got {focal_levels!r}")
        if any(not isinstance(v, int) or v < 1 for v in windows):
            raise ValueError(f"focal_windows must be positive ints, got {focal_windows!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        check_mixer(mixer)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if decoder == "auto":
            decoder = "focal" if spatial_dims == 2 else "unetr"
        if decoder == "focal" and len(depths) > 1 and feature_size % 2:
            raise ValueError(f"feature_size must be even for the focal decoder (patch expanding halves it), got "
                             f"{feature_size}")

        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.num_classes = out_channels
        self.decoder_type, self.patch_size = decoder, patch_size
        self.encoder = FocalNet(
            spatial_dims=spatial_dims, in_chans=in_channels, num_classes=0, global_pool="",
            embed_dim=feature_size, depths=depths, mlp_ratio=mlp_ratio, focal_levels=levels, focal_windows=windows,
            patch_size=patch_size, use_conv_embed=use_conv_embed, drop_path_rate=drop_path_rate, mixer=mixer,
            **(encoder_kwargs or {}),
        )
        dims = list(self.encoder.embed_dim)
        # Skip norms for all stages but the last (the encoder's own final norm covers that one).
        self.skip_norms = nn.ModuleList(LayerNormNd(d) for d in dims[:-1])
        if decoder == "focal":
            self.decoder = _FocalDecoder(dims, spatial_dims, patch_size, out_channels, decoder_depth, levels,
                                         windows, mlp_ratio, mixer)
            self.size_divisor = patch_size * 2 ** (len(depths) - 1)
        else:
            self.decoder = _UnetrDecoder(dims, spatial_dims, patch_size, in_channels, out_channels, norm_name)
            self.size_divisor = patch_size * 2 ** len(depths)

    def check_input_size(self, spatial_shape: Sequence[int]) -> None:
        """Raise a ValueError unless every side of `spatial_shape` is a positive multiple of `size_divisor`."""
        shape = tuple(int(s) for s in spatial_shape)
        if any(s <= 0 or s % self.size_divisor for s in shape):
            raise ValueError(
                f"FocalUNet({self.decoder_type} decoder, patch_size {self.patch_size}, {len(self.encoder.layers)} "
                f"stages) needs spatial sizes divisible by {self.size_divisor}, got {shape}"
            )

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised stage outputs (channels-first), shallowest first: channels `feature_size * 2**i`."""
        encoder = self.encoder
        x = encoder.stem(x)
        hidden: List[torch.Tensor] = []
        for stage in encoder.layers:
            x = stage(x)
            hidden.append(x)
        out: List[torch.Tensor] = []
        for i, norm in enumerate(self.skip_norms):
            out.append(norm(hidden[i]))
        out.append(encoder.norm(hidden[-1]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first("FocalUNet", x, self.in_channels, self.spatial_dims,
                                     self.encoder.stem.proj.weight.dtype)
                self.check_input_size(x.shape[2:])
        return self.decoder(x, self.forward_encoder(x))
