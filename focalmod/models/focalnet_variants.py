"""Named FocalNet variants with the published numbers next to each config (torchvision style).

`params_m`: reference table (measured from the official code; 22K models with a 1000-class head). base_iso has
87.256 M: its released checkpoint needs the in-modulation LayerNorms (issue #23), which the README's 87.2 omits.
`gmacs`: official analytic `flops()` at the input size of `pretrained_cfg` (multiply-add = 1, the papers'
"GFLOPs"): conv/linear MACs (bias ignored except `h`), plus one per element for each LayerNorm, each focal gate
multiply and the global gate; stem/downsamples counted at kernel = stride (also the overlapping ones of L/XL/H);
GELU, residual adds, layer scale and the global mean not counted. fvcore's conv+linear count plus those
element-wise terms reproduces it (`tests/test_focalnet_variants.py`).
Decision (reference focalnet.md Sec. 6): `focalnet_large_fl4` sets `normalize_modulator=True` like the official
yaml and FocalNet-DINO; timm's entry does not, so timm weights for it give different logits than the official
model; `focalnet_xlarge_fl4` follows the same DINO config for consistency (the classification yaml omits it).
Loading timm-format weights into a model with `normalize_modulator=True` warns; pass `normalize_modulator=False`
to `create_model` to reproduce timm's outputs.
"""
from __future__ import annotations

from ._registry import ModelSpec, imagenet_cfg, register_spec
from .focalnet import FocalNet

T, S = (2, 2, 6, 2), (2, 2, 18, 2)
LARGE = dict(use_conv_embed=True, use_post_norm=True, layerscale_value=1e-4)


# name: (constructor kwargs, params M, GMACs@224 (None where no official number), drop_path_rate)
_VARIANTS_2D = {
    "focalnet_tiny_srf": (dict(embed_dim=96, depths=T, focal_levels=2), 28.43, 4.41, 0.2),
    "focalnet_tiny_lrf": (dict(embed_dim=96, depths=T, focal_levels=3), 28.65, 4.49, 0.2),
    "focalnet_small_srf": (dict(embed_dim=96, depths=S, focal_levels=2), 49.89, 8.61, 0.3),
    "focalnet_small_lrf": (dict(embed_dim=96, depths=S, focal_levels=3), 50.34, 8.73, 0.3),
    "focalnet_base_srf": (dict(embed_dim=128, depths=S, focal_levels=2), 88.15, 15.26, 0.5),
    "focalnet_base_lrf": (dict(embed_dim=128, depths=S, focal_levels=3), 88.75, 15.42, 0.5),
    "focalnet_large_fl3": (dict(embed_dim=192, depths=S, focal_levels=3, focal_windows=5, **LARGE), 207.10, 34.83, 0.5),
    "focalnet_large_fl4": (
        dict(embed_dim=192, depths=S, focal_levels=4, normalize_modulator=True, **LARGE), 207.28, 34.88, 0.5),
    "focalnet_xlarge_fl3": (
        dict(embed_dim=256, depths=S, focal_levels=3, focal_windows=5, **LARGE), 366.08, 61.54, 0.5),
    "focalnet_xlarge_fl4": (
        dict(embed_dim=256, depths=S, focal_levels=4, normalize_modulator=True, **LARGE), 366.32, 61.61, 0.5),
    "focalnet_huge_fl3": (
        dict(embed_dim=352, depths=S, focal_levels=3, use_post_norm_in_modulation=True, **LARGE), 686.57, 115.16, 0.5),
    "focalnet_huge_fl4": (
        dict(embed_dim=352, depths=S, focal_levels=4, use_post_norm_in_modulation=True, **LARGE), 689.28, 115.87, 0.5),
    # Isotropic (one stage, patch 16); params/GFLOPs as in the official README.
    "focalnet_tiny_iso": (dict(embed_dim=192, depths=(12,), focal_levels=3, patch_size=16), 5.9, 1.1, 0.2),
    "focalnet_small_iso": (dict(embed_dim=384, depths=(12,), focal_levels=3, patch_size=16), 22.4, 4.3, 0.2),
    "focalnet_base_iso": (
        dict(embed_dim=768, depths=(12,), focal_levels=3, patch_size=16, use_post_norm=True,
             use_post_norm_in_modulation=True, layerscale_value=1e-4), 87.2, 16.9, 0.2),
}

