"""UPerNet: parameter counts against the official structure, mmseg checkpoints, and numerical parity with an
independent implementation (Hugging Face transformers' FocalNet stages + UperNetHead / UperNetFCNHead).

`official_state_dict` rebuilds the key names and shapes of the official mmseg model (``segmentation/mmseg/models/
backbones/focalnet.py`` + mmseg ``UPerHead`` / ``FCNHead`` with ``ConvModule(conv, bn)``) from the config numbers
alone, independently of focalmod's modules: its parameter count is the "official" count, and as a checkpoint file
it must load into our models with no missing or unexpected keys.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import FocalNetConfig, FocalNetModel, UperNetConfig
from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead

import focalmod
from focalmod.models import get_spec
from focalmod.models.upernet import UPerNet
from focalmod.models.upernet_variants import PUBLISHED, build_upernet

OFFICIAL = sorted(PUBLISHED)
SMALL_BACKBONE = dict(embed_dim=16, depths=(1, 1, 2, 1))
SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1), channels=32, aux_channels=16, num_classes=7, drop_path_rate=0.0)


# ------------------------------------------------------------------------------------ the official key list
def official_shapes(
    embed_dim: int, depths: tuple[int, ...], focal_level: int, focal_window: int = 9, num_classes: int = 150,
    channels: int = 512, aux_channels: int = 256, pool_scales: tuple[int, ...] = (1, 2, 3, 6),
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official mmseg UPerNet-FocalNet state dict (parameters and BN buffers)."""
    shapes: dict[str, tuple[int, ...]] = {}
    dims = [embed_dim * 2**i for i in range(len(depths))]

    def layer_norm(prefix: str, c: int) -> None:
        shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = (c,), (c,)

    def with_bias(prefix: str, *weight_shape: int) -> None:  # nn.Linear / nn.Conv2d with bias
        shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = weight_shape, weight_shape[:1]

    def conv_module(prefix: str, c_in: int, c_out: int, k: int) -> None:  # mmcv ConvModule: conv (no bias) + bn
        shapes[f"{prefix}.conv.weight"] = (c_out, c_in, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{name}"] = (c_out,)
        shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    with_bias("backbone.patch_embed.proj", dims[0], 3, 4, 4)
    layer_norm("backbone.patch_embed.norm", dims[0])
    for i, (c, depth) in enumerate(zip(dims, depths)):
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}"
            layer_norm(f"{b}.norm1", c)
            with_bias(f"{b}.modulation.f", 2 * c + focal_level + 1, c)
            with_bias(f"{b}.modulation.h", c, c, 1, 1)  # a 1x1 Conv2d in the official code
            with_bias(f"{b}.modulation.proj", c, c)
            for k in range(focal_level):
                size = 2 * k + focal_window
                shapes[f"{b}.modulation.focal_layers.{k}.0.weight"] = (c, 1, size, size)
            layer_norm(f"{b}.norm2", c)
            with_bias(f"{b}.mlp.fc1", 4 * c, c)
            with_bias(f"{b}.mlp.fc2", c, 4 * c)
        if i < len(depths) - 1:  # downsample at the end of the stage (BasicLayer)
            with_bias(f"backbone.layers.{i}.downsample.proj", 2 * c, c, 2, 2)
            layer_norm(f"backbone.layers.{i}.downsample.norm", 2 * c)
        layer_norm(f"backbone.norm{i}", c)
    for s in range(len(pool_scales)):
        conv_module(f"decode_head.psp_modules.{s}.1", dims[-1], channels, 1)
    conv_module("decode_head.bottleneck", dims[-1] + len(pool_scales) * channels, channels, 3)
    for i, c in enumerate(dims[:-1]):
        conv_module(f"decode_head.lateral_convs.{i}", c, channels, 1)
        conv_module(f"decode_head.fpn_convs.{i}", channels, channels, 3)
    conv_module("decode_head.fpn_bottleneck", len(dims) * channels, channels, 3)
    with_bias("decode_head.conv_seg", num_classes, channels, 1, 1)
    conv_module("auxiliary_head.convs.0", dims[2], aux_channels, 3)
    with_bias("auxiliary_head.conv_seg", num_classes, aux_channels, 1, 1)
    return shapes


def official_param_count(shapes: dict[str, tuple[int, ...]]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(buffers))


