"""gnConv and the Global-Local Filter: parity with the official forward (re-derived here from the reference's
order of operations, functional, official weight layout), N-d consistency, gradients, resizing, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from focalmod.layers import GlobalLocalFilter, GnConv, gnconv_dims


# ---- official forward, re-derived from reference hornet_volo.md Sec. 1-2 (2D, channels-first, 1x1 as conv) ----
def ln_cf(x, w, b, eps=1e-6):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return w[:, None, None] * ((x - u) / torch.sqrt(s + eps)) + b[:, None, None]


def ref_gf(x, p, prefix):
    x = ln_cf(x, p[prefix + "pre_norm.weight"], p[prefix + "pre_norm.bias"])
    x1, x2 = torch.chunk(x, 2, dim=1)
    x1 = F.conv2d(x1, p[prefix + "dw.weight"], padding=1, groups=x1.shape[1])
    B, C, a, b = x2.shape
    x2 = torch.fft.rfft2(x2.to(torch.float32), dim=(2, 3), norm="ortho")
    w = p[prefix + "complex_weight"]
    if w.shape[1:3] != x2.shape[2:4]:
        w = F.interpolate(w.permute(3, 0, 1, 2), size=x2.shape[2:4], mode="bilinear", align_corners=True)
        w = w.permute(1, 2, 3, 0)
    x2 = torch.fft.irfft2(x2 * torch.view_as_complex(w.contiguous()), s=(a, b), dim=(2, 3), norm="ortho")
    x = torch.cat([x1.unsqueeze(2), x2.unsqueeze(2)], dim=2).reshape(B, 2 * C, a, b)
    return ln_cf(x, p[prefix + "post_norm.weight"], p[prefix + "post_norm.bias"])


def ref_gnconv(x, p, prefix, order, gf, s=1.0 / 3.0):
    C = x.shape[1]
    dims = [C // 2**i for i in range(order)]
    dims.reverse()
    fused = F.conv2d(x, p[prefix + "proj_in.weight"], p[prefix + "proj_in.bias"])
    pwa, abc = torch.split(fused, (dims[0], sum(dims)), dim=1)
    if gf:
        dw_abc = ref_gf(abc, p, prefix + "dwconv.")
    else:
        dw_abc = F.conv2d(abc, p[prefix + "dwconv.weight"], p[prefix + "dwconv.bias"], padding=3, groups=sum(dims))
    dw_list = torch.split(dw_abc * s, dims, dim=1)
    x = pwa * dw_list[0]
    for i in range(order - 1):
        x = F.conv2d(x, p[f"{prefix}pws.{i}.weight"], p[f"{prefix}pws.{i}.bias"]) * dw_list[i + 1]
    return F.conv2d(x, p[prefix + "proj_out.weight"], p[prefix + "proj_out.bias"])


def official_params(module, prefix=""):
    """Our state dict in the official layout: Linear weights (out, in) -> 1x1 conv (out, in, 1, 1)."""
    return {prefix + k: (v[..., None, None] if k.endswith("weight") and v.ndim == 2 else v)
            for k, v in module.state_dict().items()}


def randomize_(module):
    """Non-trivial LayerNorm affine and GF weights so that every parameter matters."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else torch.randn_like(p) * 0.1)
            elif name.endswith("complex_weight"):
                p.normal_(0, 0.5)
    return module


