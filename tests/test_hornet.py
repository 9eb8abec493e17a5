"""HorNet: parity of block and network with the official forward (re-derived here, official key layout),
checkpoint conversion (official / mmpretrain), published params/GMACs, timm contract, N-d, mixer switch, VOLO."""
from __future__ import annotations

import re

import pytest
import timm
import timm.optim
import torch
import torch.nn.functional as F
from test_gnconv import ln_cf, randomize_, ref_gnconv
from torch.utils.flop_counter import FlopCounterMode

import focalmod
from focalmod.checkpoints import CheckpointError, load_checkpoint
from focalmod.checkpoints.hornet import convert_hornet_state_dict
from focalmod.layers import FocalModulation, GnConv
from focalmod.models._registry import get_spec
from focalmod.models.baselines import build_baseline
from focalmod.models.hornet import HorNet, HorNetBlock
from focalmod.models.mixers import build_mixer, hornet_orders, swap_mixer

SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1), mixers=("dw7", "dw7", "gf", "gf"), img_size=64, num_classes=7)


# ---- official forward (reference hornet_volo.md Sec. 1-3), functional on an official-format state dict ----
def ref_block(x, p, pre, order, gf):
    C = x.shape[1]
    x = x + p[pre + "gamma1"].view(C, 1, 1) * ref_gnconv(
        ln_cf(x, p[pre + "norm1.weight"], p[pre + "norm1.bias"]), p, pre + "gnconv.", order, gf
    )
    y = F.layer_norm(x.permute(0, 2, 3, 1), (C,), p[pre + "norm2.weight"], p[pre + "norm2.bias"], 1e-6)
    y = F.linear(F.gelu(F.linear(y, p[pre + "pwconv1.weight"], p[pre + "pwconv1.bias"])),
                 p[pre + "pwconv2.weight"], p[pre + "pwconv2.bias"])
    return x + (p[pre + "gamma2"] * y).permute(0, 3, 1, 2)


def ref_hornet(x, p, depths=(1, 1, 2, 1), orders=(2, 3, 4, 5), gf_stages=(2, 3)):
    for i in range(4):
        if i == 0:
            x = F.conv2d(x, p["downsample_layers.0.0.weight"], p["downsample_layers.0.0.bias"], stride=4)
            x = ln_cf(x, p["downsample_layers.0.1.weight"], p["downsample_layers.0.1.bias"])
        else:
            x = ln_cf(x, p[f"downsample_layers.{i}.0.weight"], p[f"downsample_layers.{i}.0.bias"])
            x = F.conv2d(x, p[f"downsample_layers.{i}.1.weight"], p[f"downsample_layers.{i}.1.bias"], stride=2)
        for j in range(depths[i]):
            x = ref_block(x, p, f"stages.{i}.{j}.", orders[i], i in gf_stages)
    x = F.layer_norm(x.mean([-2, -1]), (x.shape[1],), p["norm.weight"], p["norm.bias"], 1e-6)
    return F.linear(x, p["head.weight"], p["head.bias"])


def to_official(model):
    """Our weights in the official layout and names (written from the reference, not from our converter)."""
    rules = [
        (r"^stem\.proj\.", "downsample_layers.0.0."), (r"^stem\.norm\.", "downsample_layers.0.1."),
        (r"^stages\.(\d+)\.downsample\.norm\.", r"downsample_layers.\1.0."),
        (r"^stages\.(\d+)\.downsample\.proj\.", r"downsample_layers.\1.1."),
        (r"\.ls([12])\.gamma$", r".gamma\1"), (r"\.mlp\.fc([12])\.", r".pwconv\1."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.", r"stages.\1.\2."), (r"^head\.norm\.", "norm."), (r"^head\.fc\.", "head."),
    ]
    out = {}
    for k, v in model.state_dict().items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        if ".gnconv." in k and k.endswith("weight") and v.ndim == 2:
            v = v[..., None, None]  # 1x1 conv
        out[k] = v.clone()
    return out


def to_mmpretrain(official):
    """`tools/model_converters/hornet2mmpretrain.py`, as in the reference, inside an mmengine-style container."""
    sd = {}
    for k, v in official.items():
        if k.startswith("head"):
            sd[k.replace("head.", "head.fc.")] = v
            continue
        k = k.replace("norm.", "norm3.") if k.startswith("norm") else k
        k = k.replace("gnconv.pws", "gnconv.projs")
        k = k.replace("gamma1", "gamma1.weight").replace("gamma2", "gamma2.weight")
        sd["backbone." + k] = v
    sd["data_preprocessor.mean"] = torch.zeros(3)
    return {"meta": {"epoch": 1}, "state_dict": sd}


def source_model():
    """Random weights at unit scale: with HorNet's init (std .02, layer scale 1e-6) the gnConv branches would
    barely change the logits and a wrong key map could go unnoticed."""
    torch.manual_seed(0)
    m = randomize_(HorNet(**SMALL)).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.0)
            elif p.ndim >= 2 and not name.endswith("complex_weight"):
                p.normal_(0, p[0].numel() ** -0.5)
            elif name.endswith("bias") and "norm" not in name:
                p.normal_(0, 0.1)
    return m