def official_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random official-layout weights, scaled so activations stay O(1); BN statistics away from 0/1."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            sd[key] = torch.randn(shape, generator=g) * fan_in**-0.5
        elif key.endswith("weight"):
            sd[key] = 0.8 + 0.4 * torch.rand(shape, generator=g)
        else:
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    return sd


def _spec_shapes(name: str, **overrides) -> dict[str, tuple[int, ...]]:
    kw = {**get_spec(name).kwargs, **overrides}
    return official_shapes(kw["embed_dim"], tuple(kw["depths"]), kw["focal_levels"], kw["focal_windows"],
                           kw["num_classes"], kw.get("channels", 512), kw.get("aux_channels", 256))


# ------------------------------------------------------------------------------------------------ counts
@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if "tiny" in n else pytest.mark.slow) for n in OFFICIAL])
def test_params_equal_official_structure_and_readme(name):
    model = focalmod.create_model(name)
    ours = sum(p.numel() for p in model.parameters())
    official = official_param_count(_spec_shapes(name))
    assert ours == official
    assert ours / 1e6 == pytest.approx(get_spec(name).params_m, abs=5e-4)
    assert abs(ours / 1e6 - PUBLISHED[name].params_m) <= 0.01 * PUBLISHED[name].params_m


@pytest.mark.parametrize("name, head, aux", [
    ("upernet_focalnet_tiny_srf", 31.50, 0.92),
    pytest.param("upernet_focalnet_base_srf", 33.32, 1.22, marks=pytest.mark.slow),
])
def test_head_counts_match_reference(name, head, aux):
    """UPerHead 31.50 M and FCN auxiliary 0.92 M for C=96 (reference Sec. 1); 33.32 / 1.22 M for C=128."""
    model = focalmod.create_model(name)
    assert sum(p.numel() for p in model.decode_head.parameters()) / 1e6 == pytest.approx(head, abs=0.005)
    assert sum(p.numel() for p in model.auxiliary_head.parameters()) / 1e6 == pytest.approx(aux, abs=0.005)


def test_registered_in_timm_and_configured():
    import timm

    model = timm.create_model("focalmod_upernet_focalnet_tiny_srf", num_classes=19)
    assert isinstance(model, UPerNet) and model.num_classes == 19
    assert model.decode_head.conv_seg.out_channels == 19 and model.auxiliary_head.conv_seg.out_channels == 19
    kernels = model.backbone.model.layers[0].blocks[0].modulation.kernel_sizes
    assert kernels == [9, 11]
    assert model.pretrained_cfg["architecture"] == "upernet_focalnet_tiny_srf"


# ------------------------------------------------------------------------------------------- checkpoints
def test_official_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path):
    shapes = _spec_shapes("upernet_focalnet_tiny_lrf")
    sd = official_state_dict(shapes)
    path = tmp_path / "upernet_focalnet_tiny_lrf_160k.pth"
    torch.save({"meta": {"iter": 160000}, "state_dict": sd, "optimizer": {"state": {}}}, path)
    model = focalmod.create_model("upernet_focalnet_tiny_lrf")
    report = focalmod.load_checkpoint(model, path)
    assert report.format == "mmseg"
    assert not report.missing and not report.unexpected and not report.mismatched
    ours = model.state_dict()
    assert len(report.loaded) == len(sd) == len(ours)
    torch.testing.assert_close(ours["backbone.model.layers.1.downsample.proj.weight"],
                               sd["backbone.layers.0.downsample.proj.weight"])
    torch.testing.assert_close(ours["backbone.model.layers.2.blocks.0.modulation.h.weight"],
                               sd["backbone.layers.2.blocks.0.modulation.h.weight"].flatten(1))
    torch.testing.assert_close(ours["out_norms.3.bias"], sd["backbone.norm3.bias"])
    torch.testing.assert_close(ours["decode_head.psp_modules.2.1.bn.running_var"],
                               sd["decode_head.psp_modules.2.1.bn.running_var"])


