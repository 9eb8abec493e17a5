"""`focalmod.optimize` followed by PyTorch AMP (`torch.autocast`): every path it returns follows autocast.

The oneDNN fast modules (`layers._cpu_fastpath`) call fp32 fused ops that have no autocast rule: before they
deferred to the plain ops under autocast, bf16 activations met fp32 weights inside oneDNN and the model raised
``could not create a primitive descriptor for the inner product forward propagation primitive`` (issue #30).

Reference: the plain (unoptimised) model under the same autocast. Tolerance: bf16 keeps 8 significant bits (unit
roundoff 2**-8 ~ 3.9e-3); an optimised path that rounds at other points or accumulates in another order may differ
by a few bf16 ulps after a handful of layers, so outputs must agree to 2e-2 of the output scale (max |plain|),
about five ulps, and top-1 must agree wherever the plain top-2 margin is larger than that tolerance (a margin
below it is a tie at bf16 precision). Today's fast modules run the plain ops under autocast, so the numbers are
in fact equal; the tolerance is what any future low-precision fused path must meet.
"""
from __future__ import annotations

import copy

import pytest
import torch

import focalmod
from focalmod.layers import FocalNetBlock
from focalmod.layers import _cpu_fastpath as fp
from focalmod.layers.recompute import RecomputeFocalModulation, RecomputeMlp
from focalmod.models.optimize import FrozenCompiled

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")

BF16_TOL = 2e-2  # of the output scale; see the module docstring

CASES = {  # small models as in tests/test_deployment.py, batch of 4 for the top-1 check
    "focalnet": ("focalnet_tiny_srf", dict(embed_dim=16, depths=(1, 1, 2, 1), num_classes=10), (4, 3, 64, 64)),
    "hornet_7x7": ("hornet_tiny_7x7", dict(embed_dim=16, depths=(1, 1, 2, 1), num_classes=10), (4, 3, 64, 64)),
    "focalnet_1d": ("focalnet1d_tiny", dict(embed_dim=16, depths=(1, 1, 1, 1), num_classes=10), (4, 64, 128)),
    "focal_unet_2d": ("focal_unet_tiny_lrf", dict(feature_size=16, depths=(1, 1, 1, 1), num_classes=3),
                      (2, 3, 64, 64)),
}


def _model_and_input(case: str) -> tuple[torch.nn.Module, torch.Tensor]:
    name, kwargs, shape = CASES[case]
    torch.manual_seed(0)
    return focalmod.create_model(name, drop_path_rate=0.0, **kwargs).eval(), torch.randn(shape)


def _assert_autocast_close(out: torch.Tensor, ref: torch.Tensor, tol: float = BF16_TOL) -> None:
    """Same dtype, max |out - ref| <= tol * max |ref|, and the same top-1 (over dim 1: classes, or per pixel for
    segmentation logits) wherever the reference's top-2 margin exceeds that bound."""
    assert out.dtype == ref.dtype and out.shape == ref.shape
    out, ref = out.float(), ref.float()
    bound = tol * ref.abs().max().item()
    assert (out - ref).abs().max().item() <= bound, ((out - ref).abs().max().item(), bound)
    top2 = ref.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > bound
    assert decided.float().mean() > 0.5  # the top-1 check checks something
    assert torch.equal(out.argmax(1)[decided], ref.argmax(1)[decided])


@pytest.mark.parametrize("case", list(CASES))
def test_optimized_inference_under_bf16_autocast_matches_plain(case):
    # fails before the fix: the fused oneDNN linear got bf16 activations and fp32 weights (RuntimeError)
    plain, x = _model_and_input(case)
    fast = focalmod.optimize(copy.deepcopy(plain), "cpu", inference=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref, out = plain(x), fast(x)
    assert ref.dtype == torch.bfloat16
    _assert_autocast_close(out, ref)
    with torch.inference_mode():  # and the fast path without autocast is still the fp32 one
        torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=1e-5)


