"""The N-d focal modulation primitive: parity with timm, one code path across dims, shapes, gradients, errors."""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from timm.models.focalnet import FocalModulation as TimmFocalModulation
from timm.models.focalnet import FocalNetBlock as TimmFocalNetBlock

from focalmod import FocalModulation, FocalModulation1d, FocalModulation2d, FocalModulation3d
from focalmod.layers import FocalNetBlock

# timm's FocalNet passes LayerNorm2d(eps=1e-5) (official nn.LayerNorm default); the standalone default is 1e-6.
TIMM_NORM = partial(LayerNorm2d, eps=1e-5)


def _randomize(module: torch.nn.Module, std: float = 0.1) -> None:
    """Non-trivial weights everywhere (norm affine and layer scale included) so every term matters."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale_like = p.ndim == 1 and name.endswith(("weight", "gamma"))
            p.copy_(torch.randn_like(p) * std + (1.0 if scale_like else 0.0))


def _from_timm(timm_module: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Copy timm weights: 1x1-conv weights become Linear weights, `norm1_post` is our `norm1`, and so on."""
    target = ours.state_dict()
    converted = {}
    for key, value in timm_module.state_dict().items():
        key = key.replace("norm1_post", "norm1").replace("norm2_post", "norm2")
        if key in target:
            converted[key] = value.reshape(target[key].shape)
    ours.load_state_dict(converted, strict=True)


@pytest.mark.parametrize("focal_level", [1, 2, 3, 4])
@pytest.mark.parametrize("focal_window", [3, 5])
@pytest.mark.parametrize("normalize_modulator", [False, True])
@pytest.mark.parametrize("use_post_norm", [False, True])
def test_modulation_matches_timm(focal_level, focal_window, normalize_modulator, use_post_norm):
    kwargs = dict(normalize_modulator=normalize_modulator, use_post_norm=use_post_norm)
    reference = TimmFocalModulation(24, focal_window, focal_level, norm_layer=TIMM_NORM, **kwargs).eval()
    _randomize(reference)
    ours = FocalModulation2d(24, focal_level=focal_level, focal_window=focal_window, **kwargs).eval()
    _from_timm(reference, ours)
    x = torch.randn(2, 24, 13, 10)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("focal_level", [1, 2, 3, 4])
