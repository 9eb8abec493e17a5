"""Pretrained weights through timm's machinery and a Hugging Face Hub cache built in a temporary HF_HOME (offline).

The cache files are made here in the formats their repositories hold (timm safetensors, HF transformers, official
HorNet `.pth`), from randomised models; nothing is downloaded (HF_HUB_OFFLINE=1 throughout, see conftest.py).
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file
from test_checkpoints import official_to_hf, randomize_, timm_to_official
from test_hornet import source_model, to_official
from timm.models.focalnet import FocalNet as TimmFocalNet

import focalmod
from focalmod.models import get_spec
from focalmod.models._registry import PretrainedWeightsError

X = torch.randn(2, 3, 64, 64)
TINY = dict(embed_dim=16, depths=(1, 1, 2, 1))  # same keys as the variant, small tensors


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache in a temporary HF_HOME, offline."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


def put_in_cache(hub: Path, repo_id: str, filename: str, tensors: dict[str, torch.Tensor]) -> Path:
    """Write `tensors` as `filename` of `repo_id` in the Hub cache layout (refs/main -> snapshots/<commit>/file)."""
    tmp = hub / "incoming.safetensors"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    else:
        torch.save(tensors, tmp)
    commit = hashlib.sha1(tmp.read_bytes()).hexdigest()
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    path = repo / "snapshots" / commit / filename
    path.parent.mkdir(parents=True)
    tmp.rename(path)
    return path


def logits(model: torch.nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.slow
def test_timm_hub_file_is_shared_with_timm_and_gives_timm_logits(hub):
    """timm's own focalnet_tiny_srf and ours (focalmod and timm entry points) read the one cached
    timm/focalnet_tiny_srf.ms_in1k file, and give timm's logits (full-size FocalNet-T: timm's entry point fixes
    the architecture)."""
    torch.manual_seed(0)
    source = randomize_(timm.create_model("focalnet_tiny_srf"))
    path = put_in_cache(hub, "timm/focalnet_tiny_srf.ms_in1k", "model.safetensors", source.state_dict())
    del source
    reference = timm.create_model("focalnet_tiny_srf", pretrained=True)
    expected = logits(reference)
    for model in (focalmod.create_model("focalnet_tiny_srf", pretrained=True),
                  timm.create_model("focalmod_focalnet_tiny_srf", pretrained=True)):
        torch.testing.assert_close(logits(model), expected, rtol=0, atol=1e-5)
        assert model.pretrained_cfg["hf_hub_id"] == reference.pretrained_cfg["hf_hub_id"]
    assert [p for p in hub.rglob("*") if p.is_file() and p.name != "main"] == [path]  # nothing fetched twice
    features = focalmod.create_model("focalnet_tiny_srf", pretrained=True, features_only=True)
    assert features.pretrained_cfg["hf_hub_id"] == "timm/focalnet_tiny_srf.ms_in1k"
    with torch.no_grad():
        expected = reference.forward_intermediates(X, intermediates_only=True)
        torch.testing.assert_close(features.eval()(X), expected, rtol=1e-4, atol=1e-4)  # unnormalised maps


def test_imagenet22k_head_and_other_num_classes(hub):
    """The 22k tag builds its 21842-class head; another num_classes keeps a fresh head with a clear warning."""
    source = randomize_(focalmod.create_model("focalnet_large_fl3", num_classes=21842, **TINY))
    put_in_cache(hub, "timm/focalnet_large_fl3.ms_in22k", "model.safetensors", source.state_dict())
    model = focalmod.create_model("focalnet_large_fl3", pretrained=True, **TINY)
    assert model.num_classes == 21842 and model.pretrained_cfg["input_size"] == (3, 384, 384)
    torch.testing.assert_close(logits(model), logits(source), rtol=0, atol=1e-5)
    assert focalmod.create_model("focalnet_large_fl3", **TINY).num_classes == 1000  # without weights: the variant's
    with pytest.warns(UserWarning, match=r"classifier does not match \(head.fc.weight \(21842, 128\) vs model \(10"):
        adapted = focalmod.create_model("focalnet_large_fl3", pretrained=True, num_classes=10, **TINY)
    with torch.no_grad():
        torch.testing.assert_close(adapted.eval().forward_features(X), source.forward_features(X), rtol=0, atol=1e-5)


def test_hf_transformers_tag_and_input_channels(hub):
    """The microsoft/focalnet-tiny (HF transformers keys) tag; in_chans=1 adapts the stem as timm does."""
    source = randomize_(focalmod.create_model("focalnet_tiny_srf", **TINY))
    timm_shapes = TimmFocalNet(**TINY).state_dict()  # f, proj, fc1, fc2 are 1x1 convs there
    hf = official_to_hf(timm_to_official({k: v.reshape(timm_shapes[k].shape) for k, v in source.state_dict().items()}))
    put_in_cache(hub, "microsoft/focalnet-tiny", "model.safetensors", hf)
    model = focalmod.create_model("focalnet_tiny_srf.ms_in1k_hf", pretrained=True, **TINY)
    torch.testing.assert_close(logits(model), logits(source), rtol=0, atol=1e-5)
    gray = focalmod.create_model("focalnet_tiny_srf.ms_in1k_hf", pretrained=True, in_chans=1, **TINY)
    expected = source.stem.proj.weight.sum(1, keepdim=True)
    torch.testing.assert_close(gray.stem.proj.weight, expected)


def test_local_file_overlay_and_offline_errors(hub, tmp_path):
    source = randomize_(focalmod.create_model("focalnet_tiny_lrf", **TINY))
    file = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), str(file))
    for build in (focalmod.create_model, lambda n, **kw: timm.create_model("focalmod_" + n, **kw)):
        model = build("focalnet_tiny_lrf", pretrained=True, pretrained_cfg_overlay=dict(file=str(file)), **TINY)
        torch.testing.assert_close(logits(model), logits(source), rtol=0, atol=0)
    with pytest.raises(PretrainedWeightsError, match=r"model.safetensors of the Hugging Face repository "
                       r"timm/focalnet_tiny_lrf.ms_in1k are not in the Hub cache .* HF_HUB_OFFLINE=1"):
        focalmod.create_model("focalnet_tiny_lrf", pretrained=True, **TINY)
    with pytest.raises(FileNotFoundError, match=r"model.safetensors or pytorch_model.bin of the Hugging Face "
                       r"repository microsoft/focalnet-tiny-lrf"):
        timm.create_model("focalmod_focalnet_tiny_lrf.ms_in1k_hf", pretrained=True, **TINY)
    with pytest.raises(PretrainedWeightsError, match="focalnet1d_tiny .* has no weight source"):
        focalmod.create_model("focalnet1d_tiny", pretrained=True, **TINY)


def test_official_url_file_cached_by_torch_hub(tmp_path, monkeypatch):
    """HorNet's official links have no file name: the download is cached as <architecture>.<tag>.pth in torch.hub's
    checkpoint directory, where a present file is loaded without any network access."""
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    source = source_model()  # 7 classes: the file's head differs from the tag's 1000, so timm drops it
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "focalmod_hornet_tiny_gf.in1k_official.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": to_official(source)}, ckpt)
    small = dict(embed_dim=16, depths=(1, 1, 2, 1), img_size=64, num_classes=7)
    model = focalmod.create_model("hornet_tiny_gf", pretrained=True, **small).eval()
    with torch.no_grad():
        features = [m.forward_head(m.forward_features(X), pre_logits=True) for m in (model, source)]
    torch.testing.assert_close(*features, rtol=0, atol=1e-5)
    ckpt.unlink()
    with pytest.raises(ConnectionError, match="tests never download"):
        focalmod.create_model("hornet_tiny_gf", pretrained=True, **small)


def _no_download(url, dst, *args, **kwargs):
    raise ConnectionError(f"tests never download ({url})")


def test_every_weight_tag_is_listed_with_a_source():
    tags = focalmod.list_models(pretrained=True)
    assert {"focalnet_tiny_srf.ms_in1k", "focalnet_tiny_srf.ms_in1k_hf", "focalnet_large_fl4.ms_in22k",
            "focalnet_base_iso.ms_in1k_official", "hornet_large_gf_img384.in22k_official"} <= set(tags)
    assert {f"focalmod_{t}" for t in tags} == set(timm.list_models("focalmod_*", pretrained=True))
    for tag in tags:
        name, weights = tag.split(".")
        entry = get_spec(name).weights[weights]
        assert entry.get("hf_hub_id") or entry.get("url"), tag
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert timm.get_pretrained_cfg("focalmod_focalnet_huge_fl4").num_classes == 0  # weights ship without head
