"""Carry a trained detector's network out as ONNX: the backbone and its FPN, i.e. the feature pyramid the
detection heads read (`pixel_values`: images as torchvision's `GeneralizedRCNNTransform` prepares them, resized,
normalised with the detector's mean/std and padded to a multiple of 32, `(N, 3, H, W)`; outputs `p2` ... `pool`),
exported by the dynamo exporter at the run's test size with a dynamic batch, plus a model card.

    python -m tasks.coco export --run runs/coco/<run>

The file is checked in onnxruntime against the eager network on the run's own validation image (max abs difference
<= 1e-4, in metrics.json). The RPN and RoI heads stay torchvision's: torch.export (the dynamo exporter) cannot trace
them in torch 2.11, because their NMS branches on the number of boxes (`batched_nms`), and the TorchScript exporter
traced a graph that reproduced the detector on the exported image only (on another image its boxes were off by up
to 61 px), so no whole-detector file is written rather than a wrong one.
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from ..common import Run, Score, Summary, Task, TaskError
from ..common.export import export_onnx, model_card, write_model_card
from ..common.verbs import add_run_option
from .data import CocoInstances, resolve_split
from .trained import load_detector


class FeaturePyramid(nn.Module):
    """The detector's backbone + FPN with its output dict as a tuple (ONNX has no dicts)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.backbone

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(pixel_values).values())


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.coco fit")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to export")


def export(run: Run) -> Summary:
    trained, module = load_detector(run.args.run)
    model = FeaturePyramid(module.model).eval()
    with torch.no_grad():
        example = module.model.transform(_example_images(module))[0].tensors
        outputs = [f"p{i + 2}" for i in range(len(model.backbone.strides))] + ["pool"]
    onnx = export_onnx(model, [example], run.dir / "model.onnx", input_names=["pixel_values"], output_names=outputs)
    run.say(f"ONNX: {onnx['file']} (feature pyramid at {tuple(example.shape[-2:])}; onnxruntime max abs diff "
            f"{onnx['max_abs_diff']:.1e})")
    transform = module.model.transform
    usage = ('import onnxruntime\nsession = onnxruntime.InferenceSession("model.onnx")\n'
             f'# pixel_values: RGB in [0, 1], minus mean {transform.image_mean}, over std {transform.image_std}, '
             f'(N, 3, {example.shape[-2]}, {example.shape[-1]})\n'
             f'{", ".join(outputs)} = session.run(None, {{"pixel_values": pixel_values}})  # FPN levels')
    write_model_card(run.dir, model_card(f"{module.hparams['detector']['detector']} + "
                                         f"{module.hparams['detector']['backbone']}: feature pyramid (ONNX)",
                                         trained.metrics, usage))
    return Summary(Score("max_abs_diff", onnx["max_abs_diff"]), data=str(trained.dir), split="export",
                   params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                   extras=dict(run=str(trained.dir), onnx=onnx, outputs=outputs, input_size=list(example.shape[-2:])))


def _example_images(module, n: int = 2) -> list[torch.Tensor]:
    """`n` images of the run's validation split (random pixels when the data is gone); two, because torch.export
    specialises a batch of one."""
    data = module.hparams.get("data") or {}
    try:
        dataset = CocoInstances(*resolve_split(data["root"], data["val_split"]), train=False, masks=False,
                                category_ids=module.category_ids)
        return [dataset[i % len(dataset)][0] for i in range(n)]
    except (TaskError, KeyError, TypeError, ZeroDivisionError):
        generator = torch.Generator().manual_seed(0)
        return [torch.rand(3, 128, 128, generator=generator) for _ in range(n)]


TASK = Task(name="coco-export", module="tasks.coco export", doc=__doc__, add_options=add_options, run=export,
            resolve=check, trainer=False, versions=("torchvision",))
