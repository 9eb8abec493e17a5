"""A trained segmentation run as the verbs apply it (validate, predict, export): the LightningModule with its weights,
the transform settings it trained with, and its data set's class and modality names, read from the run directory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import TaskError
from ..common.trained import TrainedRun
from .data import DataConfig, DecathlonDataset, data_config, read_decathlon
from .module import SegmentationModule


def data_root(trained: TrainedRun) -> Path:
    """The run's `--data`, or the synthetic set training wrote into its run directory."""
    return Path(trained.option("data")) if trained.option("data") else trained.dir / "data"


@dataclass
class Segmenter:
    """`module` (eval mode: the network `module.model`, sliding-window `module.infer`), `cfg`: the run's
    deterministic transforms, `class_names[i]`: label value i, `modalities`: the input channels' names, `trained`:
    the run it came from."""

    module: SegmentationModule
    cfg: DataConfig
    class_names: list[str]
    modalities: list[str]
    trained: TrainedRun

    @classmethod
    def from_run(cls, trained: TrainedRun) -> Segmenter:
        hp = trained.hparams
        if "model_name" not in hp or "num_classes" not in hp:
            raise TaskError(f"--run: {trained.checkpoint} is not a checkpoint of `python -m tasks.medical fit`")
        try:
            module = SegmentationModule(**hp)
            module.load_state_dict(trained.state_dict)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TaskError(f"--run: {trained.checkpoint} does not rebuild its {hp['model_name']}: {err}") from None
        try:
            cfg = data_config(trained.options, hp["num_classes"])
        except KeyError as err:
            raise TaskError(f"--run: {trained.dir / 'config.yaml'} lacks the data option {err} (not a "
                            "`python -m tasks.medical fit` run?)") from None
        dataset = cls._dataset(trained)
        if dataset is not None and dataset.num_classes == hp["num_classes"]:
            names, modalities = dataset.class_names, dataset.modalities
        else:  # the training data is gone (or changed): numbered names
            names = ["background", *(f"class{i}" for i in range(1, hp["num_classes"]))]
            modalities = [f"channel{i}" for i in range(hp["in_channels"])]
        return cls(module.eval(), cfg, names, modalities, trained)

    @staticmethod
    def _dataset(trained: TrainedRun) -> DecathlonDataset | None:
        try:
            return read_decathlon(data_root(trained))
        except TaskError:
            return None

    @property
    def hparams(self) -> dict[str, Any]:
        return self.trained.hparams

    @property
    def params_m(self) -> float:
        return sum(p.numel() for p in self.module.model.parameters()) / 1e6
