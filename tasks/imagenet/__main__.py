"""Image-folder classification, the reference task: fit a classifier, validate it, label new images, export it.

    python -m tasks.imagenet fit                                    # embedded default: the digits set, a few minutes
    python -m tasks.imagenet validate                               # the newest digits run on its val split
    python -m tasks.imagenet predict --run runs/imagenet/<run> --inputs my_photos/
    python -m tasks.imagenet export --run runs/imagenet/<run>       # timm / Hugging Face folder + ONNX
"""
from __future__ import annotations

from ..common import run_main
from ..common.verbs import TaskCommand
from . import export, predict, train, validate

COMMAND = TaskCommand.of("tasks.imagenet", __doc__, fit=train.TASK, validate=validate.TASK, predict=predict.TASK,
                         export=export.TASK)
main = COMMAND.main

if __name__ == "__main__":
    run_main(main)
