"""Networks composed from `focalmod.layers` and the model registry."""
from . import focal_unet_variants, focalnet_variants, hornet_variants, upernet_variants  # noqa: F401  (register names)
from ._registry import ModelSpec, create_model, get_spec, list_models, register_spec
from .backbone import HierarchicalBackbone, Stage
from .baselines import build_baseline  # noqa: F401  (ours by name, anything else from timm, e.g. VOLO)
from .focal_unet import FocalUNet
from .focalnet import FocalNet, FocalNetStage
from .hornet import HorNet

__all__ = [
    "FocalNet", "FocalNetStage", "FocalUNet", "HierarchicalBackbone", "HorNet", "ModelSpec", "Stage", "create_model",
    "get_spec", "list_models", "register_spec",
]
