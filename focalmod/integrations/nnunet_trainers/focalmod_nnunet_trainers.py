"""Imported by nnU-Net as a top-level module from the `nnUNet_extTrainer` folder; the trainers live in
`focalmod.integrations.nnunet`."""
from focalmod.integrations.nnunet import *  # noqa: F401,F403
