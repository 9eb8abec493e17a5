"""Medical image segmentation (Focal-UNet, MONAI UNet, SwinUNETR on Decathlon folders): fit a network, validate
it, segment new NIfTI images, export it.

    python -m tasks.medical fit                                     # embedded default: synthetic 3D volumes
    python -m tasks.medical validate --run runs/medical/<run>       # Dice per class on its validation cases
    python -m tasks.medical predict --run runs/medical/<run> --inputs scans/
    python -m tasks.medical export --run runs/medical/<run>         # MONAI bundle + ONNX
"""
from __future__ import annotations

from ..common import run_main
from ..common.verbs import TaskCommand
from . import export, predict, train, validate

COMMAND = TaskCommand.of("tasks.medical", __doc__, fit=train.TASK, validate=validate.TASK, predict=predict.TASK,
                         export=export.TASK)
main = COMMAND.main

if __name__ == "__main__":
    run_main(main)
