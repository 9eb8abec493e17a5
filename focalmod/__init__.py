"""focalmod: focal modulation (FocalNets, Yang et al. 2022) as an N-d building block."""
from .checkpoints import load_checkpoint
from .layers import FocalModulation, FocalModulation1d, FocalModulation2d, FocalModulation3d
from .models import create_model, list_models
from .models.optimize import optimize

__version__ = "0.1.0"

__all__ = [
    "FocalModulation",
    "FocalModulation1d",
    "FocalModulation2d",
    "FocalModulation3d",
    "__version__",
    "create_model",
    "list_models",
    "load_checkpoint",
    "optimize",
]
