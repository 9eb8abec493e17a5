"""The opt-in oneDNN CPU fast path (`focalmod.optimize` / `layers._cpu_fastpath`) against the plain path.

The default forward is the plain PyTorch path; the fast modules are swapped in once, by one explicit call, and must
give the plain path's numbers (and timm's) to 1e-5 in 1D/2D/3D, for every block option, in inference and training.
The private oneDNN ops they use are pinned here: a torch release that changes them fails this file loudly.
"""
from __future__ import annotations

import copy

import pytest
import torch
from timm.models.focalnet import FocalNet as TimmFocalNet

import focalmod
from focalmod.layers import FocalModulation, FocalNetBlock
from focalmod.layers import _cpu_fastpath as fp
from focalmod.models.optimize import FrozenCompiled, restore_plain
from focalmod.viz import modulation_maps

# Only a torch built without oneDNN skips; where oneDNN is there, missing or changed ops fail every test below.
pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def test_private_oneDNN_ops_keep_the_schemas_the_fast_path_calls():
    assert fp.HAS_MKLDNN_FUSED, "torch.ops.mkldnn._linear_pointwise / _convolution_pointwise disappeared"
    assert str(torch.ops.mkldnn._linear_pointwise.default._schema) == (
        "mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars, str? algorithm) "
        "-> Tensor Y"
    )
    assert str(torch.ops.mkldnn._convolution_pointwise.default._schema) == (
        "mkldnn::_convolution_pointwise(Tensor X, Tensor W, Tensor? B, int[] padding, int[] stride, int[] dilation, "
        "int groups, str attr, Scalar?[] scalars, str? algorithm) -> Tensor Y"
    )


def test_custom_ops_wrapping_the_private_ops_pass_torch_opcheck():
    # torch.library.opcheck: schema, fake (meta) implementation against the real op, autograd registration, and
    # tracing through AOT dispatch, which inductor relies on to call them as extern kernels
    x = torch.randn(2, 5, 8)
    torch.library.opcheck(fp.dnnl_linear, (x, torch.randn(6, 8), torch.randn(6), "gelu"))
    torch.library.opcheck(fp.dnnl_linear, (x, torch.randn(6, 8), None, "none"))
    for shape, kernel, pad in (((2, 4, 7, 9), (3, 3), [1, 1]), ((1, 4, 3, 5, 6), (3, 5, 5), [1, 2, 2])):
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        xc = torch.randn(shape).contiguous(memory_format=fmt)
        torch.library.opcheck(fp.dnnl_same_conv_gelu, (xc, torch.randn(4, 1, *kernel), None, pad, 4))


def _randomize(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            one = p.ndim == 1 and name.endswith(("weight", "gamma"))
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if one else 0.0))


def _plain_and_fast(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fast = copy.deepcopy(module)
    assert fp.use_cpu_fast_path(fast, autograd=False) > 0
    with torch.inference_mode():
        return module(x), fast(x)


@pytest.mark.parametrize("spatial_dims,shape", [(1, (2, 16, 23)), (2, (2, 16, 11, 6)), (3, (1, 16, 5, 4, 6))])
@pytest.mark.parametrize("focal_level,focal_window", [(1, 3), (3, 5)])
def test_modulation_fast_equals_plain(spatial_dims, shape, focal_level, focal_window):
    module = FocalModulation(
        16, spatial_dims, focal_level=focal_level, focal_window=focal_window, normalize_modulator=True
    ).eval()
    _randomize(module)
    plain, fast = _plain_and_fast(module, torch.randn(shape))
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


def test_optimized_model_matches_timm_and_plain():
    kwargs = dict(embed_dim=16, depths=(1, 2, 1, 1), num_classes=10, drop_path_rate=0.0)
    reference = TimmFocalNet(focal_levels=(3, 3, 3, 3), **kwargs).eval()
    _randomize(reference)
    ours = focalmod.create_model("focalnet_tiny_lrf", **kwargs).eval()
    target = ours.state_dict()
    ours.load_state_dict({k: v.reshape(target[k].shape) for k, v in reference.state_dict().items()})
    x = torch.randn(2, 3, 45, 38)
    with torch.inference_mode():
        expected, plain = reference(x), ours(x)
    fast = focalmod.optimize(copy.deepcopy(ours), "cpu", inference=True)
    assert isinstance(fast.layers[1].blocks[0].modulation, fp.FastFocalModulation)
    assert list(fast.state_dict()) == list(target)  # same parameters and keys
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-5)
    restore_plain(fast)
    assert type(fast.layers[1].blocks[0].modulation) is FocalModulation
    assert not any(isinstance(m, fp._FastPath) for m in focalmod.optimize(fast, dtype=torch.bfloat16).modules())


