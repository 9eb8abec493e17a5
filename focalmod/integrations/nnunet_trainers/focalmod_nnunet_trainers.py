"""nnU-Net imports this module to find focalmod's trainers: from the `nnUNet_extTrainer` folder (nnunetv2 2.8), or as
the copy `focalmod.integrations.nnunet.install_trainers` writes into nnunetv2's own trainer package (2.7). The
trainers live in `focalmod.integrations.nnunet`."""
from focalmod.integrations.nnunet import *  # noqa: F401,F403
