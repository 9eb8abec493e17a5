"""The hierarchical backbone FocalNet and HorNet share (`focalmod.models.backbone`) and the token mixer chosen at
construction (``create_model(..., mixer="gnconv")``, `FocalUNet(mixer=...)`), against the after-the-fact `swap_mixer`.
Parameter names and outputs of the registered models are pinned by the parity tests (timm, HF, official code)."""
from __future__ import annotations

import pytest
import torch

import focalmod
from focalmod.layers import FocalModulation, GnConv, MixerBlock
from focalmod.models import FocalNet, FocalUNet, HierarchicalBackbone, HorNet
from focalmod.models.mixers import swap_mixer

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_classes=3, drop_path_rate=0.0)


@pytest.mark.parametrize("name,container", [("focalnet_tiny_srf", "layers"), ("focalnet_tiny_iso", "layers"),
                                            ("hornet_tiny_gf", "stages")])
def test_families_share_one_skeleton_and_keep_their_keys(name, container):
    kwargs = dict(TINY, depths=(3,), embed_dim=32) if "iso" in name else dict(TINY)
    model = focalmod.create_model(name, **kwargs, **({"img_size": 64} if "gf" in name else {})).eval()
    assert isinstance(model, HierarchicalBackbone) and model.stages_name == container
    assert {k.split(".")[0] for k in model.state_dict()} <= {"stem", container, "norm", "head"}
    for info in model.feature_info:  # every feature level names a real submodule
        assert isinstance(model.get_submodule(info["module"]), torch.nn.Module)
    blocks = [m for m in model.modules() if isinstance(m, MixerBlock)]
    expected = GnConv if isinstance(model, HorNet) else FocalModulation
    assert blocks and all(isinstance(b.mixer, expected) for b in blocks)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        levels = model.forward_intermediates(x, intermediates_only=True)
        early = model.forward_intermediates(x, indices=[0], stop_early=True)
    assert [t.shape[1] for t in levels] == [f["num_chs"] for f in model.feature_info]
    torch.testing.assert_close(early[1][0], levels[0])


def test_mixer_is_chosen_at_construction():
    model = focalmod.create_model("focalnet_tiny_srf", mixer="gnconv", **TINY)
    blocks = [m for m in model.modules() if isinstance(m, MixerBlock)]
    assert [(type(b.mixer), b.mixer.dim, b.mixer.order) for b in blocks] == [
        (GnConv, 16, 2), (GnConv, 32, 3), (GnConv, 64, 4), (GnConv, 64, 4), (GnConv, 128, 5)]
    assert not any(isinstance(m, FocalModulation) for m in model.modules())
    swapped = swap_mixer(focalmod.create_model("focalnet_tiny_srf", **TINY), "gnconv")
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in swapped.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    model(x).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match=r"mixer must be one of \['focal', 'gnconv'\], got 'attn'"):
        FocalNet(mixer="attn")


def test_focal_unet_mixer_reaches_encoder_and_decoder():
    net = FocalUNet(2, 1, 2, feature_size=16, depths=(1, 1, 1), decoder="focal", mixer="gnconv")
    orders = {b.mixer.dim: b.mixer.order for b in net.modules() if isinstance(b, MixerBlock)}
    assert orders == {16: 2, 32: 3, 64: 4}
    assert sum(isinstance(b.mixer, GnConv) for b in net.decoder.modules() if isinstance(b, MixerBlock)) == 2
    assert net(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_hornet_takes_the_focal_mixer_at_construction():
    model = focalmod.create_model("hornet_tiny_7x7", mixer="focal", **TINY)
    blocks = [m for m in model.modules() if isinstance(m, MixerBlock)]
    assert blocks and all(isinstance(b.mixer, FocalModulation) and b.mixer is b.gnconv for b in blocks)
    plain = focalmod.create_model("hornet_tiny_7x7", **TINY)
    swapped = swap_mixer(plain, "focal")
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in swapped.state_dict().items()}
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"mixer must be one of \['focal', 'gnconv'\], got 'dw7'"):
        HorNet(mixer="dw7")
