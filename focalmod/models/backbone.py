"""The hierarchical backbone FocalNet and HorNet share: stem -> stages -> final norm -> head, with timm's model contract
(`forward_features` / `forward_head` / `forward_intermediates`, `prune_intermediate_layers`, `feature_info`,
`set_grad_checkpointing`, `group_matcher`, `reset_classifier`, `no_weight_decay`).

A family (`FocalNet`, `HorNet`) builds the pieces - blocks with their token mixer, downsample, final norm, head - and
passes them in; it names the stage container (`stages_name`, a checkpoint key: ``layers`` in FocalNet, ``stages`` in
HorNet) and reads it in `forward_levels`, the one method TorchScript needs spelled out per family.
"""
# No `from __future__ import annotations` here: FX copies string annotations of forward() into the code it
# generates, which TorchScript cannot read (timm's test_model_forward_fx_torchscript).
from typing import Callable, Iterable, List, Sequence, Tuple

import torch
from timm.layers import trunc_normal_
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from torch import nn

from ..layers import ClassifierHead
from ..layers._nd import check_channels_first, check_spatial_dims, checks_apply, to_channels_first, to_channels_last

__all__ = ["HierarchicalBackbone", "Stage", "Stages", "build_stages", "init_weights", "per_stage", "stage_dims"]


