"""Focal-UNet inside nnU-Net v2: trainers whose network is a `FocalUNet`, everything else nnU-Net's own.

nnU-Net plugs a network in through one method, `nnUNetTrainer.build_network_architecture`; its data loading,
augmentation, Dice+CE loss with deep supervision, SGD schedule, sliding-window predictor and `nnUNetv2_predict`
stay as they are. nnU-Net finds trainers outside its package through the `nnUNet_extTrainer` folder, which is
`TRAINER_FOLDER` (print it with ``python -m focalmod.integrations.nnunet trainer-path``)::

    export nnUNet_extTrainer=$(python -m focalmod.integrations.nnunet trainer-path)
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerFocalUNet -device cpu
    nnUNetv2_predict -i imagesTs -o pred -d 501 -c 3d_fullres -f 0 -tr nnUNetTrainerFocalUNet -device cpu

(``python -m focalmod.integrations.nnunet train|predict ...`` sets the variable and runs the same two commands.)
nnunetv2 2.7 (the version `focalmod[nnunet]` installs: 2.8 pins a timm below focalmod's) has no `nnUNet_extTrainer`
and finds trainers only inside its own package, where nnU-Net's documentation puts custom trainers:
`install_trainers` (``python -m focalmod.integrations.nnunet install-trainers``; `train` and `predict` call it) writes
there the one-line module of `TRAINER_FOLDER` that imports these classes, and says where.

Trainers:

* `nnUNetTrainerFocalUNet`: nnU-Net's schedule (1000 epochs x 250 iterations) with a FocalUNet.
* `nnUNetTrainerFocalUNetAdamW`: the same with AdamW (lr 1e-3) instead of nnU-Net's SGD, as nnU-Net's transformer
  trainers use.
* `nnUNetTrainerFocalUNetBudget`, `nnUNetTrainerFocalUNetAdamWBudget` / `nnUNetTrainerBudget`: FocalUNet (SGD,
  AdamW) / nnU-Net's default network on one budget,
  ``FOCALMOD_NNUNET_EPOCHS`` x ``FOCALMOD_NNUNET_ITERS`` training iterations (and ``FOCALMOD_NNUNET_VAL_ITERS``
  validation iterations per epoch), for comparisons at equal training length.

On the CPU (``-device cpu``) the trainers use ``OMP_NUM_THREADS`` threads when it is set (``nnUNetv2_train`` itself
sets one thread per core).

The network: FocalNet downsamples isotropically (stem stride `stem_stride`, then x2 per stage), so the number of
stages is the largest (up to `max_stages`) for which every patch side is divisible by the total downsampling and the
bottleneck keeps at least `min_bottleneck_side` voxels per side (nnU-Net's own minimum feature-map edge, 4). Deep
supervision: 1x1 heads on the focal decoder's levels give logits at strides ``1, stem_stride, 2 * stem_stride, ...``
(highest resolution first, no softmax), and `_get_deep_supervision_scales` returns those strides, so nnU-Net
downsamples the targets to exactly these shapes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..checkpoints.io import atomic_write
from ..layers._nd import check_channels_first, checks_apply, conv_nd, to_channels_first, to_channels_last
from ..models.focal_unet import FocalUNet

try:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
except ImportError as err:  # nnunetv2 is the `nnunet` extra
    raise ImportError("focalmod.integrations.nnunet needs nnU-Net v2: pip install \"focalmod[nnunet]\" (nnunetv2 "
                      "2.7; docs/medical.md, 'Inside nnU-Net', says why not 2.8)") from err

__all__ = ["TRAINER_FOLDER", "FocalUNetDeepSupervision", "install_trainers", "nnUNetTrainerBudget",
           "nnUNetTrainerFocalUNet", "nnUNetTrainerFocalUNetAdamW", "nnUNetTrainerFocalUNetAdamWBudget",
           "nnUNetTrainerFocalUNetBudget", "stages_for_patch"]

TRAINER_FOLDER = Path(__file__).parent / "nnunet_trainers"
_CUDA = torch.device("cuda")  # nnUNetTrainer's default device


def stages_for_patch(patch_size: Sequence[int], stem_stride: int = 2, max_stages: int = 4,
                     min_bottleneck_side: int = 4) -> int:
    """The most encoder stages (<= `max_stages`) whose total downsampling ``stem_stride * 2**(stages - 1)`` divides
    every side of `patch_size` and leaves at least `min_bottleneck_side` voxels per side."""
    for stages in range(max_stages, 0, -1):
        total = stem_stride * 2 ** (stages - 1)
        if all(s % total == 0 and s // total >= min_bottleneck_side for s in patch_size):
            return stages
    raise ValueError(f"patch size {list(patch_size)}: FocalUNet needs every side divisible by its stem stride "
                     f"{stem_stride} and at least {stem_stride * min_bottleneck_side} voxels")


class FocalUNetDeepSupervision(FocalUNet):
    """`FocalUNet` (focal decoder) with 1x1 deep-supervision heads on its decoder levels.

    With ``deep_supervision=False`` the forward is FocalUNet's: `(B, out_channels, *S)`. With True it returns nnU-Net's
    list of logits, highest resolution first: `(B, out_channels, *S / s)` for s in `deep_supervision_strides`
    (1, patch_size, 2 * patch_size, ...; one per encoder stage). The heads exist in both modes, so a checkpoint
    trained with deep supervision loads into the network nnU-Net's predictor builds without it.
    """

    def __init__(self, *args: Any, deep_supervision: bool = True, **kwargs: Any) -> None:
        if kwargs.setdefault("decoder", "focal") != "focal":
            raise ValueError(f"deep supervision taps the focal decoder's levels, got decoder={kwargs['decoder']!r}")
        super().__init__(*args, **kwargs)
        dims = list(self.encoder.embed_dim)
        conv = conv_nd(self.spatial_dims)
        self.ds_heads = nn.ModuleList(conv(d, self.out_channels, kernel_size=1) for d in dims[:-1])  # stage i's level
        self.deep_supervision = deep_supervision

    @property
    def deep_supervision_strides(self) -> list[int]:
        return [1] + [self.patch_size * 2**i for i in range(len(self.ds_heads))]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not self.deep_supervision:
            return super().forward(x)
        if not torch.jit.is_scripting() and checks_apply(x):
            check_channels_first("FocalUNet", x, self.in_channels, self.spatial_dims,
                                 self.encoder.stem.proj.weight.dtype)
            self.check_input_size(x.shape[2:])
        hidden = self.forward_encoder(x)
        decoder = self.decoder
        if not decoder.has_skips:
            return [decoder.out(decoder.final_expand(hidden[-1]))]
        y = decoder.bottleneck_expand(hidden[-1])
        coarse_first: list[torch.Tensor] = []
        for i, level in enumerate(decoder.levels):  # as _FocalDecoderLevel.forward, keeping the level's features
            stage = len(hidden) - 2 - i
            features = level.fuse(to_channels_last(torch.cat([y, hidden[stage]], dim=1)))
            for block in level.blocks:
                features = block.forward_channels_last(features)
            features = to_channels_first(features)
            coarse_first.append(self.ds_heads[stage](features))
            y = level.expand(features)
        return [decoder.out(decoder.final_expand(y)), *reversed(coarse_first)]


class _CpuThreads:
    """On the CPU, use OMP_NUM_THREADS threads when it is set (nnUNetv2_train -device cpu sets one per core)."""

    def initialize(self) -> None:
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if self.device.type == "cpu" and threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))
        super().initialize()


class _Budget:
    """Training length from the environment: FOCALMOD_NNUNET_EPOCHS x FOCALMOD_NNUNET_ITERS (+ _VAL_ITERS)."""

    budget_epochs, budget_iterations, budget_val_iterations = 10, 25, 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA) -> None:  # nnU-Net records these names for resuming
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = _env_int("FOCALMOD_NNUNET_EPOCHS", self.budget_epochs)
        self.num_iterations_per_epoch = _env_int("FOCALMOD_NNUNET_ITERS", self.budget_iterations)
        self.num_val_iterations_per_epoch = _env_int("FOCALMOD_NNUNET_VAL_ITERS", self.budget_val_iterations)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class nnUNetTrainerFocalUNet(_CpuThreads, nnUNetTrainer):
    """nnU-Net's trainer with a FocalUNet built from the plans (patch size, channels, classes)."""

    feature_size = 32  # nnU-Net's base width; stage i has feature_size * 2**i channels
    depth = 2  # FocalNet blocks per encoder stage and per decoder level
    focal_level, focal_window, mlp_ratio, drop_path_rate = 2, 3, 4.0, 0.0
    stem_stride, max_stages, min_bottleneck_side = 2, 4, 4

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self._stages() == 1:  # one output: nothing to supervise below full resolution
            self.enable_deep_supervision = False

    @classmethod
    def _stages_for(cls, patch_size: Sequence[int]) -> int:
        return stages_for_patch(patch_size, cls.stem_stride, cls.max_stages, cls.min_bottleneck_side)

    def _stages(self) -> int:
        return self._stages_for(self.configuration_manager.patch_size)

    @classmethod
    def build_network_architecture(cls, plans_manager: Any, configuration_manager: Any, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        """nnU-Net 2.8's hook (a classmethod, so subclasses change the network through class attributes; nnU-Net
        calls it on the class with these arguments in training and in its predictor)."""
        patch = list(configuration_manager.patch_size)
        stages = cls._stages_for(patch)
        return FocalUNetDeepSupervision(
            spatial_dims=len(patch), in_channels=num_input_channels, out_channels=num_output_channels,
            feature_size=cls.feature_size, depths=(cls.depth,) * stages, focal_levels=cls.focal_level,
            focal_windows=cls.focal_window, patch_size=cls.stem_stride, decoder="focal", decoder_depth=cls.depth,
            mlp_ratio=cls.mlp_ratio, drop_path_rate=cls.drop_path_rate,
            deep_supervision=enable_deep_supervision and stages > 1,
        )

    def _get_deep_supervision_scales(self) -> list[list[float]] | None:
        if not self.enable_deep_supervision:
            return None
        strides = [1] + [self.stem_stride * 2**i for i in range(self._stages() - 1)]
        return [[1.0 / s] * len(self.configuration_manager.patch_size) for s in strides]

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        network = self.network.module if self.is_ddp else self.network
        getattr(network, "_orig_mod", network).deep_supervision = enabled  # _orig_mod: under torch.compile


class nnUNetTrainerFocalUNetAdamW(nnUNetTrainerFocalUNet):
    """`nnUNetTrainerFocalUNet` with AdamW instead of nnU-Net's SGD (momentum 0.99, lr 1e-2), as nnU-Net's own
    trainers for its transformer (Primus: AdamW, betas 0.9 / 0.98, weight decay 5e-2) do; lr 1e-3, the rate
    `tasks.medical` trains FocalUNet with, on nnU-Net's polynomial schedule. Everything else is nnU-Net's."""

    adamw_lr, adamw_weight_decay, adamw_betas = 1e-3, 5e-2, (0.9, 0.98)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr, self.weight_decay = self.adamw_lr, self.adamw_weight_decay  # logged and checkpointed

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, Any]:
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

        optimizer = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                      betas=self.adamw_betas)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)