def test_optimized_inference_under_fp16_cpu_autocast_matches_plain():
    plain, x = _model_and_input("focalnet_1d")
    fast = focalmod.optimize(copy.deepcopy(plain), "cpu", inference=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        ref, out = plain(x), fast(x)
    assert ref.dtype == torch.float16
    _assert_autocast_close(out, ref, tol=2e-3)  # fp16: 11 significant bits, 8x finer than bf16


def _fused_ops_called(model: torch.nn.Module, x: torch.Tensor) -> set[str]:
    with torch.profiler.profile() as prof:
        model(x)
    return {e.key for e in prof.key_averages()} & {"focalmod::dnnl_linear", "focalmod::dnnl_same_conv_gelu"}


@pytest.mark.filterwarnings("ignore:.*Profiler clears events")
@pytest.mark.parametrize("spatial_dims,shape", [(1, (2, 16, 19)), (2, (2, 16, 7, 9)), (3, (1, 16, 5, 4, 6))])
def test_fast_modules_defer_to_plain_ops_under_autocast_only(spatial_dims, shape):
    block = FocalNetBlock(16, spatial_dims, focal_level=2, layerscale_value=0.5).eval()
    fast = copy.deepcopy(block)
    assert fp.use_cpu_fast_path(fast, autograd=False) == 2
    x = torch.randn(shape)
    with torch.inference_mode():
        assert _fused_ops_called(fast, x) == {"focalmod::dnnl_linear", "focalmod::dnnl_same_conv_gelu"}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _fused_ops_called(fast, x) == set()
            ref, out = block(x), fast(x)
            with torch.autocast("cpu", enabled=False):  # autocast switched off inside: the fused fp32 ops again
                assert _fused_ops_called(fast, x) == {"focalmod::dnnl_linear", "focalmod::dnnl_same_conv_gelu"}
        modulation = fast.modulation
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the modulation alone (channels-first entry point)
            assert modulation(x).dtype == torch.bfloat16
    _assert_autocast_close(out, ref)


def test_inference_modules_still_refuse_autograd_under_autocast():
    fast = focalmod.optimize(FocalNetBlock(8, 2), inference=True)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="set up for inference"):
        fast(torch.randn(1, 8, 4, 4))


def _forward_backward(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().mean().backward()
    return out.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("recompute", [False, True])
def test_optimized_training_under_bf16_autocast_matches_plain(recompute):
    # recompute=False: the oneDNN training modules (failed before the fix like the inference ones);
    # recompute=True: the recomputing modules, which already followed autocast (checked here through optimize)
    plain, x = _model_and_input("focalnet_1d")
    plain.train()
    lean = focalmod.optimize(copy.deepcopy(plain), "cpu", inference=False, recompute=recompute)
    swapped = (RecomputeFocalModulation, RecomputeMlp) if recompute else (fp.FastFocalNetBlock,)
    assert any(isinstance(m, swapped) for m in lean.modules())
    ref, ref_grads = _forward_backward(plain, x)
    out, grads = _forward_backward(lean, x)
    _assert_autocast_close(out, ref)
    for g_plain, g_lean in zip(ref_grads, grads):
        assert g_lean.dtype == g_plain.dtype == torch.float32
        scale = g_plain.abs().max().item()
        assert (g_lean - g_plain).abs().max().item() <= BF16_TOL * scale + 1e-6


def test_compiled_inference_under_bf16_autocast_matches_plain():
    block = FocalNetBlock(16, 2, focal_level=2, layerscale_value=0.5).eval()
    x = torch.randn(2, 16, 7, 9)
    x16 = x.bfloat16()  # as from a bf16 conv before it in a model: before the fix the fused linear got it (error)
    compiled = focalmod.optimize(copy.deepcopy(block), compile=True)
    assert isinstance(compiled, FrozenCompiled) and isinstance(compiled._orig_mod, fp.FastFocalNetBlock)
    torch._dynamo.reset()
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref, out = block(x16), compiled(x16)  # traced under autocast: the plain ops
            ref32, out32 = block(x), compiled(x)
        fp32 = compiled(x)  # same input, autocast off: dynamo guards on autocast and recompiles the fused fp32 ops
    _assert_autocast_close(out, ref)
    _assert_autocast_close(out32, ref32)
    torch.testing.assert_close(fp32, block(x).detach(), rtol=0, atol=1e-5)
