"""Optional glue to frameworks users run (imported only on use; each module needs its framework installed).

- `focalmod.integrations.nnunet`: Focal-UNet trainers for nnU-Net v2 (`pip install nnunetv2`).
"""
