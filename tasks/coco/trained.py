"""A trained detector as the verbs apply it: the `DetectionModule` rebuilt from a `fit` checkpoint's
hyper-parameters alone (the backbone's initial weights are not re-read), with the checkpoint's weights."""
from __future__ import annotations

from pathlib import Path

from ..common import TaskError
from ..common.trained import TrainedRun
from .module import DetectionModule


def load_detector(path: Path | str) -> tuple[TrainedRun, DetectionModule]:
    """The run `path` names (a run directory or a .ckpt in it) and its module, in eval mode."""
    trained = TrainedRun.open(path)
    hp = dict(trained.hparams)
    if "detector" not in hp:
        raise TaskError(f"--run: {trained.checkpoint} is not a checkpoint of `python -m tasks.coco fit` (no detector "
                        "hyper-parameters)")
    hp["detector"] = {**hp["detector"], "backbone_checkpoint": None}
    module = DetectionModule(**hp)
    try:
        module.load_state_dict(trained.state_dict, strict=True)
    except RuntimeError as err:
        raise TaskError(f"--run: {trained.checkpoint} does not match its own config: {str(err)[:300]}") from None
    return trained, module.eval()
