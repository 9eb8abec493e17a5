"""ImageNet classification, the reference task: `python -m tasks.imagenet.train` / `tasks.imagenet.eval`."""
