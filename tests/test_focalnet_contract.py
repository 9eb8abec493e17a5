"""timm's model contract for every registered FocalNet name (1D/2D/3D), at reduced width/depth for speed.

The flags of each variant (conv embed, post-norm, layer scale, normalize_modulator, in-modulation LN,
isotropic patch 16) are kept; only `embed_dim` and `depths` shrink (parameter counts are tested at full size in
test_focalnet_variants.py).
"""
from __future__ import annotations

import pytest
import timm
import torch
from timm.models.focalnet import FocalNet as TimmFocalNet
from timm.optim import param_groups_layer_decay

import focalmod
from focalmod.models import FocalNet, get_spec

NAMES = focalmod.list_models("focalnet*")
NUM_CLASSES = 42


def small(name: str, **kwargs) -> FocalNet:
    spec = get_spec(name)
    stages = len(spec.kwargs["depths"])
    overrides = dict(embed_dim=16 if stages > 1 else 32, depths=(1,) * stages, drop_path_rate=0.0)
    return focalmod.create_model(name, num_classes=NUM_CLASSES, **{**overrides, **kwargs})


def example(model: FocalNet, side: int = 64) -> torch.Tensor:
    side = {1: 128, 2: side, 3: 32}[model.spatial_dims]
    return torch.randn(1, model.in_chans, *(side,) * model.spatial_dims)


def test_every_variant_is_covered():
    assert len(NAMES) == 19 and {"focalnet1d_tiny", "focalnet3d_small", "focalnet_base_iso"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_model_contract(name):
    model = small(name).train()
    x = example(model)
    spatial = x.shape[2:]
    reductions = [f["reduction"] for f in model.feature_info]

    out = model(x)
    assert out.shape == (1, NUM_CLASSES) and torch.isfinite(out).all()
    out.square().sum().backward()
    params = dict(model.named_parameters())
    no_grad = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    grads = {n: p.grad.clone() for n, p in params.items()}

    model.zero_grad()
    model.set_grad_checkpointing(True)
    out_ckpt = model(x)
    out_ckpt.square().sum().backward()
    assert torch.allclose(out_ckpt, out, atol=1e-6)
    assert all(torch.allclose(params[n].grad, g, atol=1e-5, rtol=1e-4) for n, g in grads.items())
    model.set_grad_checkpointing(False)

    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, model.num_features, *(s // reductions[-1] for s in spatial))
        assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
        final, intermediates = model.forward_intermediates(x)
        assert torch.allclose(final, features)
        assert [t.shape[1] for t in intermediates] == [f["num_chs"] for f in model.feature_info]
        assert [t.shape[2:] for t in intermediates] == [tuple(s // r for s in spatial) for r in reductions]
        assert len(model.forward_intermediates(x, indices=1, intermediates_only=True)) == 1

        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
        model.reset_classifier(0, "")
        assert model(x).shape == features.shape
    assert model.get_classifier is not None and isinstance(model.no_weight_decay(), set)


@pytest.mark.parametrize("name", NAMES)
def test_features_only(name):
    model = small(name, features_only=True).eval()
    x = example(model.model if hasattr(model, "model") else model)
    expected = [16] if "iso" in name else [4, 8, 16, 32]
    assert model.feature_info.reduction() == expected
    with torch.no_grad():
        outs = model(x)
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert [o.shape[2:] for o in outs] == [tuple(s // r for s in x.shape[2:]) for r in expected]


@pytest.mark.parametrize("name", ["focalnet_tiny_srf", "focalnet_large_fl3"])  # patchify and overlapping stems
@pytest.mark.parametrize("side", [225, 97, 100])
def test_sizes_not_divisible_by_32(name, side):
    model = small(name).eval()
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        assert model(x).shape == (1, NUM_CLASSES)
        maps = model.forward_intermediates(x, intermediates_only=True)
    grid = side // 4
    for m in maps:
        assert m.shape[2:] == (grid, grid)
        grid = (grid + 1) // 2 if "large" in name else grid // 2  # k3 s2 p1 rounds up, k2 s2 floors


def test_one_and_three_dimensional_shapes():
    seq = small("focalnet1d_tiny").eval()
    vol = small("focalnet3d_tiny").eval()
    with torch.no_grad():
        assert seq(torch.randn(2, 64, 100)).shape == (2, NUM_CLASSES)
        assert seq.forward_features(torch.randn(2, 64, 100)).shape == (2, 128, 3)
        assert vol.forward_features(torch.randn(1, 1, 40, 36, 32)).shape == (1, 128, 1, 1, 1)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 64, L\)"):
        seq(torch.randn(2, 3, 64, 64))


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match=r"unknown model name 'focalnet_tiny_sfr'.*did you mean 'focalnet_tiny_srf'"):
        focalmod.create_model("focalnet_tiny_sfr")


def test_timm_registry():
    model = timm.create_model("focalmod_focalnet_tiny_srf", num_classes=3, embed_dim=16, depths=(1, 1, 1, 1))
    assert isinstance(model, FocalNet) and model.num_classes == 3
    assert isinstance(timm.create_model("focalnet_tiny_srf", pretrained=False), TimmFocalNet)
    assert {f"focalmod_{n}" for n in NAMES} <= set(timm.list_models("focalmod_*"))
    # issue #13 replaced "no hosted weights" by real pretrained loading: offline with an empty cache, one clear
    # error naming the repository and file (tests/test_pretrained.py loads from a Hub cache)
    with pytest.raises(FileNotFoundError, match=r"model.safetensors of the Hugging Face repository timm/focalnet_tiny"):
        timm.create_model("focalmod_focalnet_tiny_srf", pretrained=True, cache_dir="/nonexistent/hub")


@pytest.mark.parametrize("name", ["focalnet_tiny_srf", "focalnet_tiny_iso", "focalnet3d_tiny"])
def test_group_matcher_covers_every_parameter(name):
    model = small(name)
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    scales = {g["lr_scale"] for g in groups}
    assert len(scales) > 2  # stem, stages and final norm land in different layer-decay groups
