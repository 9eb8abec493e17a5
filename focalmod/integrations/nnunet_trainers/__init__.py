"""The folder `nnUNet_extTrainer` points at: nnU-Net imports each module in it by its bare name and looks for the
trainer class there (`python -m focalmod.integrations.nnunet trainer-path` prints this folder)."""