def test_other_class_count_keeps_initialised_classifiers():
    sd = official_state_dict(_spec_shapes("upernet_focalnet_tiny_srf", **{**SMALL, "num_classes": 150}))
    model = focalmod.create_model("upernet_focalnet_tiny_srf", **SMALL)
    with pytest.warns(UserWarning, match="classifier does not match"):
        report = focalmod.load_checkpoint(model, sd)
    assert {"decode_head.conv_seg.weight", "auxiliary_head.conv_seg.bias"} <= set(report.initialised)
    assert not report.missing and not report.unexpected
    torch.testing.assert_close(model.state_dict()["decode_head.fpn_bottleneck.conv.weight"],
                               sd["decode_head.fpn_bottleneck.conv.weight"])


def test_our_checkpoint_round_trips_through_lightning_prefix(tmp_path):
    model = focalmod.create_model("upernet_focalnet_tiny_srf", **SMALL).eval()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "last.ckpt")
    other = focalmod.create_model("upernet_focalnet_tiny_srf", **SMALL).eval()
    report = focalmod.load_checkpoint(other, tmp_path / "last.ckpt")
    assert report.prefix == "model." and not report.missing
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(other(x), model(x))


def test_mmseg_checkpoint_needs_a_focalnet_backbone():
    sd = official_state_dict(_spec_shapes("upernet_focalnet_tiny_srf", **SMALL))
    model = build_upernet("convnext_atto", num_classes=7, channels=32, aux_channels=16)
    with pytest.raises(ValueError, match="mmseg FocalNet UPerNet checkpoint"):
        focalmod.load_checkpoint(model, sd)