# Weight files (reference focalnet.md Sec. 5). Tag order = preference; the first is the default.
# * ms_in1k / ms_in22k: timm's Hub repositories (safetensors, timm keys), the same files `timm.create_model(
#   "focalnet_<v>", pretrained=True)` caches, so one Hub cache serves both libraries.
# * ms_in1k_hf: the HF transformers repositories (`microsoft/focalnet-*`, HF keys; timm's Hub loader takes
#   model.safetensors, else pytorch_model.bin).
# * ms_in1k_official: the official release files (`microsoft/FocalNet` README). The Azure container is reported
#   private since 2023-05-31 (microsoft/FocalNet#43); with a copy of the file use pretrained_cfg_overlay=dict(file=...).
# No file hash is recorded: none is published for these files (a Hub download is checked against the Hub's own).
_OFFICIAL_URL = "https://projects4jw.blob.core.windows.net/focalnet/release/classification/{}.pth"
_HF_TRANSFORMERS = {"tiny_srf": "tiny", "tiny_lrf": "tiny-lrf", "small_srf": "small", "small_lrf": "small-lrf",
                    "base_srf": "base", "base_lrf": "base-lrf"}
_IN22K = dict(num_classes=21842, input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0)
_IN22K_HEADS = {"huge_fl3": dict(num_classes=21842), "huge_fl4": dict(num_classes=0)}  # huge: 224, H-fl4 headless


def _weights(name: str) -> dict[str, dict]:
    variant = name[len("focalnet_") :]
    if variant in _HF_TRANSFORMERS:
        return {
            "ms_in1k": dict(hf_hub_id=f"timm/{name}.ms_in1k", hf_hub_filename="model.safetensors"),
            "ms_in1k_hf": dict(hf_hub_id=f"microsoft/focalnet-{_HF_TRANSFORMERS[variant]}"),
            "ms_in1k_official": dict(url=_OFFICIAL_URL.format(name)),
        }
    if variant.endswith("_iso"):
        return {"ms_in1k_official": dict(url=_OFFICIAL_URL.format(f"{name}_16"))}
    return {"ms_in22k": dict(hf_hub_id=f"timm/{name}.ms_in22k", hf_hub_filename="model.safetensors",
                             **_IN22K_HEADS.get(variant, _IN22K))}


for _name, (_kwargs, _params, _gmacs, _dpr) in _VARIANTS_2D.items():
    _pool = (14, 14) if _name.endswith("_iso") else (7, 7)  # pool_size: the final map at 224 (stride 16 / 32)
    register_spec(
        ModelSpec(_name, FocalNet, dict(_kwargs, drop_path_rate=_dpr), imagenet_cfg(pool_size=_pool), _params, _gmacs,
                  weights=_weights(_name))
    )

# 1D: sequences / spectrogram frames, `in_chans` = features per step (e.g. 64 mel bins), input (B, C, L).
# 3D: volumes / video clips, input (B, C, D, H, W). Same blocks and code path as 2D; no published numbers.
_VARIANTS_ND = {
    "focalnet1d_tiny": (1, dict(in_chans=64, embed_dim=96, depths=T, focal_levels=2), (64, 1024)),
    "focalnet1d_small": (1, dict(in_chans=64, embed_dim=96, depths=S, focal_levels=3), (64, 1024)),
    "focalnet3d_tiny": (3, dict(in_chans=1, embed_dim=48, depths=T, focal_levels=2), (1, 96, 96, 96)),
    "focalnet3d_small": (3, dict(in_chans=1, embed_dim=48, depths=S, focal_levels=3), (1, 96, 96, 96)),
}
for _name, (_dims, _kwargs, _size) in _VARIANTS_ND.items():
    register_spec(
        ModelSpec(
            _name,
            FocalNet,
            dict(_kwargs, spatial_dims=_dims, drop_path_rate=0.1),
            imagenet_cfg(input_size=_size, mean=None, std=None, interpolation=None, crop_pct=None),
        )
    )
