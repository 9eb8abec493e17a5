"""Image-folder classification (ImageNet), the reference task:
`python -m tasks.imagenet fit | validate | predict | export` (`python -m tasks.imagenet.train` is `fit`)."""