class nnUNetTrainerFocalUNetBudget(_Budget, nnUNetTrainerFocalUNet):
    """`nnUNetTrainerFocalUNet` for FOCALMOD_NNUNET_EPOCHS x FOCALMOD_NNUNET_ITERS iterations (default 10 x 25)."""


class nnUNetTrainerFocalUNetAdamWBudget(_Budget, nnUNetTrainerFocalUNetAdamW):
    """`nnUNetTrainerFocalUNetAdamW` on the budget of `nnUNetTrainerFocalUNetBudget`."""


class nnUNetTrainerBudget(_Budget, _CpuThreads, nnUNetTrainer):
    """nnU-Net's default trainer and network on the same budget as `nnUNetTrainerFocalUNetBudget`."""


_TRAINER_MODULE = TRAINER_FOLDER / "focalmod_nnunet_trainers.py"


def install_trainers() -> Path | None:
    """Make nnU-Net find these trainers by name; returns the module written (or already there), None where nothing
    needs writing.

    nnunetv2 2.8 searches the `nnUNet_extTrainer` folders (`TRAINER_FOLDER`; nothing is written). nnunetv2 2.7 searches
    only its own `nnunetv2.training.nnUNetTrainer` package, so `TRAINER_FOLDER`'s one-line module (it imports this
    module's trainers) is copied to ``variants/network_architecture/focalmod_nnunet_trainers.py`` there, the place
    nnU-Net's documentation gives for custom trainers. Delete that file to remove them."""
    import nnunetv2
    import nnunetv2.paths

    if hasattr(nnunetv2.paths, "nnUNet_extTrainer"):
        return None
    target = Path(nnunetv2.__path__[0], "training", "nnUNetTrainer", "variants", "network_architecture",
                  _TRAINER_MODULE.name)
    text = _TRAINER_MODULE.read_text()
    if not target.is_file() or target.read_text() != text:
        try:
            atomic_write(target, text)
        except OSError as err:
            raise RuntimeError(f"{target}: cannot write focalmod's trainer module into nnunetv2 {_nnunet_version()} "
                               f"({err}); nnunetv2 before 2.8 finds trainers only inside its package") from err
    return target


