"""COCO detection and instance segmentation: fit a detector, validate it with COCOeval, detect in new images, export.

    python -m tasks.coco fit                                        # embedded default: synthetic shapes
    python -m tasks.coco validate --run runs/coco/<run>             # COCOeval on the run's validation split
    python -m tasks.coco predict --run runs/coco/<run> --inputs photos/ --draw 8      # detections.json (COCO)
    python -m tasks.coco export --run runs/coco/<run>               # ONNX, checked in onnxruntime
"""
from __future__ import annotations

from ..common import run_main
from ..common.verbs import TaskCommand
from . import export, predict, train, validate

COMMAND = TaskCommand.of("tasks.coco", __doc__, fit=train.TASK, validate=validate.TASK, predict=predict.TASK,
                         export=export.TASK)
main = COMMAND.main

if __name__ == "__main__":
    run_main(main)
