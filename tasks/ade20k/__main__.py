"""Semantic segmentation with UPerNet on the ADE20K layout: fit, validate, segment new images, export.

    python -m tasks.ade20k fit                                      # embedded default: synthetic scenes, minutes
    python -m tasks.ade20k validate --run runs/ade20k/<run> --multi-scale
    python -m tasks.ade20k predict --run runs/ade20k/<run> --inputs photos/      # palette PNG masks
    python -m tasks.ade20k export --run runs/ade20k/<run>           # ONNX, checked in onnxruntime
"""
from __future__ import annotations

from typing import Any, Sequence

from ..common import run_main
from ..common.verbs import run_verbs, verb_task
from . import export, predict, train, validate

VERBS = {"fit": verb_task(train.TASK, "tasks.ade20k", "fit"), "validate": validate.TASK, "predict": predict.TASK,
         "export": export.TASK}


def main(argv: Sequence[str] | None = None) -> Any:
    """Run a verb; returns the content of its metrics.json. `argv` None: the command line."""
    return run_verbs("tasks.ade20k", __doc__, VERBS, argv)


if __name__ == "__main__":
    run_main(main)
