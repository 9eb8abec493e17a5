"""Bad inputs give one clear error naming what was expected (issue #13 item 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import focalmod
from focalmod import FocalModulation2d

SMALL = {
    "focalnet_tiny_srf": dict(embed_dim=16, depths=(1, 1, 1, 1), num_classes=4),
    "hornet_tiny_7x7": dict(embed_dim=16, depths=(1, 1, 1, 1), num_classes=4),
    "focal_unet_tiny_lrf": dict(feature_size=16, depths=(1, 1, 1, 1), num_classes=4),
}


@pytest.fixture(params=list(SMALL), scope="module")
def model(request):
    return focalmod.create_model(request.param, **SMALL[request.param]).eval()


def test_integer_images_name_the_float_dtype_expected(model):
    images = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"floating-point input of dtype torch.float32 .* got torch.uint8"):
        model(images)
    with pytest.raises(TypeError, match=r"got torch.int64"):
        model(images.long())


def test_double_input_names_the_dtype_and_works_with_a_double_model(model):
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"expects input of dtype torch.float32 .* got torch.float64"):
        model(x)
    with torch.no_grad():
        assert model.double()(x).dtype == torch.float64
    model.float()


def test_numpy_arrays_and_lists_ask_for_a_tensor(model):
    array = np.zeros((1, 3, 64, 64), dtype=np.float32)
    with pytest.raises(TypeError, match=r"expects a torch.Tensor of shape \(B, 3, H, W\), got numpy.ndarray"):
        model(array)
    with pytest.raises(TypeError, match=r"expects a torch.Tensor .* got builtins.list"):
        model(array.tolist())


def test_layers_check_too():
    module = FocalModulation2d(8)
    with pytest.raises(TypeError, match=r"FocalModulation2d expects a floating-point input"):
        module(torch.ones(1, 8, 4, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        module(np.ones((1, 8, 4, 4), dtype=np.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():  # autocast: any float input is fine
        assert module(torch.ones(1, 8, 4, 4, dtype=torch.bfloat16)).shape == (1, 8, 4, 4)