# ---- parity ----
@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("size", [(7, 9), (4, 4)])
def test_gnconv_dw7_matches_official(order, size):
    torch.manual_seed(0)
    m = randomize_(GnConv(32, order)).eval()
    x = torch.randn(2, 32, *size)
    ref = ref_gnconv(x, official_params(m), "", order, gf=False)
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (8, 7), (11, 6), (3, 3)])  # (8, 8) is the weight's own grid
def test_gnconv_gf_matches_official_incl_resized_weight(size):
    torch.manual_seed(0)
    m = randomize_(GnConv(32, order=3, mixer="gf", gf_size=(8, 5))).eval()
    x = torch.randn(2, 32, *size)
    ref = ref_gnconv(x, official_params(m), "", 3, gf=True)
    out = m(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_official_channel_split():
    assert gnconv_dims(64, 2) == [32, 64]
    assert gnconv_dims(512, 5) == [32, 64, 128, 256, 512]
    m = GnConv(512, 5)
    assert m.abc_dim == 992 and m.dwconv.groups == 992 and m.dwconv.kernel_size == (7, 7)
    assert [(pw.in_features, pw.out_features) for pw in m.pws] == [(32, 64), (64, 128), (128, 256), (256, 512)]
    gf = GnConv(384, 4, mixer="gf", gf_size=(14, 8))
    assert gf.dwconv.complex_weight.shape == (360, 14, 8, 2)  # (sum(dims)/2, h, w, re/im)


def test_gf_interleaves_local_and_global_channels():
    torch.manual_seed(0)
    gf = GlobalLocalFilter(8, (4, 3)).eval()
    with torch.no_grad():
        gf.complex_weight.zero_()  # global half -> 0 before post_norm
    pre = gf.pre_norm(torch.randn(1, 8, 4, 4))
    gf.pre_norm = torch.nn.Identity()
    gf.post_norm = torch.nn.Identity()
    out = gf(pre)
    torch.testing.assert_close(out[:, 1::2], torch.zeros_like(out[:, 1::2]))
    torch.testing.assert_close(out[:, 0::2], gf.dw(pre[:, :4]))


# ---- N-d ----
@pytest.mark.parametrize("mixer", ["dw7", "gf"])
@pytest.mark.parametrize("spatial_dims,size", [(1, (10,)), (2, (6, 5)), (3, (4, 5, 3))])
def test_nd_shapes_and_gradients(spatial_dims, size, mixer):
    torch.manual_seed(0)
    gf_size = (*[3] * (spatial_dims - 1), 2)
    m = GnConv(16, 3, spatial_dims, mixer=mixer, gf_size=gf_size)
    x = torch.randn(2, 16, *size, requires_grad=True)
    out = m(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_gf_gradcheck_float64_3d_resized():
    torch.manual_seed(0)
    m = GlobalLocalFilter(4, (2, 3, 2), spatial_dims=3).double()
    x = torch.randn(1, 4, 3, 2, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5)


def _transfer(src, dst, unsqueeze_dim):
    """Copy a lower-dimensional module's weights into a higher-dimensional one (size-1 extra axis)."""
    sd = {}
    for k, v in src.state_dict().items():
        t = dst.state_dict()[k]
        if v.shape == t.shape:
            sd[k] = v
        elif k.endswith("complex_weight"):
            sd[k] = v.unsqueeze(unsqueeze_dim)
        else:  # depthwise kernel: put it in the middle slice of the new axis, zeros elsewhere
            w = torch.zeros_like(t)
            w.select(unsqueeze_dim, t.shape[unsqueeze_dim] // 2).copy_(v)
            sd[k] = w
    dst.load_state_dict(sd)


@pytest.mark.parametrize("mixer", ["dw7", "gf"])
def test_3d_with_depth_one_equals_2d(mixer):
    torch.manual_seed(0)
    m2 = randomize_(GnConv(16, 3, 2, mixer=mixer, gf_size=(5, 3))).eval()
    m3 = GnConv(16, 3, 3, mixer=mixer, gf_size=(1, 5, 3)).eval()
    _transfer(m2, m3, unsqueeze_dim=1 if mixer == "gf" else 2)
    x = torch.randn(2, 16, 5, 4)  # width 4 -> rfft grid (5, 3): no resize in 2D, (1, 5, 3) in 3D
    torch.testing.assert_close(m3(x.unsqueeze(2)).squeeze(2), m2(x), atol=1e-5, rtol=1e-5)


def test_1d_equals_2d_with_height_one():
    torch.manual_seed(0)
    m1 = randomize_(GnConv(16, 2, 1, mixer="gf", gf_size=(4,))).eval()
    m2 = GnConv(16, 2, 2, mixer="gf", gf_size=(1, 4)).eval()
    _transfer(m1, m2, unsqueeze_dim=1)
    x = torch.randn(2, 16, 9)  # L=9 -> grid 5 != 4: exercises the linear resize in 1D, bilinear in 2D
    torch.testing.assert_close(m2(x.unsqueeze(2)).squeeze(2), m1(x), atol=1e-5, rtol=1e-5)


def test_return_maps_protocol_matches_focal_modulation():
    m = GnConv(16, 2)
    out, maps = m(torch.randn(1, 16, 4, 4), return_maps=True)
    assert out.shape == (1, 16, 4, 4) and maps == {}
    out_cl, _ = m.forward_channels_last(torch.randn(1, 4, 4, 16))
    assert out_cl.shape == (1, 4, 4, 16)


# ---- errors ----
def test_dim_not_divisible_by_two_pow_order_minus_one():
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(order-1\) = 16 for order 5, got dim=40"):
        GnConv(40, order=5)
    GnConv(48, order=5)  # 48 / 16 = 3 is fine


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mixer="dw9"), "mixer must be one of"),
        (dict(mixer="gf"), "needs gf_size"),
        (dict(mixer="gf", gf_size=(4,)), "must be 2 positive ints"),
        (dict(spatial_dims=4), "spatial_dims must be 1, 2 or 3"),
        (dict(order=0), "order must be a positive int"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GnConv(32, **{"order": 3, **kwargs})


def test_bad_input_shape():
    m = GnConv(32, 3)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 32, H, W\), got \(2, 16, 4, 4\)"):
        m(torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match=r"expects input of shape"):
        m(torch.randn(2, 32, 4))
