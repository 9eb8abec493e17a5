"""Training with fewer saved activations (`focalmod.layers.recompute`, `focalmod.optimize(..., recompute=True)`):
the same outputs and gradients as the plain path, fewer bytes saved for backward (counted with
`torch.autograd.graph.saved_tensors_hooks`), parameters and keys unchanged."""
from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import Mlp

import focalmod
from benchmarks.targets import saved_activation_bytes
from focalmod.layers import FocalModulation
from focalmod.layers.recompute import RecomputeFocalModulation, RecomputeMlp, use_recompute
from focalmod.models.optimize import restore_plain

SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1), num_classes=5, drop_path_rate=0.0)


def _randomize(model: torch.nn.Module) -> None:  # away from init (zero biases, unit norms) so every term matters
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def _grads_match(plain: torch.nn.Module, other: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    bytes1, bytes2 = saved_activation_bytes(plain, x1), saved_activation_bytes(other, x2)
    out1, out2 = plain(x1), other(x2)
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)
    target = torch.randn_like(out1)
    (out1 * target).sum().backward()
    (out2 * target).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(plain.named_parameters(), other.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    return bytes1, bytes2


@pytest.mark.parametrize("name,kwargs,shape", [
    ("focalnet_tiny_srf", {}, (2, 3, 64, 64)),
    ("focalnet_tiny_lrf", dict(use_post_norm=True, layerscale_value=0.5, normalize_modulator=True,
                               use_post_norm_in_modulation=True), (2, 3, 64, 64)),
    ("focalnet1d_tiny", dict(in_chans=8), (2, 8, 96)),
    ("focalnet3d_tiny", dict(in_chans=1), (1, 1, 32, 32, 32)),
    ("hornet_tiny_7x7", {}, (2, 3, 64, 64)),
])
def test_recompute_gives_plain_gradients_with_fewer_saved_bytes(name, kwargs, shape):
    torch.manual_seed(0)
    plain = focalmod.create_model(name, **SMALL, **kwargs).train()
    _randomize(plain)
    lean = focalmod.optimize(copy.deepcopy(plain), inference=False, recompute=True)
    assert lean.state_dict().keys() == plain.state_dict().keys()
    kinds = {type(m) for m in lean.modules()}
    assert RecomputeMlp in kinds and Mlp not in kinds
    assert FocalModulation not in kinds  # every plain focal modulation was switched (HorNet has none)
    plain_bytes, lean_bytes = _grads_match(plain, lean, torch.randn(shape))
    limit = 0.8 if "focalnet" in name else 0.9  # HorNet: only its MLPs recompute
    assert lean_bytes <= limit * plain_bytes, (lean_bytes, plain_bytes)


def test_recompute_combines_with_block_checkpointing_and_undoes():
    torch.manual_seed(1)
    plain = focalmod.create_model("focalnet_tiny_srf", **SMALL).train()
    _randomize(plain)
    lean = focalmod.optimize(copy.deepcopy(plain), inference=False, recompute=True)
    lean.set_grad_checkpointing(True)
    plain_bytes, lean_bytes = _grads_match(plain, lean, torch.randn(2, 3, 64, 64))
    assert lean_bytes <= 0.5 * plain_bytes
    restore_plain(lean)
    assert not any(isinstance(m, (RecomputeMlp, RecomputeFocalModulation)) for m in lean.modules())


def test_recompute_follows_autocast_in_backward():
    torch.manual_seed(2)
    plain = focalmod.create_model("focalnet_tiny_srf", **SMALL).train()
    lean = copy.deepcopy(plain)
    assert use_recompute(lean) == 10  # 5 blocks: 5 MLPs, 5 modulations
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, lean):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        assert out.dtype == torch.bfloat16
        out.float().square().sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for g1, g2 in zip(*grads):  # the same bf16 ops run again in backward: equal up to bf16 rounding order
        torch.testing.assert_close(g2, g1, rtol=2e-2, atol=2e-3)


def test_recompute_needs_training_mode():
    with pytest.raises(ValueError, match="recompute=True .* needs inference=False"):
        focalmod.optimize(focalmod.create_model("focalnet_tiny_srf", **SMALL), recompute=True)
