"""`--pretrained NAME` in the image and sound tasks, and the sound task's --data default switching to fine-tuning
when ImageNet FocalNet-T weights are in the Hugging Face cache; the cache is a temporary HF_HOME holding small
files in the timm repositories' real format (nothing is downloaded, HF_HUB_OFFLINE=1)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_pretrained import hub, put_in_cache  # noqa: F401 (the fixture is used by name)

import focalmod
from tasks.common import TaskError

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1))


def _cache_tiny_focalnet_t(hub: Path) -> dict[str, torch.Tensor]:  # noqa: F811
    torch.manual_seed(0)
    source = focalmod.create_model("focalnet_tiny_srf", **TINY)
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.5)
    state = source.state_dict()
    put_in_cache(hub, "timm/focalnet_tiny_srf.ms_in1k", "model.safetensors", state)
    return state


def test_image_recipe_starts_from_cached_weights_with_a_new_head(hub) -> None:  # noqa: F811
    from tasks.imagenet.recipe import build_model

    with pytest.raises(TaskError, match="not in the"):
        build_model("focalnet_tiny_srf", 3, pretrained="focalnet_tiny_srf", **TINY)
    state = _cache_tiny_focalnet_t(hub)
    model = build_model("focalnet_tiny_srf", 3, pretrained="focalnet_tiny_srf", **TINY)
    assert model.head.fc.out_features == 3
    for key, value in model.state_dict().items():
        if not key.startswith("head.fc"):
            torch.testing.assert_close(value, state[key], msg=key)
    with pytest.raises(TaskError, match="names another model"):
        build_model("focalnet_small_srf", 3, pretrained="focalnet_tiny_srf")


def _esc50(root: Path) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    t = np.arange(1600) / 16000
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("filename", "fold", "target", "category", "esc10", "src_file", "take"))
        for fold in range(1, 6):
            for k in range(2):
                name = f"{fold}-{fold}{k}-A-{k}.wav"
                sf.write(root / "audio" / name, (0.5 * np.sin(2 * np.pi * (300 + 900 * k) * t)).astype(np.float32),
                         16000)
                writer.writerow((name, fold, k, f"c{k}", "False", f"{fold}{k}", "A"))
    return root


def test_audio_pretrained_name_loads_the_cached_weights_into_a_one_channel_stem(hub) -> None:  # noqa: F811
    from tasks.audio.models import build_model

    state = _cache_tiny_focalnet_t(hub)
    model = build_model("focalnet2d", 2, 64, 101, pretrained="focalnet_tiny_srf", in_chans=1, **TINY).backbone
    torch.testing.assert_close(model.stem.proj.weight, state["stem.proj.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.state_dict()["layers.2.blocks.1.modulation.f.weight"],
                               state["layers.2.blocks.1.modulation.f.weight"])
    assert model.head.fc.out_features == 2
    with pytest.raises(TaskError, match="--pretrained focalnet_base_srf: .*not in the"):
        build_model("focalnet2d", 2, 64, 101, pretrained="focalnet_base_srf")


def test_audio_data_default_fine_tunes_when_focalnet_t_is_cached(hub, tmp_path: Path, capsys) -> None:  # noqa: F811
    from tasks.audio.esc50 import TASK, main
    from tasks.common.lifecycle import resolve_options

    data = _esc50(tmp_path / "esc")
    assert resolve_options(TASK, ["--data", str(data)])[0].preset == "esc50", "nothing cached: from scratch"
    _cache_tiny_focalnet_t(hub)
    args, _, _ = resolve_options(TASK, ["--data", str(data)])
    assert (args.preset, args.pretrained, args.model, args.lr) == ("finetune", "focalnet_tiny_srf", "focalnet2d", 2e-4)
    metrics = main(["--data", str(data), "--out", str(tmp_path / "run"), "--folds", "1", "--clip-seconds", "0.4",
                    "--embed-dim", "16", "--depths", "1,1,2,1", "--epochs", "1", "--no-progress", "--no-cache"])
    assert metrics["preset"] == "finetune" and metrics["model"]["pretrained"] == "focalnet_tiny_srf"
    assert metrics["model"]["variant"] == "focalnet_tiny_srf" and metrics["baseline"]["value"] is not None
