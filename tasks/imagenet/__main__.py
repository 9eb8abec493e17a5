"""Image-folder classification, the reference task: fit a classifier, validate it, label new images, export it.

    python -m tasks.imagenet fit                                    # embedded default: the digits set, a few minutes
    python -m tasks.imagenet validate                               # the newest digits run on its val split
    python -m tasks.imagenet predict --run runs/imagenet/<run> --inputs my_photos/
    python -m tasks.imagenet export --run runs/imagenet/<run>       # timm / Hugging Face folder + ONNX
"""
from __future__ import annotations

from typing import Any, Sequence

from ..common import run_main
from ..common.verbs import run_verbs, verb_task
from . import export, predict, train, validate

VERBS = {"fit": verb_task(train.TASK, "tasks.imagenet", "fit"), "validate": validate.TASK, "predict": predict.TASK,
         "export": export.TASK}


def main(argv: Sequence[str] | None = None) -> Any:
    """Run a verb; returns the content of its metrics.json. `argv` None: the command line."""
    return run_verbs("tasks.imagenet", __doc__, VERBS, argv)


if __name__ == "__main__":
    run_main(main)
