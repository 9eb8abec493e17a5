"""Sound classification (ESC-50 layout), the sound task's verbs: fit a classifier per fold, score it, label new
recordings, export it.

    python -m tasks.audio fit                                   # = python -m tasks.audio.esc50 (synthetic set)
    python -m tasks.audio fit --data /data/ESC-50-master --folds 1
    python -m tasks.audio validate --run runs/esc50/<run>       # a fold's model(s) on its test fold (or --data)
    python -m tasks.audio predict --run runs/esc50/<run> --inputs recordings/
    python -m tasks.audio export --run runs/esc50/<run>         # ONNX (waveform in) + timm / Hugging Face folder

A run trains one model, or an ensemble, per held-out fold; the verbs that apply it take `--fold` (default: the first
trained fold).
"""
from __future__ import annotations

from ..common import run_main
from ..common.verbs import TaskCommand
from . import esc50, export, predict, validate

COMMAND = TaskCommand.of("tasks.audio", __doc__, fit=esc50.TASK, validate=validate.TASK, predict=predict.TASK,
                         export=export.TASK)
main = COMMAND.main

if __name__ == "__main__":
    run_main(main)