class Stage(nn.Module):
    """Optional stride-2 downsample (channels-first), then blocks run channels-last (`block.forward_channels_last`).

    `(B, in_dim, *S)` -> `(B, out_dim, *S / 2)`; with gradient checkpointing each block is recomputed in backward.
    """

    def __init__(self, downsample: nn.Module, blocks: Iterable[nn.Module]) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(x, torch.jit.annotate(List[int], []), len(self.blocks) - 1)[0]

    def forward_levels(
        self, x: torch.Tensor, take_indices: List[int], stop: int
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run blocks ``0..stop``; return the output and the outputs of the blocks in `take_indices`, channels-first."""
        x = to_channels_last(self.downsample(x))
        levels: List[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            if i <= stop:
                if self.grad_checkpointing and not torch.jit.is_scripting():
                    x = checkpoint(block.forward_channels_last, x)
                else:
                    x = block.forward_channels_last(x)
                if i in take_indices:
                    levels.append(to_channels_first(x))
        return to_channels_first(x), levels


class Stages(nn.Sequential):
    """The stages in order (an `nn.Sequential`: calling it runs them all)."""

    def forward_levels(
        self, x: torch.Tensor, take_indices: List[int], stop: int, block_levels: bool
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the feature levels ``0..stop`` - the stages, or with `block_levels` the blocks of a single stage (an
        isotropic model) - and return the output and the levels in `take_indices` (channels-first)."""
        levels: List[torch.Tensor] = []
        for i, stage in enumerate(self):
            if block_levels:
                x, levels = stage.forward_levels(x, take_indices, stop)
            elif i <= stop:
                x = stage(x)
                if i in take_indices:
                    levels.append(x)
        return x, levels


class HierarchicalBackbone(nn.Module):
    """Stem -> `Stages` -> final norm -> head for `(B, in_chans, *S)` inputs, channels-first like `nn.ConvNd`.

    Args:
        spatial_dims, in_chans, num_classes: as in the families.
        patch_size: stem stride; stage i runs at stride ``patch_size * 2**i``.
        embed_dims: channels of each stage.
        stem, stages, norm, head: the built pieces (`stages`: `Stage` modules; `norm`: applied to the last stage's map,
            `nn.Identity` where the head normalises; `head`: a `ClassifierHead`).
        block_levels: the feature levels are the blocks of the one stage (isotropic models, like timm's ViTs) rather
            than the stages.
    """

    stages_name: str = "stages"
    __jit_unused_properties__ = ["min_input_size"]  # eager-only (input checks); TorchScript skips it

    def __init__(
        self,
        spatial_dims: int,
        in_chans: int,
        num_classes: int,
        patch_size: int,
        embed_dims: Sequence[int],
        stem: nn.Module,
        stages: Sequence[Stage],
        norm: nn.Module,
        head: ClassifierHead,
        block_levels: bool = False,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.num_classes, self.in_chans, self.patch_size = num_classes, in_chans, patch_size
        self.embed_dim = list(embed_dims)
        self.num_features = self.head_hidden_size = self.embed_dim[-1]
        self.grad_checkpointing = False
        self.stem = stem
        setattr(self, self.stages_name, Stages(*stages))
        self.norm = norm
        self.head = head
        self.isotropic = block_levels
        name = self.stages_name
        if block_levels:  # every block is a feature level, all at stride patch_size
            self.feature_info = [dict(num_chs=self.embed_dim[0], reduction=patch_size, module=f"{name}.0.blocks.{j}")
                                 for j in range(len(stages[0].blocks))]
        else:
            self.feature_info = [dict(num_chs=d, reduction=patch_size * 2**i, module=f"{name}.{i}")
                                 for i, d in enumerate(self.embed_dim)]
        self.num_levels = len(self.feature_info)

    def forward_levels(
        self, x: torch.Tensor, take_indices: List[int], stop: int
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """`Stages.forward_levels` of this family's stage container on the stem output (defined per family)."""
        raise NotImplementedError

    def _stages(self) -> Stages:
        return getattr(self, self.stages_name)

    @property
    def min_input_size(self) -> int:
        """Smallest spatial side the strided stem and downsamples accept."""
        return self.patch_size * 2 ** (len(self._stages()) - 1)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        name = self.stages_name
        blocks = [(rf"^{name}\.(\d+)", None)] if coarse else [
            (rf"^{name}\.(\d+)\.downsample", (0,)), (rf"^{name}\.(\d+)\.blocks\.(\d+)", None)]
        if any(True for _ in self.norm.parameters()):
            blocks.append((r"^norm", (99999,)))
        return dict(stem=r"^stem", blocks=blocks)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self._stages():
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
                f"(stem stride {self.patch_size} and {len(self._stages()) - 1} stride-2 stages), got {tuple(x.shape)}"
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
        the last level only (no effect where the norm lives in the head, as in HorNet and timm's ConvNeXt with
        ``head_norm_first=False``).
        """
        if output_fmt not in ("NCHW", "NCL", "NCDHW"):
            raise ValueError(f"output_fmt must be channels-first, got {output_fmt!r}")
        if not torch.jit.is_scripting():
            self._check_input(x)
        take_indices, max_index = feature_take_indices(self.num_levels, indices)
        last = self.num_levels - 1
        stop = max_index if stop_early else last
        x, intermediates = self.forward_levels(self.stem(x), take_indices, stop)
        if norm and last in take_indices:
            intermediates[-1] = self.norm(intermediates[-1])
        if intermediates_only:
            return intermediates
        if stop == last:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(self.num_levels, indices)
        prune_end = max_index < self.num_levels - 1
        stages = self._stages()
        if self.isotropic:
            stages[0].blocks = stages[0].blocks[: max_index + 1]
        else:
            setattr(self, self.stages_name, stages[: max_index + 1])
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end or (prune_norm and hasattr(self.head, "norm")):  # a head that normalises loses its norm
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.head = ClassifierHead(self.num_features, 0, "")
        elif prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_input(x)
        x, _ = self.forward_levels(self.stem(x), torch.jit.annotate(List[int], []), self.num_levels - 1)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def per_stage(name: str, value, num_stages: int) -> list:
    """`value` repeated for every stage (an int or a str), or a sequence with one value per stage."""
    values = [value] * num_stages if isinstance(value, (int, str)) else list(value)
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages}), got {value!r}")
    return values


def stage_dims(spatial_dims: int, embed_dim: int, depths: Sequence[int]) -> list[int]:
    """Channels per stage, ``embed_dim * 2**i``, after checking `spatial_dims` and `depths` (one clear error each)."""
    check_spatial_dims(spatial_dims)
    if len(depths) == 0 or any(d <= 0 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
    return [embed_dim * 2**i for i in range(len(depths))]


def build_stages(
    dims: Sequence[int],
    depths: Sequence[int],
    drop_path_rate: float,
    downsample: Callable[[int, int], nn.Module],
    block: Callable[[int, float], nn.Module],
) -> list[Stage]:
    """One `Stage` per entry of `depths`: ``downsample(dims[i - 1], dims[i])`` (none before the first stage), then
    ``block(i, drop_path)`` for each of its blocks, stochastic depth ramping linearly from 0 to `drop_path_rate` over
    all blocks (official)."""
    rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under meta
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [
        Stage(downsample(dims[i - 1], dims[i]) if i > 0 else nn.Identity(),
              (block(i, rate) for rate in rates[start : start + depth]))
        for i, (start, depth) in enumerate(zip(starts, depths))
    ]


def init_weights(module: nn.Module, types: tuple[type[nn.Module], ...] = (nn.Linear,)) -> None:
    """Official FocalNet/HorNet init: truncated normal (std .02) for the weights of `types`, zero bias (`model.apply(
    partial(init_weights, types=...))`; FocalNet: Linear only, convs keep PyTorch's default; HorNet: convs too)."""
    if isinstance(module, types):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
