"""FocalUNet: shapes in 2D/3D with both decoders, gradients, argument and size errors, encoder = focalmod FocalNet."""
from __future__ import annotations

import pytest
import torch

from focalmod.models import FocalNet
from focalmod.models.focal_unet import FocalUNet

pytest.importorskip("monai")

TINY = dict(feature_size=8, depths=(1, 1), focal_levels=1, norm_name="batch")


@pytest.mark.parametrize(
    "spatial_dims, decoder, patch_size, size",
    [
        (2, "focal", 2, (12, 20)),  # divisor 2 * 2 = 4: non-square, not powers of two
        (2, "unetr", 2, (24, 16)),  # divisor 2 * 4 = 8
        (3, "unetr", 2, (8, 24, 16)),
        (3, "focal", 4, (8, 16, 24)),  # divisor 4 * 2 = 8
    ],
)
def test_output_shape(spatial_dims, decoder, patch_size, size):
    net = FocalUNet(spatial_dims, in_channels=2, out_channels=3, decoder=decoder, patch_size=patch_size, **TINY).eval()
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, *size)
    assert torch.isfinite(y).all()


def test_odd_sizes_with_unit_divisor():
    """patch_size 1 and one stage: divisor 1, so odd sizes like 7x5 are valid."""
    net = FocalUNet(2, 1, 2, feature_size=8, depths=(1,), patch_size=1, decoder="focal").eval()
    assert net.size_divisor == 1
    assert net(torch.randn(1, 1, 7, 5)).shape == (1, 2, 7, 5)


def test_auto_decoder_and_size_divisor():
    assert FocalUNet(2, **TINY).decoder_type == "focal"
    net3 = FocalUNet(3, **TINY)
    assert net3.decoder_type == "unetr" and net3.size_divisor == 2 * 2**2
    assert FocalUNet(3, patch_size=2, feature_size=12).size_divisor == 32  # SwinUNETR's patch_size**5


@pytest.mark.parametrize("decoder", ["focal", "unetr"])
def test_every_parameter_gets_a_gradient(decoder):
    net = FocalUNet(3, 1, 2, decoder=decoder, **TINY).train()
    x = torch.randn(2, 1, 8, 8, 16, requires_grad=True)
    net(x).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spatial_dims=1), "spatial_dims"),
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=-1), "out_channels"),
        (dict(feature_size=0), "feature_size"),
        (dict(feature_size=7, decoder="focal"), "feature_size must be even"),
        (dict(depths=()), "depths"),
        (dict(depths=(2, 0)), "depths"),
        (dict(depths=(2, 2), focal_levels=(2, 2, 2)), "focal_levels"),
        (dict(focal_windows=0), "focal_windows"),
        (dict(patch_size=0), "patch_size"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
        (dict(decoder="swin"), "decoder"),
        (dict(decoder_depth=0), "decoder_depth"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    base = dict(spatial_dims=3, in_channels=1, out_channels=2, feature_size=8, depths=(1, 1))
    with pytest.raises(ValueError, match=match):
        FocalUNet(**{**base, **kwargs})


def test_input_size_and_channel_errors():
    net = FocalUNet(3, 1, 2, feature_size=12)  # divisor 32
    with pytest.raises(ValueError, match=r"divisible by 32, got \(32, 48, 32\)"):
        net(torch.randn(1, 1, 32, 48, 32))
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 1, D, H, W\)"):
        net(torch.randn(1, 2, 32, 32, 32))
    with pytest.raises(ValueError, match="expects input"):
        net(torch.randn(1, 1, 32, 32))


def test_encoder_is_focalmod_focalnet():
    """Same weights -> the stage outputs the decoder sees are FocalNet's (encoder reused, not re-implemented)."""
    torch.manual_seed(0)
    cfg = dict(feature_size=8, depths=(1, 2, 1), focal_levels=(2, 1, 2), focal_windows=3, patch_size=2)
    net = FocalUNet(3, 1, 2, **cfg).eval()
    ref = FocalNet(3, in_chans=1, num_classes=0, global_pool="", embed_dim=8, depths=(1, 2, 1),
                   focal_levels=(2, 1, 2), focal_windows=3, patch_size=2).eval()
    assert isinstance(net.encoder, FocalNet)
    assert ref.load_state_dict(net.encoder.state_dict(), strict=True)  # identical keys and shapes
    x = torch.randn(1, 1, 16, 16, 24)
    with torch.no_grad():
        ours = net.forward_encoder(x)
        stages = ref.forward_intermediates(x, norm=True, intermediates_only=True)
        expected = [norm(h) for norm, h in zip(net.skip_norms, stages[:-1])] + [stages[-1]]
    assert [o.shape[1] for o in ours] == [8, 16, 32]
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)


def test_paper_variant_takes_imagenet_focalnet_weights():
    """The registered paper model's encoder loads `focalnet_tiny_lrf` (ImageNet) weights strictly."""
    import focalmod

    net = focalmod.create_model("focal_unet_tiny_lrf", num_classes=4)
    assert net.out_channels == 4 and net.decoder_type == "focal" and net.patch_size == 4
    backbone = focalmod.create_model("focalnet_tiny_lrf", num_classes=0)
    result = net.encoder.load_state_dict(backbone.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(net.encoder.stem.proj.weight, backbone.stem.proj.weight)
    assert "focal_unet_3d" in focalmod.list_models("focal_unet*")


def test_gnconv_mixer_hook():
    mixers = pytest.importorskip("focalmod.models.mixers")
    net = FocalUNet(2, 1, 2, decoder="focal", mixer="gnconv", **TINY).eval()
    assert any(isinstance(m, mixers.MIXERS["gnconv"]) for m in net.modules())
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 2, 16, 16)
