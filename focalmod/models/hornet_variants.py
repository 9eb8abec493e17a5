"""Named HorNet variants with the published numbers next to each config (torchvision style).

`params_m`: parameters with a 1000-class head, as in mmpretrain's HorNet table (T/S/B match the official README
rounded values). `gmacs`: mmpretrain/official `calc_flops.py` numbers at 224 (fvcore, multiply-add = 1; the GF
values include the custom FFT count). See `tests/test_hornet.py`.

Decision on the large models: the official README lists 209 M (L-7x7), 211 M (L-GF) and 216 M (L-GF@384). These
match neither a 1000-class head (194.54 / 196.29 / 201.81 M, what this module builds and records) nor the
21,841-class ImageNet-22k head (226.6 / 228.3 / 233.8 M); all three are consistent only with a ~10.3k-10.5k
class classifier. We record the 1000-class counts (mmpretrain/keras convention) for every model and keep the
README value in `notes`. GMACs for the large models are the README's (34.8 / 34.7 G; the head does not change
them noticeably).
"""
from __future__ import annotations

from ._registry import ModelSpec, imagenet_cfg, register_spec
from .hornet import HorNet

GF = ("dw7", "dw7", "gf", "gf")


# name: (embed_dim, mixers, params M (1000-class head), GMACs@224, drop_path_rate (TRAINING.md), notes)
_VARIANTS_2D = {
    "hornet_tiny_7x7": (64, "dw7", 22.41, 3.98, 0.2, ""),
    "hornet_tiny_gf": (64, GF, 22.99, 3.90, 0.2, ""),
    "hornet_small_7x7": (96, "dw7", 49.53, 8.83, 0.4, ""),
    "hornet_small_gf": (96, GF, 50.40, 8.71, 0.4, ""),
    "hornet_base_7x7": (128, "dw7", 87.26, 15.58, 0.5, ""),
    "hornet_base_gf": (128, GF, 88.42, 15.42, 0.5, ""),
    "hornet_large_7x7": (192, "dw7", 194.54, 34.8, 0.2, "README: 209M (not a 1k or 21,841-class head)"),
    "hornet_large_gf": (192, GF, 196.29, 34.7, 0.2, "README: 211M (not a 1k or 21,841-class head)"),
}

# Official release files (raoyongming/HorNet README, Tsinghua Cloud; official format, converted by
# focalmod.checkpoints.hornet). The links have no file name, so they are cached as <architecture>.<tag>.pth in
# torch.hub's checkpoint directory. No hash is published. ImageNet-22k heads: 21841 classes (the fall11 release the
# official code trains on; not verified against the files).
_OFFICIAL = "https://cloud.tsinghua.edu.cn/f/{}/?dl=1"
_FILES = {
    "hornet_tiny_7x7": "762f05c3c8cd4743b534", "hornet_tiny_gf": "395dd6c443ed4a339739",
    "hornet_small_7x7": "9d7043023da14e4b8b2e", "hornet_small_gf": "19eef725b2e64692b8b0",
    "hornet_base_7x7": "836ab04898c646c389ce", "hornet_base_gf": "60f706e36f6b4098a1f9",
    "hornet_large_7x7": "4de41e26cb254c28a61a", "hornet_large_gf": "8679b6acf63c41e285d9",
    "hornet_large_gf_img384": "f36957d46eef47da9c25",
}


def _weights(name: str) -> dict[str, dict]:
    if "large" in name:
        return {"in22k_official": dict(url=_OFFICIAL.format(_FILES[name]), num_classes=21841)}
    return {"in1k_official": dict(url=_OFFICIAL.format(_FILES[name]))}


for _name, (_dim, _mixers, _params, _gmacs, _dpr, _notes) in _VARIANTS_2D.items():
    register_spec(
        ModelSpec(
            _name, HorNet, dict(embed_dim=_dim, mixers=_mixers, drop_path_rate=_dpr), imagenet_cfg(pool_size=(7, 7)),
            _params, _gmacs, _notes, weights=_weights(_name),
        )
    )

# 384 fine-tuned large GF model (official `hornet_large_gf_img384`: GF grids (24, 13) / (12, 7)).
register_spec(
    ModelSpec(
        "hornet_large_gf_img384",
        HorNet,
        dict(embed_dim=192, mixers=GF, img_size=384, drop_path_rate=0.2),
        imagenet_cfg(input_size=(3, 384, 384), crop_pct=1.0, pool_size=(12, 12)),
        201.81,
        101.8,
        "README: 216M (not a 1k or 21,841-class head)",
        weights=_weights("hornet_large_gf_img384"),
    )
)

# 1D (spectrogram frames, `in_chans` = mel bins, input (B, C, L)) and 3D (volumes, (B, C, D, H, W)) versions of
# HorNet-T with the 7x7 mixer (7 / 7x7x7 depthwise), for controlled comparisons with focalnet1d/3d_tiny.
_VARIANTS_ND = {
    "hornet1d_tiny_7x7": (1, dict(in_chans=64), (64, 1024)),
    "hornet3d_tiny_7x7": (3, dict(in_chans=1), (1, 96, 96, 96)),
}
for _name, (_dims, _kwargs, _size) in _VARIANTS_ND.items():
    register_spec(
        ModelSpec(
            _name,
            HorNet,
            dict(_kwargs, spatial_dims=_dims, embed_dim=64, drop_path_rate=0.1),
            imagenet_cfg(input_size=_size, mean=None, std=None, interpolation=None, crop_pct=None),
        )
    )
