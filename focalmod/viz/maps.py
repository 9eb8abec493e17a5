"""Gate maps and modulator magnitude of FocalNet blocks, collected with temporary forward hooks.

The modulator magnitude is the channel L2 norm of ``h(ctx_all)`` (paper Figs. 5-6; Della Libera et al. take the same
norm on the last block of each stage to explain sound classifiers). The gates are the raw per-level gate maps
(no sigmoid/softmax), level L being the global one. Hooks sit on each modulation's `gates_tap` and
`modulator_tap` and are removed before returning, whatever happens.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..layers import FocalModulation

__all__ = ["BlockMaps", "find_modulations", "modulation_maps", "quantile_mask"]

_BLOCK_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.blocks\.(\d+)\.modulation$")


@dataclass
class BlockMaps:
    """Maps of one block for a batch: `gates` `(B, L+1, *S)` and `magnitude` `(B, *S)`, float32 on the CPU."""

    stage: int
    block: int
    name: str
    gates: torch.Tensor
    magnitude: torch.Tensor

    @property
    def focal_level(self) -> int:
        return self.gates.shape[1] - 1


def find_modulations(model: nn.Module) -> list[tuple[int, int, str, FocalModulation]]:
    """`(stage, block, name, module)` for every `FocalModulation` in `model`, in forward order.

    FocalNet names (`layers.<stage>.blocks.<block>.modulation`, also under timm's feature wrapper) give stage and
    block; a module named otherwise counts as its own stage (block 0), numbered after the FocalNet stages.
    """
    found = []
    extra = 0
    for name, module in model.named_modules():
        if not isinstance(module, FocalModulation):
            continue
        match = _BLOCK_NAME.search(name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), name, module))
        else:
            found.append((-1, extra, name, module))
            extra += 1
    last_stage = max((s for s, _, _, _ in found), default=-1)
    return [(last_stage + 1 + b, 0, n, m) if s < 0 else (s, b, n, m) for s, b, n, m in found]


def _select(
    found: list[tuple[int, int, str, FocalModulation]], stages: Sequence[int] | None, all_blocks: bool
) -> list[tuple[int, int, str, FocalModulation]]:
    stage_ids = sorted({s for s, _, _, _ in found})
    if stages is None:
        wanted = stage_ids
    else:
        wanted = []
        for s in stages:
            if not -len(stage_ids) <= s < len(stage_ids):
                raise ValueError(f"stages: index {s} out of range for a model with {len(stage_ids)} stages")
            wanted.append(stage_ids[s])
    last_block = {s: max(b for s2, b, _, _ in found if s2 == s) for s in stage_ids}
    return [
        item for item in found if item[0] in wanted and (all_blocks or item[1] == last_block[item[0]])
    ]


@torch.no_grad()
def modulation_maps(
    model: nn.Module,
    x: torch.Tensor,
    stages: Sequence[int] | None = None,
    all_blocks: bool = False,
    return_output: bool = False,
) -> list[BlockMaps] | tuple[list[BlockMaps], torch.Tensor]:
    """Run `model(x)` once in eval mode and collect the gate maps and modulator magnitude of chosen blocks.

    Args:
        model: any network containing `FocalModulation` layers (FocalNet 1D/2D/3D, its feature wrapper, ...).
        x: the input batch, as `model` expects it.
        stages: stage indices (negative ones count from the end); None: every stage.
        all_blocks: every block of the chosen stages instead of only the last one of each.
        return_output: also return `model(x)`.

    Returns a list ordered by stage then block (plus the output). The model's train/eval flags are restored and
    all hooks removed afterwards; nothing is stored on the model.
    """
    found = find_modulations(model)
    if not found:
        raise ValueError(f"{type(model).__name__} contains no FocalModulation layer to take maps from")
    chosen = _select(found, stages, all_blocks)
    captured: dict[str, dict[str, torch.Tensor]] = {name: {} for _, _, name, _ in chosen}
    handles = []
    modes = {m: m.training for m in model.modules()}
    try:
        for _, _, name, module in chosen:
            slot = captured[name]
            handles.append(module.gates_tap.register_forward_hook(_store(slot, "gates", reduce=False)))
            handles.append(module.modulator_tap.register_forward_hook(_store(slot, "magnitude", reduce=True)))
        model.eval()
        output = model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    missing = [name for name, slot in captured.items() if len(slot) < 2]
    if missing:
        raise RuntimeError(f"the forward pass did not reach {missing}; were they skipped by the model?")
    maps = [BlockMaps(s, b, n, captured[n]["gates"], captured[n]["magnitude"]) for s, b, n, _ in chosen]
    return (maps, output) if return_output else maps


def _store(slot: dict[str, torch.Tensor], key: str, reduce: bool):
    """Forward hook keeping the tap output (or its channel L2 norm) as a detached float32 CPU copy."""

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        value = torch.linalg.vector_norm(output.float(), dim=1) if reduce else output.float()
        slot[key] = value.detach().cpu().contiguous()

    return hook


def quantile_mask(magnitude: torch.Tensor, quantile: float = 0.9) -> torch.Tensor:
    """Binary mask of the positions at or above the per-sample `quantile` of `magnitude` `(B, *S)`.

    The activation-map thresholding of Della Libera et al. (0.9 quantile on the last stage's modulator norm).
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    flat = magnitude.flatten(1).float()
    threshold = torch.quantile(flat, quantile, dim=1, keepdim=True)
    return (flat >= threshold).view_as(magnitude)
