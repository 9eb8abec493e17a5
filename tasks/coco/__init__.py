"""COCO detection and instance segmentation with a FocalNet (or Swin / ConvNeXt / ResNet-50) + FPN backbone.

`python -m tasks.coco.train` trains torchvision's Mask R-CNN / Faster R-CNN through Lightning and evaluates with
COCOeval; `python -m tasks.coco.eval --checkpoint X` evaluates a checkpoint on a split.
"""
