"""N-d building blocks: focal modulation, FocalNet block, downsample, channels-first LayerNorm."""
from ._nd import conv_nd
from .classifier import ClassifierHead
from .downsample import Downsample
from .focal_modulation import FocalModulation, FocalModulation1d, FocalModulation2d, FocalModulation3d
from .focalnet_block import FocalNetBlock
from .gnconv import GlobalLocalFilter, GnConv, gnconv_dims  # noqa: F401  (HorNet gnConv)
from .norm import LayerNormNd

__all__ = [
    "ClassifierHead",
    "Downsample",
    "FocalModulation",
    "FocalModulation1d",
    "FocalModulation2d",
    "FocalModulation3d",
    "FocalNetBlock",
    "LayerNormNd",
    "conv_nd",
]
