"""Medical segmentation task: Decathlon data, MONAI transforms/metrics, FocalUNet vs UNet vs SwinUNETR."""