# ---- parity ----
@pytest.mark.parametrize("mixer", ["dw7", "gf"])
def test_block_matches_official(mixer):
    torch.manual_seed(0)
    block = randomize_(HorNetBlock(32, order=4, mixer=mixer, gf_size=(6, 4), layerscale_value=0.7)).eval()
    p = to_official(torch.nn.ModuleDict({"x": block}))
    p = {k[2:]: v for k, v in p.items()}
    x = torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(block(x), ref_block(x, p, "", 4, mixer == "gf"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["official", "mmpretrain"])
@pytest.mark.parametrize("size", [64, 80])  # 80: GF maps 5x5 / 2x2 -> the (4, 3) grid is resized on the fly
def test_checkpoint_round_trip_logits_equal_official(fmt, size):
    official = to_official(source_model())
    ckpt = {"model": official, "epoch": 3} if fmt == "official" else to_mmpretrain(official)
    model = HorNet(**SMALL).eval()
    report = load_checkpoint(model, ckpt)
    assert report.format == fmt and not report.missing and not report.unexpected
    x = torch.randn(2, 3, size, size)
    ref = ref_hornet(x, official)
    out = model(x)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max()


def test_converter_resizes_complex_weight_and_keeps_ours(tmp_path):
    official = to_official(source_model())
    big = HorNet(**{**SMALL, "img_size": 128}).eval()  # grids (8, 5) / (4, 3) instead of (4, 3) / (2, 2)
    conv = convert_hornet_state_dict(official, big)
    key = "stages.2.blocks.0.gnconv.dwconv.complex_weight"
    w = official["stages.2.0.gnconv.dwconv.complex_weight"]
    expected = F.interpolate(w.permute(3, 0, 1, 2), size=(8, 5), mode="bilinear", align_corners=True)
    torch.testing.assert_close(conv.state_dict[key], expected.permute(1, 2, 3, 0))
    assert conv.state_dict["stages.1.blocks.0.gnconv.proj_in.weight"].ndim == 2 and conv.notes
    # our own format (through a file) passes unchanged
    path = tmp_path / "ours.pth"
    focalmod.checkpoints.save_checkpoint(big, path)
    again = HorNet(**{**SMALL, "img_size": 128}).eval()
    assert load_checkpoint(again, path).format == "focalmod"
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(again(x), big(x))


def test_checkpoint_mismatch_names_the_keys():
    official = to_official(source_model())
    official.pop("stages.3.0.gnconv.pws.3.weight")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): stages\.3\.blocks\.0\.gnconv\.pws\.3\.weight"):
        load_checkpoint(HorNet(**SMALL), {"model": official})


# ---- published numbers ----
@pytest.mark.parametrize("name", [f"hornet_{s}_{m}" for s in ("tiny", "small", "base", "large") for m in ("7x7", "gf")])
def test_params_and_conv_linear_gmacs_match_table(name):
    """Params (1000-class head) to 0.01 M; conv + Linear multiply-adds counted on the meta device (no compute)
    within 0.5 % below the published GMACs, which also count LayerNorm (and FFT for GF)."""
    spec = get_spec(name)
    model = focalmod.create_model(name, device="meta").eval()
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - spec.params_m) < 0.006
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *spec.pretrained_cfg["input_size"], device="meta"))
    gmacs = counter.get_total_flops() / 2e9
    assert -0.005 < (gmacs - spec.gmacs) / spec.gmacs < 0.0, f"{name}: {gmacs:.3f} vs {spec.gmacs}"


@pytest.mark.slow
def test_tiny_gmacs_within_one_percent():
    """fvcore, multiply-add = 1 (as `calc_flops.py`); counts Linear/conv/LayerNorm, not element-wise gating."""
    fvcore = pytest.importorskip("fvcore.nn")
    model = focalmod.create_model("hornet_tiny_7x7").eval()
    flops = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    assert abs(flops.total() / 1e9 - 3.98) / 3.98 < 0.01


