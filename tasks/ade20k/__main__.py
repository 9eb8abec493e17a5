"""Semantic segmentation with UPerNet on the ADE20K layout: fit, validate, segment new images, export.

    python -m tasks.ade20k fit                                      # embedded default: synthetic scenes, minutes
    python -m tasks.ade20k validate --run runs/ade20k/<run> --multi-scale
    python -m tasks.ade20k predict --run runs/ade20k/<run> --inputs photos/      # palette PNG masks
    python -m tasks.ade20k export --run runs/ade20k/<run>           # ONNX, checked in onnxruntime
"""
from __future__ import annotations

from ..common import run_main
from ..common.verbs import TaskCommand
from . import export, predict, train, validate

COMMAND = TaskCommand.of("tasks.ade20k", __doc__, fit=train.TASK, validate=validate.TASK, predict=predict.TASK,
                         export=export.TASK)
main = COMMAND.main

if __name__ == "__main__":
    run_main(main)
