"""The N-d pieces a FocalNet needs besides the modulation: norm, downsample, block, classifier head."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from focalmod.layers import ClassifierHead, Downsample, FocalNetBlock, LayerNormNd


@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 6, 4, 3), (1, 6, 3, 2, 4)])
def test_layernorm_nd_normalises_channels(shape):
    norm = LayerNormNd(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(shape)
    reference = nn.functional.layer_norm(x.movedim(1, -1), (6,), norm.weight, norm.bias, 1e-5).movedim(-1, 1)
    torch.testing.assert_close(norm(x), reference)
    assert set(norm.state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize(
    "spatial_dims,stride,overlap,size,expected",
    [(2, 4, False, 227, 56), (2, 4, True, 224, 56), (2, 2, True, 15, 8), (1, 4, False, 9, 2), (3, 2, False, 5, 2)],
)
def test_downsample_output_size(spatial_dims, stride, overlap, size, expected):
    down = Downsample(3, 8, spatial_dims, stride=stride, overlap=overlap)
    out = down(torch.randn(1, 3, *[size] * spatial_dims))
    assert out.shape == (1, 8, *[expected] * spatial_dims)
    assert down.proj.kernel_size[0] == ({4: 7, 2: 3}[stride] if overlap else stride)


def test_downsample_rejects_inputs_smaller_than_its_kernel():
    with pytest.raises(ValueError, match=r"spatial size \(3, 9\) is too small for a stride-4 downsample"):
        Downsample(3, 8, 2, stride=4)(torch.randn(1, 3, 3, 9))
    with pytest.raises(ValueError, match="overlapping downsample supports stride 2 or 4"):
        Downsample(3, 8, 2, stride=8, overlap=True)


@pytest.mark.parametrize("spatial_dims,size", [(1, (11,)), (2, (5, 7)), (3, (3, 4, 5))])
@pytest.mark.parametrize("use_post_norm", [False, True])
def test_block_any_dim_shapes_and_gradients(spatial_dims, size, use_post_norm):
    block = FocalNetBlock(16, spatial_dims, focal_level=2, use_post_norm=use_post_norm, layerscale_value=1e-4)
    x = torch.randn(2, 16, *size, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_block_keys_follow_the_official_names():
    keys = set(FocalNetBlock(8, 2, layerscale_value=1e-4).state_dict())
    assert {"norm1.weight", "norm2.weight", "modulation.f.weight", "modulation.h.weight", "mlp.fc1.weight"} <= keys
    assert {"ls1.gamma", "ls2.gamma", "modulation.focal_layers.1.0.weight"} <= keys


def test_block_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"FocalNetBlock expects input of shape \(B, 16, L\)"):
        FocalNetBlock(16, 1)(torch.randn(2, 8, 10))


def test_block_drop_path_is_identity_in_eval():
    block = FocalNetBlock(8, 2, drop_path=0.5).eval()
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x), block(x))


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax"])
def test_classifier_head_pools_any_dim(pool):
    head = ClassifierHead(12, 5, pool_type=pool)
    x = torch.randn(2, 12, 3, 4, 2)
    assert head(x).shape == (2, 5)
    avg, top = x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))
    expected = {"avg": avg, "max": top, "avgmax": (avg + top) / 2}[pool]
    torch.testing.assert_close(head(x, pre_logits=True), expected)


def test_avgmax_pool_matches_timm():
    from timm.layers import SelectAdaptivePool2d

    x = torch.randn(2, 12, 5, 7)
    head = ClassifierHead(12, 0, pool_type="avgmax")
    torch.testing.assert_close(head(x), SelectAdaptivePool2d(pool_type="avgmax", flatten=True)(x))


def test_classifier_head_reset():
    head = ClassifierHead(12, 5)
    head.reset(0, "")
    assert head(torch.randn(2, 12, 3, 3)).shape == (2, 12, 3, 3)
    head.reset(0, "avg")
    assert head(torch.randn(2, 12, 3, 3)).shape == (2, 12)
    with pytest.raises(ValueError, match="global_pool must be one of"):
        head.reset(3, "token")