@pytest.mark.parametrize("use_post_norm", [False, True])
@pytest.mark.parametrize("use_post_norm_in_modulation", [False, True])
def test_block_matches_timm(focal_level, use_post_norm, use_post_norm_in_modulation):
    kwargs = dict(
        focal_level=focal_level,
        focal_window=3,
        use_post_norm=use_post_norm,
        use_post_norm_in_modulation=use_post_norm_in_modulation,
        normalize_modulator=focal_level == 4,
        layerscale_value=0.5,
    )
    reference = TimmFocalNetBlock(32, norm_layer=TIMM_NORM, **kwargs).eval()
    _randomize(reference)
    ours = FocalNetBlock(32, spatial_dims=2, **kwargs).eval()
    _from_timm(reference, ours)
    x = torch.randn(2, 32, 9, 14)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def _embed_kernels(src: FocalModulation, dst: FocalModulation) -> None:
    """Copy `src` (d dims) into `dst` (d+1 dims): each (d+1)-d kernel is zero except its middle slice along dim 2."""
    state = src.state_dict()
    for key, value in state.items():
        if key.startswith("focal_layers."):
            k = value.shape[-1]
            wide = torch.zeros(value.shape[:2] + (k,) + value.shape[2:])
            wide[:, :, k // 2] = value
            state[key] = wide
    dst.load_state_dict(state)


PAIRS = [(FocalModulation1d, FocalModulation2d), (FocalModulation2d, FocalModulation3d)]


@pytest.mark.parametrize("lower,higher", PAIRS)
@pytest.mark.parametrize("focal_level", [1, 3])
def test_lower_dim_equals_higher_dim_with_singleton_axis(lower, higher, focal_level):
    small = lower(16, focal_level=focal_level, normalize_modulator=True, use_post_norm=True).eval()
    _randomize(small)
    big = higher(16, focal_level=focal_level, normalize_modulator=True, use_post_norm=True).eval()
    _embed_kernels(small, big)
    x = torch.randn(2, 16, *([7, 5][: small.spatial_dims]))
    torch.testing.assert_close(big(x.unsqueeze(2)).squeeze(2), small(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "cls,shape",
    [
        (FocalModulation1d, (1, 8, 1)),
        (FocalModulation1d, (3, 8, 17)),
        (FocalModulation2d, (1, 8, 1, 1)),
        (FocalModulation2d, (2, 8, 7, 3)),
        (FocalModulation3d, (1, 8, 1, 1, 1)),
        (FocalModulation3d, (2, 8, 5, 3, 7)),
    ],
)
def test_shapes_gradients_and_maps(cls, shape):
    module = cls(8, focal_level=3)
    x = torch.randn(shape, requires_grad=True)
    out, maps = module(x, return_maps=True)
    assert out.shape == x.shape
    assert maps["gates"].shape == (shape[0], 4, *shape[2:])
    assert maps["modulator"].shape == shape
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(torch.is_tensor(v) for v in vars(module).values()), "forward must not store tensors on the module"


def test_maps_equal_hooked_values_and_nothing_is_kept():
    module = FocalModulation2d(8, focal_level=2).eval()
    seen = {}
    handles = [
        module.gates_tap.register_forward_hook(lambda m, i, o: seen.__setitem__("gates", o)),
        module.modulator_tap.register_forward_hook(lambda m, i, o: seen.__setitem__("modulator", o)),
    ]
    x = torch.randn(2, 8, 6, 5)
    out, maps = module(x, return_maps=True)
    for h in handles:
        h.remove()
    torch.testing.assert_close(seen["gates"], maps["gates"])
    torch.testing.assert_close(seen["modulator"], maps["modulator"])
    torch.testing.assert_close(module(x), out)
    # The gates are the raw linear outputs (no sigmoid/softmax): they equal the last L+1 rows of `f`.
    expected_gates = F.linear(x.movedim(1, -1), module.f.weight[16:], module.f.bias[16:]).movedim(-1, 1)
    torch.testing.assert_close(maps["gates"], expected_gates)


def test_gradcheck_float64():
    module = FocalModulation2d(4, focal_level=2, use_post_norm=True, dtype=torch.float64)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_compile_fullgraph_matches_eager():
    module = FocalModulation2d(8, focal_level=2).eval()
    x = torch.randn(2, 8, 6, 6)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), module(x), rtol=1e-5, atol=1e-5)


def test_bf16_autocast_runs():
    module = FocalModulation3d(8, focal_level=2)
    x = torch.randn(1, 8, 4, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_device_dtype_arguments():
    module = FocalModulation1d(8, dtype=torch.float64, device="cpu")
    assert {p.dtype for p in module.parameters()} == {torch.float64}


@pytest.mark.parametrize(
    "x,message",
    [
        (torch.randn(2, 8, 5), r"expects input of shape \(B, 8, H, W\), got \(2, 8, 5\)"),
        (torch.randn(2, 7, 5, 5), r"expects input of shape \(B, 8, H, W\), got \(2, 7, 5, 5\)"),
    ],
)
def test_bad_input_is_a_value_error_with_expected_shape(x, message):
    with pytest.raises(ValueError, match=message):
        FocalModulation2d(8)(x)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(dim=0), "dim must be a positive int"),
        (dict(dim=8, focal_level=0), "focal_level must be a positive int"),
        (dict(dim=8, focal_window=4), "focal_window must be odd"),
        (dict(dim=8, focal_window=-3), "focal_window must be a positive int"),
        (dict(dim=8, focal_factor=3), "focal_factor must be a non-negative even int"),
        (dict(dim=8, spatial_dims=4), "spatial_dims must be 1, 2 or 3"),
        (dict(dim=8, proj_drop=1.5), r"proj_drop must be in \[0, 1\)"),
    ],
)
def test_invalid_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FocalModulation(**kwargs)


def test_kernel_sizes_follow_the_paper():
    module = FocalModulation2d(8, focal_level=3, focal_window=5)
    assert module.kernel_sizes == [5, 7, 9]
    assert [layer[0].kernel_size for layer in module.focal_layers] == [(5, 5), (7, 7), (9, 9)]
    assert all(layer[0].groups == 8 and layer[0].bias is None for layer in module.focal_layers)