# ------------------------------------------------------------------ parity with transformers' implementation
def _to_hf(sd: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    """Official keys -> (HF FocalNetModel, UperNetHead, UperNetFCNHead) keys (HF's conversion-script renames)."""
    import re

    backbone, head, aux = {}, {}, {}
    for key, value in sd.items():
        if key.startswith("backbone.") and not re.match(r"backbone\.norm\d", key):
            k = key[len("backbone."):]
            k = k.replace("patch_embed.proj", "embeddings.patch_embeddings.projection")
            k = k.replace("patch_embed.norm", "embeddings.norm")
            k = re.sub(r"^layers\.(\d+)\.blocks\.", r"encoder.stages.\1.layers.", k)
            k = re.sub(r"^layers\.(\d+)\.downsample\.proj", r"encoder.stages.\1.downsample.projection", k)
            k = re.sub(r"^layers\.(\d+)\.downsample\.norm", r"encoder.stages.\1.downsample.norm", k)
            k = k.replace("modulation.f.", "modulation.projection_in.").replace(
                "modulation.h.", "modulation.projection_context.").replace(
                "modulation.proj.", "modulation.projection_out.")
            backbone[k] = value
        for prefix, target in (("decode_head.", head), ("auxiliary_head.", aux)):
            if key.startswith(prefix):
                k = key[len(prefix):].replace(".bn.", ".batch_norm.").replace("conv_seg.", "classifier.")
                target[k] = value
    return backbone, head, aux


def test_matches_transformers_focalnet_stages_and_upernet_heads():
    """Same weights, eval mode, an input size that is no multiple of 32 (HF pads like the official PatchEmbed)."""
    shapes = _spec_shapes("upernet_focalnet_tiny_lrf", **SMALL)
    sd = official_state_dict(shapes, seed=3)
    model = focalmod.create_model("upernet_focalnet_tiny_lrf", **SMALL).eval()
    focalmod.load_checkpoint(model, sd)

    dims = [SMALL["embed_dim"] * 2**i for i in range(4)]
    hf_cfg = FocalNetConfig(embed_dim=dims[0], depths=list(SMALL["depths"]), focal_levels=[3] * 4,
                            focal_windows=[9] * 4, hidden_sizes=dims[1:] + dims[-1:], drop_path_rate=0.0)
    up_cfg = UperNetConfig(backbone_config=hf_cfg, hidden_size=SMALL["channels"], num_labels=SMALL["num_classes"],
                           auxiliary_channels=SMALL["aux_channels"], pool_scales=[1, 2, 3, 6])
    hf_backbone = FocalNetModel(hf_cfg, add_pooling_layer=False).eval()
    hf_head = UperNetHead(up_cfg, in_channels=dims).eval()
    hf_aux = UperNetFCNHead(up_cfg, in_channels=dims).eval()
    b_sd, h_sd, a_sd = _to_hf(sd)
    missing, unexpected = hf_backbone.load_state_dict(b_sd, strict=False)
    assert not unexpected and set(missing) == {"layernorm.weight", "layernorm.bias"}  # HF's unused final norm
    hf_head.load_state_dict(h_sd, strict=True)  # module by module the same parameters as mmseg's UPerHead
    hf_aux.load_state_dict(a_sd, strict=True)
    hf_params = sum(p.numel() for m in (hf_backbone, hf_head, hf_aux) for p in m.parameters())
    out_norm_params = sum(2 * c for c in dims)
    assert hf_params - 2 * dims[-1] + out_norm_params == official_param_count(shapes)

    stage_outputs = []  # hidden states before each stage's downsample, reshaped with the stage's input size

    def grab(module, args, output):
        hidden, (h, w) = output[1], args[1]
        stage_outputs.append(hidden.reshape(hidden.shape[0], h, w, -1))

    hooks = [stage.register_forward_hook(grab) for stage in hf_backbone.encoder.stages]
    x = torch.randn(2, 3, 97, 131, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        hf_backbone(x)
        features = [F.layer_norm(f, (f.shape[-1],), sd[f"backbone.norm{i}.weight"], sd[f"backbone.norm{i}.bias"])
                    .permute(0, 3, 1, 2) for i, f in enumerate(stage_outputs)]
        expected = F.interpolate(hf_head(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        expected_aux = F.interpolate(hf_aux(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        logits, aux = model.forward_with_aux(x)
    for hook in hooks:
        hook.remove()
    assert [f.shape[-2:] for f in features] == [(25, 33), (13, 17), (7, 9), (4, 5)]  # ceil, not floor
    assert logits.shape == (2, SMALL["num_classes"], 97, 131)
    torch.testing.assert_close(logits, expected, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(aux, expected_aux, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(model(x), logits)


# ------------------------------------------------------------------------------------------ other backbones
@pytest.mark.parametrize("name, kwargs", [
    ("focalnet_tiny_srf", dict(embed_dim=16, depths=(1, 1, 2, 1))),
    ("hornet_tiny_7x7", dict(embed_dim=16, depths=(1, 1, 2, 1))),
    ("convnext_atto", dict(dims=(16, 32, 64, 128))),
    ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), img_size=64)),
])
def test_same_heads_on_any_features_only_backbone(name, kwargs):
    model = build_upernet(name, num_classes=5, channels=16, aux_channels=8, **kwargs).eval()
    expected = [16, 32, 64, 128]
    assert [norm.normalized_shape[0] for norm in model.out_norms] == expected
    assert model.decode_head.in_channels == expected
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits, aux = model.forward_with_aux(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 5, 64, 64)
    assert torch.isfinite(logits).all()


def test_backbone_kwargs_need_a_name():
    with pytest.raises(ValueError, match="need a backbone name"):
        build_upernet(focalmod.create_model("focalnet_tiny_srf", features_only=True, **SMALL_BACKBONE), embed_dim=32)


def test_training_step_reaches_every_parameter():
    model = focalmod.create_model("upernet_focalnet_tiny_srf", **SMALL).train()
    logits, aux = model.forward_with_aux(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, SMALL["num_classes"], (2, 64, 64))
    (F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused


def test_sizes_benchmark_counts_params_and_macs(tmp_path):
    from benchmarks import upernet_sizes

    rows = upernet_sizes.main(["--rows", "focalnet_tiny_srf", "--size", "64", "64", "--out", str(tmp_path)])
    assert rows[0]["params_M"] == 60.82 and rows[0]["published_params_M"] == 61
    assert rows[0]["GMACs@64x64"] > 0 and (tmp_path / "results.md").is_file()


@pytest.mark.slow
def test_torch_export_trace_and_script_match_eager():
    """Deployment: torch.export and torch.jit.trace reproduce eager logits (an odd size: the padding is static);
    torch.jit.script does too, and keeps the padding shape-dependent (a second, even size)."""
    model = focalmod.create_model("upernet_focalnet_tiny_srf", **SMALL).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected, atol=1e-5, rtol=1e-4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trace warns about the shape-dependent padding
            traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), expected, atol=1e-5, rtol=1e-4)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-4)
        other = torch.randn(2, 3, 64, 80)
        torch.testing.assert_close(scripted(other), model(other), atol=1e-5, rtol=1e-4)
