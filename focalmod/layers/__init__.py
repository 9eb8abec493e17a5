"""N-d building blocks: focal modulation, HorNet gnConv, the token-mixer block, downsample, norms, heads."""
from ._nd import conv_nd
from .classifier import ClassifierHead
from .downsample import Downsample
from .focal_modulation import FocalModulation, FocalModulation1d, FocalModulation2d, FocalModulation3d
from .focalnet_block import FocalNetBlock
from .gnconv import GlobalLocalFilter, GnConv, gnconv_dims
from .mixer_block import MixerBlock
from .norm import LayerNormNd

__all__ = [
    "ClassifierHead",
    "Downsample",
    "FocalModulation",
    "FocalModulation1d",
    "FocalModulation2d",
    "FocalModulation3d",
    "FocalNetBlock",
    "GlobalLocalFilter",
    "GnConv",
    "LayerNormNd",
    "MixerBlock",
    "conv_nd",
    "gnconv_dims",
]
