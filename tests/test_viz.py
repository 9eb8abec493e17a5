"""focalmod.viz: map shapes per stage (1D/2D/3D), values equal the module's maps, hooks removed, figures, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import focalmod
from focalmod import FocalModulation2d
from focalmod.viz import modulation_maps, plot_modulation_maps, quantile_mask
from tasks.common import read_metrics, run_main
from tasks.viz import main as viz_main

SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1), num_classes=5)
SMALL_ARGS = ["--model-arg", "embed_dim=16", "--model-arg", "depths=[1,1,2,1]"]


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_maps_shapes_per_stage_2d():
    model = focalmod.create_model("focalnet_tiny_srf", **SMALL)
    x = torch.randn(2, 3, 64, 64)
    maps = modulation_maps(model, x)
    assert [(m.stage, m.block) for m in maps] == [(0, 0), (1, 0), (2, 1), (3, 0)]
    for m in maps:
        side = 16 // 2**m.stage
        assert m.gates.shape == (2, 3, side, side)
        assert m.magnitude.shape == (2, side, side)
        assert (m.magnitude >= 0).all() and m.magnitude.max() > 0
    every = modulation_maps(model, x, stages=[2, -1], all_blocks=True)
    assert [(m.stage, m.block) for m in every] == [(2, 0), (2, 1), (3, 0)]
    assert _no_hooks(model)


def test_maps_shapes_1d_and_3d():
    model1d = focalmod.create_model("focalnet1d_tiny", in_chans=8, **SMALL)
    maps = modulation_maps(model1d, torch.randn(2, 8, 128), stages=[0, -1])
    assert [m.gates.shape for m in maps] == [(2, 3, 32), (2, 3, 4)]
    assert [m.magnitude.shape for m in maps] == [(2, 32), (2, 4)]
    model3d = focalmod.create_model("focalnet3d_tiny", **SMALL)
    (last,) = modulation_maps(model3d, torch.randn(1, 1, 32, 32, 32), stages=[-1])
    assert last.gates.shape == (1, 3, 1, 1, 1) and last.magnitude.shape == (1, 1, 1, 1)


def test_magnitude_is_channel_norm_of_the_modulator():
    module = FocalModulation2d(8, focal_level=3).eval()
    x = torch.randn(2, 8, 9, 7)
    _, expected = module(x, return_maps=True)
    (maps,) = modulation_maps(module, x)
    torch.testing.assert_close(maps.magnitude, expected["modulator"].norm(dim=1))
    torch.testing.assert_close(maps.gates, expected["gates"])
    assert maps.focal_level == 3


def test_hooks_removed_and_modes_restored_even_on_error():
    model = focalmod.create_model("focalnet_tiny_srf", **SMALL).train()
    model.layers[0].eval()
    with pytest.raises(ValueError, match="expects input of shape"):
        modulation_maps(model, torch.randn(1, 4, 64, 64))
    modulation_maps(model, torch.randn(1, 3, 64, 64))
    assert _no_hooks(model)
    assert model.training and model.layers[1].blocks[0].training
    assert not model.layers[0].training and not model.layers[0].blocks[0].modulation.training
    assert not any(torch.is_tensor(v) for m in model.modules() for v in vars(m).values())


def test_bad_arguments():
    model = focalmod.create_model("focalnet_tiny_srf", **SMALL)
    with pytest.raises(ValueError, match="out of range for a model with 4 stages"):
        modulation_maps(model, torch.randn(1, 3, 64, 64), stages=[4])
    with pytest.raises(ValueError, match="contains no FocalModulation"):
        modulation_maps(torch.nn.Conv2d(3, 3, 1), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        quantile_mask(torch.rand(1, 4, 4), 1.5)


def test_quantile_mask_keeps_the_top_decile():
    magnitude = torch.arange(200.0).view(2, 10, 10)
    mask = quantile_mask(magnitude, 0.9)
    assert mask.shape == magnitude.shape and mask.dtype == torch.bool
    assert mask.sum(dim=(1, 2)).tolist() == [10, 10]
    assert mask[0, 9].all() and not mask[0, 8].any()


@pytest.mark.parametrize("spatial", ["2d", "1d"])
def test_figure_is_a_png(tmp_path, spatial):
    if spatial == "2d":
        model, x = focalmod.create_model("focalnet_tiny_srf", **SMALL), torch.rand(1, 3, 64, 64)
    else:
        model, x = focalmod.create_model("focalnet1d_tiny", in_chans=8, **SMALL), torch.rand(1, 8, 64)
    maps = modulation_maps(model, x)
    path = plot_modulation_maps(x, maps, tmp_path / "sub" / "fig.png", title="test", spectrogram=spatial == "1d")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with Image.open(path) as im:
        assert im.size[0] > im.size[1] > 100  # 4 rows x 5 columns of panels


def test_cli_writes_figure_and_metrics(tmp_path, capsys):
    image = tmp_path / "img.png"
    Image.fromarray((np.random.rand(40, 50, 3) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "fig.png"
    args = ["--image", str(image), "--size", "64", *SMALL_ARGS, "--num-classes", "7"]
    viz_main([*args, "--figure", str(out), "--out", str(tmp_path / "run"), "--stage", "-1"])
    assert out.stat().st_size > 2000
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [b["stage"] for b in metrics["blocks"]] == [3]
    assert metrics["blocks"][0]["map_size"] == [2, 2] and len(metrics["top5"]) == 5
    assert (tmp_path / "run" / "config.yaml").is_file()
    read_metrics(tmp_path / "run" / "metrics.json")  # the shared schema
    assert metrics["metric"] == {"name": "top1_probability", "value": metrics["top5"][0]["prob"]}
    assert "top-1 class" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.png", "--image: file not found"),
        (lambda d: (d / "x.png").write_text("not an image") and d / "x.png", "--image: cannot read"),
    ],
)
def test_cli_bad_image_is_one_clear_error(tmp_path, capsys, make, message):
    path = make(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_main(viz_main, ["--image", str(path), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
