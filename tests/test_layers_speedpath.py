"""The fp32 CPU inference fast path (oneDNN conv/linear + GELU, split `f`) gives the plain path's numbers.

The fast path runs when autograd is off (inference_mode / no_grad); with gradients the plain PyTorch ops run. Both
must agree with each other and with timm to 1e-5, in 1D/2D/3D, for every block option.
"""
from __future__ import annotations

import pytest
import torch
from timm.models.focalnet import FocalNet as TimmFocalNet

import focalmod
from focalmod.layers import FocalModulation, FocalNetBlock
from focalmod.layers import _cpu_fastpath as fm
from focalmod.viz import modulation_maps

pytestmark = pytest.mark.skipif(not fm._HAS_MKLDNN_FUSED, reason="this torch build has no oneDNN fused CPU ops")


def _randomize(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            one = p.ndim == 1 and name.endswith(("weight", "gamma"))
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if one else 0.0))


def _plain_and_fast(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    plain = module(x)  # parameters require grad -> plain path
    with torch.inference_mode():
        fast = module(x)
    return plain.detach(), fast


def test_fast_path_is_chosen_only_without_autograd():
    module = FocalModulation(8)
    x = torch.randn(1, 8, 4, 4)
    assert not fm.use_fused_cpu_path(x, module.f.weight)
    with torch.no_grad():
        assert fm.use_fused_cpu_path(x, module.f.weight)
    with torch.inference_mode():
        assert fm.use_fused_cpu_path(x, module.f.weight)
        assert not fm.use_fused_cpu_path(x.double(), module.f.weight.double())


@pytest.mark.parametrize("spatial_dims,shape", [(1, (2, 16, 23)), (2, (2, 16, 11, 6)), (3, (1, 16, 5, 4, 6))])
@pytest.mark.parametrize("focal_level,focal_window", [(1, 3), (3, 5)])
def test_modulation_fast_equals_plain(spatial_dims, shape, focal_level, focal_window):
    module = FocalModulation(
        16, spatial_dims, focal_level=focal_level, focal_window=focal_window, normalize_modulator=True
    ).eval()
    _randomize(module)
    x = torch.randn(shape)
    plain, fast = _plain_and_fast(module, x)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("use_post_norm", [False, True])
@pytest.mark.parametrize("spatial_dims,shape", [(1, (2, 16, 19)), (2, (2, 16, 7, 9))])
def test_block_fast_equals_plain(use_post_norm, spatial_dims, shape):
    block = FocalNetBlock(
        16, spatial_dims, focal_level=2, use_post_norm=use_post_norm, layerscale_value=0.5,
        use_post_norm_in_modulation=use_post_norm,
    ).eval()
    _randomize(block)
    plain, fast = _plain_and_fast(block, torch.randn(shape))
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_model_fast_path_matches_timm_and_plain():
    kwargs = dict(embed_dim=16, depths=(1, 2, 1, 1), num_classes=10, drop_path_rate=0.0)
    reference = TimmFocalNet(focal_levels=(3, 3, 3, 3), **kwargs).eval()
    _randomize(reference)
    ours = focalmod.create_model("focalnet_tiny_lrf", **kwargs).eval()
    target = ours.state_dict()
    ours.load_state_dict({k: v.reshape(target[k].shape) for k, v in reference.state_dict().items()})
    x = torch.randn(2, 3, 45, 38)
    plain, fast = _plain_and_fast(ours, x)
    with torch.inference_mode():
        expected = reference(x)
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)
    for layout in (torch.channels_last,):
        with torch.inference_mode():
            torch.testing.assert_close(ours(x.contiguous(memory_format=layout)), expected, rtol=0, atol=1e-5)


def test_maps_are_the_same_on_both_paths():
    module = FocalModulation(8, 2, focal_level=2).eval()
    x = torch.randn(1, 8, 6, 6)
    (hooked,) = modulation_maps(module, x)  # no_grad -> fast path
    _, plain = module(x, return_maps=True)  # grad -> plain path
    torch.testing.assert_close(hooked.gates, plain["gates"].detach())
    torch.testing.assert_close(hooked.magnitude, plain["modulator"].detach().norm(dim=1), rtol=0, atol=1e-5)


def test_projection_slices_are_contiguous_and_keep_the_f_key():
    module = FocalModulation(8, 2, focal_level=2)
    q, ctx, gates = module._project_in(torch.randn(2, 5, 4, 8))
    assert q.is_contiguous() and ctx.is_contiguous() and gates.shape == (2, 5, 4, 3)
    assert {"f.weight", "f.bias"} <= set(module.state_dict())
    q.sum().backward()
    grad = module.f.weight.grad
    assert grad[:8].abs().sum() > 0 and grad[8:].abs().sum() == 0


def _force_plain(module: torch.nn.Module):
    """A no-op forward hook on a submodule makes the layer take the plain PyTorch path."""
    return module.register_forward_hook(lambda m, i, o: None)


@pytest.mark.parametrize("spatial_dims,shape", [(1, (2, 16, 19)), (2, (2, 16, 7, 9))])
def test_training_path_gradients_equal_plain(spatial_dims, shape):
    block = FocalNetBlock(16, spatial_dims, focal_level=2, layerscale_value=0.5)
    _randomize(block)
    x = torch.randn(shape)
    grads = []
    for plain in (False, True):
        handles = [_force_plain(block.modulation.h), _force_plain(block.mlp.fc2)] if plain else []
        xi = x.clone().requires_grad_()
        with torch.no_grad():
            assert fm.cpu_path(xi, block.mlp.fc1.weight, block.mlp) == (fm.PLAIN if plain else fm.FUSED)
        assert fm.cpu_path(xi, block.mlp.fc1.weight, block.mlp) == (fm.PLAIN if plain else fm.DNNL)
        out = block(xi)
        out.square().sum().backward()
        grads.append([xi.grad] + [p.grad.clone() for p in block.parameters()])
        block.zero_grad(set_to_none=True)
        for h in handles:
            h.remove()
    for fast, plain in zip(*grads):
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_hooks_on_inner_linears_still_fire_in_inference():
    module = FocalModulation(8, 2).eval()
    seen = []
    handle = module.h.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.inference_mode():
        module(torch.randn(1, 8, 5, 5))
    handle.remove()
    assert seen == [(1, 5, 5, 8)]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_autocast_tracing_and_other_dtypes_take_the_plain_path():
    module = FocalModulation(8, 2)
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        assert fm.cpu_path(x, module.f.weight, module) == fm.FUSED
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert fm.cpu_path(x, module.f.weight, module) == fm.PLAIN
            assert module(x).dtype == torch.bfloat16
        graph = torch.jit.trace(module, x).inlined_graph
    assert "mkldnn" not in str(graph) and "aten::linear" in str(graph)
