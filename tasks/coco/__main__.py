"""COCO detection and instance segmentation: fit a detector, validate it with COCOeval, detect in new images, export.

    python -m tasks.coco fit                                        # embedded default: synthetic shapes
    python -m tasks.coco validate --run runs/coco/<run>             # COCOeval on the run's validation split
    python -m tasks.coco predict --run runs/coco/<run> --inputs photos/ --draw 8      # detections.json (COCO)
    python -m tasks.coco export --run runs/coco/<run>               # ONNX, checked in onnxruntime
"""
from __future__ import annotations

from typing import Any, Sequence

from ..common import run_main
from ..common.verbs import run_verbs, verb_task
from . import export, predict, train, validate

VERBS = {"fit": verb_task(train.TASK, "tasks.coco", "fit"), "validate": validate.TASK, "predict": predict.TASK,
         "export": export.TASK}


def main(argv: Sequence[str] | None = None) -> Any:
    """Run a verb; returns the content of its metrics.json. `argv` None: the command line."""
    return run_verbs("tasks.coco", __doc__, VERBS, argv)


if __name__ == "__main__":
    run_main(main)