def test_maps_are_the_same_on_both_paths():
    module = FocalModulation(8, 2, focal_level=2).eval()
    x = torch.randn(1, 8, 6, 6)
    _, plain = module(x, return_maps=True)
    fast = copy.deepcopy(module)
    fp.use_cpu_fast_path(fast, autograd=False)
    (hooked,) = modulation_maps(fast, x)  # hooks on gates_tap / modulator_tap fire in the fast module too
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


@pytest.mark.parametrize("spatial_dims,shape", [(1, (2, 16, 19)), (2, (2, 16, 7, 9))])
def test_training_mode_gradients_equal_plain(spatial_dims, shape):
    block = FocalNetBlock(16, spatial_dims, focal_level=2, layerscale_value=0.5)
    _randomize(block)
    fast = focalmod.optimize(copy.deepcopy(block), inference=False)
    assert isinstance(fast, fp.FastFocalNetBlock) and fast.fast_autograd
    x = torch.randn(shape)
    grads = []
    for module in (block, fast):
        xi = x.clone().requires_grad_()
        module(xi).square().sum().backward()
        grads.append([xi.grad] + [p.grad for p in module.parameters()])
    for g_plain, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-5, atol=1e-5)


def test_inference_modules_refuse_autograd_with_a_clear_error():
    fast = focalmod.optimize(FocalNetBlock(8, 2), inference=True)
    with pytest.raises(RuntimeError, match=r"set up for inference .* focalmod.optimize\(model, inference=False\)"):
        fast(torch.randn(1, 8, 4, 4))
    with torch.no_grad():
        assert fast(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)


def test_default_forward_is_plain_and_hooks_on_inner_linears_fire():
    module = FocalModulation(8, 2).eval()
    seen = []
    handle = module.h.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.inference_mode():
        module(torch.randn(1, 8, 5, 5))
    handle.remove()
    assert seen == [(1, 5, 5, 8)]
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert module(torch.randn(1, 8, 4, 4)).dtype == torch.bfloat16


def test_compiled_inference_freezes_keeps_the_fast_ops_and_equals_plain():
    block = FocalNetBlock(16, 2, focal_level=2, layerscale_value=0.5).eval()
    _randomize(block)
    x = torch.randn(2, 16, 7, 9)
    with torch.inference_mode():
        plain = block(x)
    compiled = focalmod.optimize(copy.deepcopy(block), compile=True)
    assert isinstance(compiled, FrozenCompiled) and isinstance(compiled._orig_mod, fp.FastFocalNetBlock)
    assert list(compiled.state_dict()) == [f"_orig_mod.{k}" for k in block.state_dict()]
    torch._dynamo.reset()
    with torch.inference_mode():
        out = compiled(x)  # compiles
        with torch.profiler.profile() as prof:
            again = compiled(x)
    ops = {event.key for event in prof.key_averages()}
    # the fused oneDNN ops run as extern kernels inside the compiled graph (not bypassed)
    assert {"focalmod::dnnl_linear", "focalmod::dnnl_same_conv_gelu"} <= ops, ops
    # weights were frozen: inductor prepacked the gate columns' plain linear (it packs constant weights only)
    assert torch._dynamo.utils.counters["inductor"]["mkldnn_linear_weight_pack_matcher_count"] > 0
    assert torch._dynamo.utils.counters["graph_break"] == {}
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(again, plain, rtol=0, atol=1e-5)
