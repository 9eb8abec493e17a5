"""Checkpoint loading: every source format (built here from the reference key maps, independently of the
converter), containers and prefixes, safe reading of hostile or broken files, strict reporting and surgery."""
from __future__ import annotations

import os
import re
import warnings

import pytest
import torch
from safetensors.torch import save_file
from timm.models.focalnet import FocalNet as TimmFocalNet

import focalmod
from focalmod.checkpoints import CheckpointError, read_checkpoint, read_state_dict, save_checkpoint
from focalmod.models import get_spec

SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1), num_classes=10, drop_path_rate=0.0)
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fan-in scaled normal weights; norms, layer scales and biases away from their inits so each one matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
            elif name.endswith("gamma") or name.endswith("weight"):
                p.copy_(0.7 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def ours(name: str = "focalnet_tiny_srf", **overrides) -> torch.nn.Module:
    return focalmod.create_model(name, **{**SMALL, **overrides}).eval()


def timm_like(name: str) -> TimmFocalNet:
    """timm's FocalNet with the flags of our variant `name` at the SMALL width/depth."""
    kw = get_spec(name).kwargs
    return randomize_(
        TimmFocalNet(
            embed_dim=SMALL["embed_dim"],
            depths=SMALL["depths"],
            num_classes=SMALL["num_classes"],
            focal_levels=(kw["focal_levels"],) * 4,
            focal_windows=(kw.get("focal_windows", 3),) * 4,
            use_overlap_down=kw.get("use_conv_embed", False),
            use_post_norm=kw.get("use_post_norm", False),
            use_post_norm_in_modulation=kw.get("use_post_norm_in_modulation", False),
            normalize_modulator=kw.get("normalize_modulator", False),
            layerscale_value=kw.get("layerscale_value"),
        )
    )


# ---------------------------------------------------------------- inverse key maps (reference focalnet.md Sec. 5)
def timm_to_official(sd: dict) -> dict:
    """timm -> official Microsoft keys: inverse of timm's checkpoint_filter_fn (Linear weights 2-D, h a conv)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^stem\.", "patch_embed.", k)
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", k)
        k = k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")
        k = k.replace(".norm1_post.", ".norm1.").replace(".norm2_post.", ".norm2.")
        k = k.replace(".modulation.norm.", ".modulation.ln.")
        k = re.sub(r"^head\.fc\.", "head.", k)
        if re.search(r"\.(modulation\.f|modulation\.proj|mlp\.fc1|mlp\.fc2)\.weight$", k):
            v = v.flatten(1)
        out[k] = v
    return out


def official_to_hf(sd: dict) -> dict:
    """official -> HF transformers keys (convert_focalnet_to_hf_format.rename_key, plus ln -> layernorm)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            out["classifier." + k[5:]] = v
            continue
        k = k.replace("patch_embed.proj", "embeddings.patch_embeddings.projection")
        k = k.replace("patch_embed.norm", "embeddings.norm")
        k = re.sub(r"^layers\.", "encoder.stages.", k).replace(".blocks.", ".layers.")
        k = k.replace("downsample.proj", "downsample.projection")
        for a, b in [("f", "in"), ("h", "context"), ("proj", "out"), ("ln", "layernorm")]:
            k = k.replace(f".modulation.{a}.", f".modulation.{b if b == 'layernorm' else 'projection_' + b}.")
        k = re.sub(r"^norm\.", "layernorm.", k)
        out["focalnet." + k] = v
    return out


def official_to_mmdet(sd: dict) -> dict:
    """An mmdet detector checkpoint: backbone. prefix, per-output norm0..3 instead of norm, no head, + neck/heads."""
    state = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        state["backbone." + re.sub(r"^norm\.", "norm3.", k)] = v
    for i, c in enumerate((16, 32, 64)):
        state[f"backbone.norm{i}.weight"], state[f"backbone.norm{i}.bias"] = torch.ones(c), torch.zeros(c)
    state["neck.lateral_convs.0.conv.weight"] = torch.zeros(8, 16, 1, 1)
    state["rpn_head.rpn_cls.bias"] = torch.zeros(3)
    return {"meta": {"mmdet_version": "2.25.0", "CLASSES": ("cat", "dog"), "epoch": 12}, "state_dict": state}


def _logits(model, x=X):
    with torch.no_grad():
        return model(x)


FLAG_VARIANTS = ["focalnet_tiny_srf", "focalnet_large_fl3", "focalnet_large_fl4", "focalnet_huge_fl4"]


@pytest.mark.parametrize("name", FLAG_VARIANTS)
def test_official_hf_mmdet_formats_match_timm_logits(tmp_path, name):
    """The same random weights in official .pth, HF .bin, HF .safetensors and timm .safetensors all give timm's
    logits; the mmdet detector checkpoint gives timm's features."""
    reference = timm_like(name)
    timm_sd = reference.state_dict()
    official = timm_to_official(timm_sd)
    torch.save({"model": official, "epoch": 300, "config": "focalnet.yaml"}, tmp_path / "official.pth")
    torch.save(official_to_hf(official), tmp_path / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in official_to_hf(official).items()}, tmp_path / "hf.safetensors")
    save_file({k: v.contiguous() for k, v in timm_sd.items()}, tmp_path / "timm.safetensors")
    expected = _logits(reference)
    for file, fmt in [("official.pth", "official"), ("pytorch_model.bin", "hf"), ("hf.safetensors", "hf"),
                      ("timm.safetensors", "timm")]:
        model = ours(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the timm normalize_modulator note (tested in test_focalnet_variants)
            report = focalmod.load_checkpoint(model, tmp_path / file)
        assert report.format == fmt and not report.initialised, file
        assert (_logits(model) - expected).abs().max() <= 1e-4, file

    torch.save(official_to_mmdet(official), tmp_path / "mask_rcnn.pth")
    backbone = ours(name, num_classes=0)
    report = focalmod.load_checkpoint(backbone, tmp_path / "mask_rcnn.pth")
    assert report.format == "mmdet" and report.prefix == "backbone."
    assert {"neck.lateral_convs.0.conv.weight", "norm0.weight", "norm2.bias"} <= set(report.ignored)
    with torch.no_grad():
        assert (backbone.forward_features(X) - reference.forward_features(X)).abs().max() <= 1e-4


@pytest.mark.parametrize("size", ["tiny", "huge_like"])
def test_hf_transformers_model_parity(size):
    """An independent implementation: transformers' FocalNetForImageClassification, built offline."""
    transformers = pytest.importorskip("transformers")
    if size == "tiny":
        cfg = dict(embed_dim=96, depths=[2, 2, 6, 2], focal_levels=[2] * 4, focal_windows=[3] * 4)
        model = focalmod.create_model("focalnet_tiny_srf", num_classes=10, drop_path_rate=0.0).eval()
    else:
        cfg = dict(embed_dim=16, depths=[1, 1, 2, 1], focal_levels=[4] * 4, focal_windows=[3] * 4,
                   use_conv_embed=True, use_post_layernorm=True, use_layerscale=True,
                   use_post_layernorm_in_modulation=True)
        model = ours("focalnet_huge_fl4")
    config = transformers.FocalNetConfig(num_labels=10, **cfg)
    hf = randomize_(transformers.FocalNetForImageClassification(config))
    report = focalmod.load_checkpoint(model, hf.state_dict())
    assert report.format == "hf"
    with torch.no_grad():
        expected = hf(pixel_values=X).logits
    assert (_logits(model) - expected).abs().max() <= 1e-4


# ------------------------------------------------------------------------------------ our format, containers
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_round_trip_own_format(tmp_path, suffix):
    model = randomize_(ours())
    path = save_checkpoint(model, tmp_path / f"sub/ckpt{suffix}")
    raw = read_checkpoint(path)
    if suffix == ".pth":
        assert raw["model"] == "focalnet_tiny_srf" and raw["focalmod_version"] == focalmod.__version__
    loaded = focalmod.create_model("focalnet_tiny_srf", checkpoint_path=path, **SMALL).eval()
    assert torch.equal(_logits(loaded), _logits(model))
    assert not list(tmp_path.glob("sub/.*tmp*")), "temporary file left behind"


def test_lightning_ddp_compile_prefixes(tmp_path):
    model = randomize_(ours())
    sd = model.state_dict()
    lightning = {
        "epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.6.0", "optimizer_states": [{"state": {}}],
        "hyper_parameters": {"lr": 1e-3, "model": "focalnet_tiny_srf"},
        "state_dict": {**{f"model.{k}": v for k, v in sd.items()}, "criterion.weight": torch.ones(10)},
    }
    torch.save(lightning, tmp_path / "last.ckpt")
    for source, prefix in [(tmp_path / "last.ckpt", "model."), ({f"module.{k}": v for k, v in sd.items()}, "module."),
                           ({f"_orig_mod.{k}": v for k, v in sd.items()}, "_orig_mod.")]:
        fresh = ours()
        report = focalmod.load_checkpoint(fresh, source)
        assert report.prefix == prefix and report.format == "focalmod"
        assert torch.equal(_logits(fresh), _logits(model))
    assert "criterion.weight" in focalmod.load_checkpoint(ours(), tmp_path / "last.ckpt").ignored


def test_ambiguous_prefixes_need_choice():
    model = randomize_(ours())
    ema = randomize_(ours(), seed=5)
    both = {**{f"model.{k}": v for k, v in model.state_dict().items()},
            **{f"ema.{k}": v for k, v in ema.state_dict().items()}}
    with pytest.raises(CheckpointError, match=r"several prefixes.*'ema\.'.*'model\.'.*prefix="):
        focalmod.load_checkpoint(ours(), both)
    fresh = ours()
    focalmod.load_checkpoint(fresh, both, prefix="ema.")
    assert torch.equal(_logits(fresh), _logits(ema))


def test_load_into_feature_wrapper_and_hf_directory(tmp_path):
    model = randomize_(ours())
    (tmp_path / "hub").mkdir()
    save_file(model.state_dict(), tmp_path / "hub" / "model.safetensors")
    features = focalmod.create_model("focalnet_tiny_srf", features_only=True, **SMALL).eval()
    focalmod.load_checkpoint(features, tmp_path / "hub")
    with torch.no_grad():
        assert torch.equal(features(X)[-1], model.forward_intermediates(X, intermediates_only=True)[-1])


# ------------------------------------------------------------------------------------------ broken / hostile
class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"refused to load .*evil\.pth.*system.*nothing in it was executed"):
        focalmod.load_checkpoint(ours(), tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.pth"):
        focalmod.create_model("focalnet_tiny_srf", checkpoint_path=tmp_path / "evil.pth", **SMALL)
    assert not marker.exists()


def test_broken_files_give_clear_errors(tmp_path):
    model = ours()
    save_checkpoint(model, tmp_path / "good.pth")
    save_checkpoint(model, tmp_path / "good.safetensors")
    good, good_st = (tmp_path / "good.pth").read_bytes(), (tmp_path / "good.safetensors").read_bytes()
    cases = {
        "garbage.pth": (os.urandom(4096), "not a readable PyTorch checkpoint|refused to load"),
        "truncated.pth": (good[: len(good) // 2], "not a readable PyTorch checkpoint"),
        "truncated.safetensors": (good_st[: len(good_st) // 2], "not a valid safetensors file"),
        "garbage.safetensors": (b"\x00" * 64, "not a valid safetensors file"),
        "empty.ckpt": (b"", "is empty"),
        "notes.bin": (b"these are my notes, not weights\n" * 10, "not a readable PyTorch checkpoint|refused to load"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=message) as err:
            focalmod.load_checkpoint(model, tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        focalmod.load_checkpoint(model, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="directory"):
        focalmod.load_checkpoint(model, tmp_path)
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match=r"meta\.pth: no weights found .*'epoch'"):
        read_state_dict(tmp_path / "meta.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="expected a dict of tensors"):
        read_state_dict(tmp_path / "tensor.pth")


# ------------------------------------------------------------------------------------ strict and the head
def test_strict_mismatch_lists_everything_in_one_error():
    source = randomize_(ours(focal_levels=3))
    sd = source.state_dict()
    del sd["norm.weight"]
    sd["extra.weight"] = torch.zeros(1)
    target = ours(depths=(1, 1, 1, 1))
    with pytest.raises(CheckpointError) as err:
        focalmod.load_checkpoint(target, sd)
    message = str(err.value)
    assert "does not fit focalnet_tiny_srf" in message
    assert re.search(r"missing keys \(1\): norm\.weight", message)
    assert re.search(r"unexpected keys \(\d+\): .*layers\.2\.blocks\.1\.norm1\.weight.*extra\.weight", message)
    assert "layers.0.blocks.0.modulation.focal_layers.2.0.weight" in message  # L=3 -> L=2: extra level
    assert re.search(r"shape mismatches \(\d+\): .*layers\.0\.blocks\.0\.modulation\.f\.weight: checkpoint "
                     r"\(36, 16\) vs model \(35, 16\)", message)
    with pytest.warns(UserWarning, match="loaded non-strictly"):
        report = focalmod.load_checkpoint(target, sd, strict=False)
    assert report.missing == ["norm.weight"] and "extra.weight" in report.unexpected
    assert torch.equal(target.stem.proj.weight, source.stem.proj.weight)


def test_head_of_other_size_is_reinitialised_with_warning():
    source = randomize_(ours())
    target = ours(num_classes=42)
    head_before = target.head.fc.weight.clone()
    with pytest.warns(UserWarning, match=r"head\.fc\.weight \(10, 128\) vs model \(42, 128\)"):
        report = focalmod.load_checkpoint(target, source.state_dict())
    assert "head.fc.weight" in report.initialised and torch.equal(target.head.fc.weight, head_before)
    with torch.no_grad():
        assert torch.equal(target.forward_head(target.forward_features(X), pre_logits=True),
                           source.forward_head(source.forward_features(X), pre_logits=True))
    backbone = ours(num_classes=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = focalmod.load_checkpoint(backbone, source.state_dict())
    assert {"head.fc.weight", "head.fc.bias"} <= set(report.ignored)


# ------------------------------------------------------------------------------------------- surgery
@pytest.mark.parametrize("name,shape", [("focalnet_tiny_srf", (2, 3, 64, 64)), ("focalnet1d_tiny", (2, 4, 96)),
                                        ("focalnet3d_tiny", (1, 2, 32, 32, 32))])
def test_kernel_padding_keeps_outputs(name, shape):
    """3x3/5x5 -> 9x9/11x11 (detection kernels): centered zero-padding leaves the function unchanged, in 1D/2D/3D."""
    kw = dict(in_chans=shape[1], embed_dim=8, depths=(1, 1, 1, 1))
    source = randomize_(ours(name, **kw))
    target = ours(name, focal_windows=9, **kw)
    focalmod.load_checkpoint(target, source.state_dict())
    padded = target.layers[0].blocks[0].modulation.focal_layers[0][0].weight
    original = source.layers[0].blocks[0].modulation.focal_layers[0][0].weight
    assert padded.shape[2:] == (9,) * len(shape[2:])
    inner = (slice(None), slice(None)) + (slice(3, 6),) * len(shape[2:])
    rest = padded.clone()
    rest[inner] = 0
    assert torch.equal(padded[inner], original) and not rest.any()
    x = torch.randn(shape)
    assert (_logits(target, x) - _logits(source, x)).abs().max() <= 1e-5


def test_kernel_crop_takes_the_center():
    source = randomize_(ours(focal_windows=5))
    target = ours(focal_windows=3)
    with pytest.warns(UserWarning, match="center-cropped"):
        focalmod.load_checkpoint(target, source.state_dict())
    got = target.layers[1].blocks[0].modulation.focal_layers[1][0].weight  # 7x7 -> 5x5
    assert torch.equal(got, source.layers[1].blocks[0].modulation.focal_layers[1][0].weight[:, :, 1:6, 1:6])


def test_extra_focal_levels_remap_projection_rows():
    """Official surgery: q/ctx rows and level gates copied, global gate to the last row, the new gate row zero."""
    source = randomize_(ours(focal_levels=2))
    target = ours(focal_levels=3)
    with pytest.warns(UserWarning, match="gain focal levels"):
        report = focalmod.load_checkpoint(target, source.state_dict())
    assert "layers.0.blocks.0.modulation.focal_layers.2.0.weight" in report.initialised
    for name in ("weight", "bias"):
        old = getattr(source.layers[3].blocks[0].modulation.f, name)  # C=128: rows 2C + 3
        new = getattr(target.layers[3].blocks[0].modulation.f, name)
        assert new.shape[0] == 2 * 128 + 4
        assert torch.equal(new[: 2 * 128 + 2], old[:-1]) and torch.equal(new[-1], old[-1])
        assert not new[2 * 128 + 2].any()


def test_public_names():
    assert focalmod.load_checkpoint is focalmod.checkpoints.load_checkpoint
    assert "load_checkpoint" in focalmod.__all__


def test_surgery_that_cannot_adapt_raises_checkpoint_error_naming_the_file(tmp_path):
    """A focal projection without gate rows cannot be remapped: one CheckpointError with the file name."""
    sd = randomize_(ours(focal_levels=2)).state_dict()
    key = "layers.0.blocks.0.modulation.f.weight"
    sd[key] = sd[key][: 2 * 16]  # q and ctx rows only
    sd[key.replace("weight", "bias")] = sd[key.replace("weight", "bias")][: 2 * 16]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"cut\.pth: .*no gate rows"):
        focalmod.load_checkpoint(ours(focal_levels=3), tmp_path / "cut.pth")