# ---- timm contract, N-d, errors ----
def test_timm_contract():
    small = dict(depths=(1, 1, 1, 1), embed_dim=16)
    model = focalmod.create_model("hornet_tiny_gf", num_classes=5, img_size=64, **small).eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 128, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 128)
    final, inter = model.forward_intermediates(x)
    assert [t.shape[1] for t in inter] == [16, 32, 64, 128] and torch.equal(final, feats)
    logits = model(x)
    model.set_grad_checkpointing(True)
    model.train()
    model(x).sum().backward()
    model.eval()
    torch.testing.assert_close(model(x), logits)
    model.reset_classifier(0, "")
    assert model(x).shape == (2, 128, 2, 2)
    groups = timm.optim.create_optimizer_v2(model, "adamw", layer_decay=0.7).param_groups
    assert len(groups) > 4 and model.group_matcher(coarse=True)["blocks"]
    feat_net = focalmod.create_model("hornet_tiny_7x7", features_only=True, out_indices=(1, 3), **small)
    assert [t.shape[1:] for t in feat_net(x)] == [(32, 8, 8), (128, 2, 2)]
    assert feat_net.feature_info.channels() == [32, 128] and feat_net.feature_info.reduction() == [8, 32]
    assert timm.create_model("focalmod_hornet_tiny_7x7", num_classes=3, **small)(x).shape == (2, 3)


@pytest.mark.parametrize("spatial_dims,size,mixers", [(1, (64,), ("dw7",) * 2 + ("gf",) * 2), (3, (32, 32, 32), "dw7")])
def test_nd_models_forward_backward(spatial_dims, size, mixers):
    model = HorNet(spatial_dims, in_chans=2, num_classes=4, embed_dim=16, depths=(1, 1, 1, 1), mixers=mixers,
                   img_size=size[0])
    x = torch.randn(2, 2, *size)
    out = model(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert focalmod.create_model("hornet1d_tiny_7x7", depths=(1, 1, 1, 1))(torch.randn(1, 64, 96)).shape == (1, 1000)


def test_model_errors():
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(order-1\) = 2 for order 2, got dim=15"):
        HorNet(embed_dim=15)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(order-1\) = 16 for order 5, got dim=24"):
        HorNet(embed_dim=24, orders=5)
    model = HorNet(embed_dim=16, depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"needs every spatial side >= 32"):
        model(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="mixers needs one value per stage"):
        HorNet(mixers=("dw7", "gf"))


# ---- mixer switch and baselines ----
def test_build_mixer_same_interface():
    x = torch.randn(2, 32, 5, 6)
    for name in ("focal", "gnconv"):
        m = build_mixer(name, 32, 2)
        assert m(x).shape == x.shape and m.forward_channels_last(x.movedim(1, -1))[0].shape == (2, 5, 6, 32)
    with pytest.raises(ValueError, match="mixer must be one of"):
        build_mixer("attn", 32)


def test_swap_mixer_keeps_everything_else_equal():
    kwargs = dict(embed_dim=32, depths=(1, 1, 2, 1), num_classes=3)
    ref = focalmod.create_model("focalnet_tiny_srf", **kwargs)
    model = build_baseline("focalnet_tiny_srf", mixer="gnconv", **kwargs)
    mixers = [m for m in model.modules() if isinstance(m, GnConv)]
    assert [(m.dim, m.order) for m in mixers] == [(32, 2), (64, 3), (128, 4), (128, 4), (256, 5)]
    assert not any(isinstance(m, FocalModulation) for m in model.modules())
    other = {k: v.shape for k, v in model.state_dict().items() if ".modulation." not in k}
    assert other == {k: v.shape for k, v in ref.state_dict().items() if ".modulation." not in k}
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    assert hornet_orders([96, 192, 384, 768, 768]) == {96: 2, 192: 3, 384: 4, 768: 5}
    back = swap_mixer(model, "focal", focal_level=3)
    assert all(m.focal_level == 3 for m in back.modules() if isinstance(m, FocalModulation))
    with pytest.raises(ValueError, match="has no FocalModulation or GnConv"):
        swap_mixer(torch.nn.Linear(2, 2))


def test_build_baseline_volo_and_unknown_names():
    volo = build_baseline("volo_d1", num_classes=10).eval()
    assert type(volo).__module__ == "timm.models.volo"
    assert volo(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    assert isinstance(build_baseline("hornet_tiny_7x7", depths=(1, 1, 1, 1)), HorNet)
    with pytest.raises(ValueError, match="unknown model name 'volo_d7'.*did you mean"):
        build_baseline("volo_d7")
    with pytest.raises(ValueError, match="never downloads"):
        build_baseline("volo_d1", pretrained=True)
