"""COCO detection and instance segmentation with a FocalNet (or Swin / ConvNeXt / ResNet-50) + FPN backbone:
`python -m tasks.coco fit | validate | predict | export` (`python -m tasks.coco.train` is `fit`)."""