def _nnunet_version() -> str:
    from importlib.metadata import version

    return version("nnunetv2")


def main(argv: Sequence[str] | None = None) -> None:
    """``trainer-path`` prints TRAINER_FOLDER; ``install-trainers`` runs `install_trainers`; ``train ...`` /
    ``predict ...`` run nnUNetv2_train / nnUNetv2_predict with the same arguments after making the trainers findable
    (nnUNet_extTrainer set to TRAINER_FOLDER, or `install_trainers` on nnunetv2 2.7)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = ("trainer-path", "install-trainers", "train", "predict")
    if not argv or argv[0] not in verbs:
        print(f"usage: python -m focalmod.integrations.nnunet {{{','.join(verbs)}}} [nnUNetv2 arguments]\n"
              f"{__doc__}", file=sys.stderr)
        raise SystemExit(2)
    if argv[0] == "trainer-path":
        print(TRAINER_FOLDER)
        return
    installed = install_trainers()
    if installed is not None:
        print(f"nnunetv2 {_nnunet_version()} finds trainers inside its package: focalmod's are imported by "
              f"{installed} (delete it to remove them)", flush=True)
    elif argv[0] == "install-trainers":
        print(f"nnunetv2 {_nnunet_version()} reads nnUNet_extTrainer: nothing to install; export "
              f"nnUNet_extTrainer={TRAINER_FOLDER}", flush=True)
    if argv[0] == "install-trainers":
        return
    paths = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    os.environ["nnUNet_extTrainer"] = os.pathsep.join([str(TRAINER_FOLDER), *paths])
    if argv[0] == "train":
        from nnunetv2.run.run_training import run_training_entry as entry
    else:
        from nnunetv2.inference.predict_from_raw_data import predict_entry_point as entry
    sys.argv = [f"nnUNetv2_{argv[0]}", *argv[1:]]
    entry()


if __name__ == "__main__":
    main()
