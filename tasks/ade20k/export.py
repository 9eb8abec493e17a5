"""Carry a trained UPerNet out as ONNX (the dynamo exporter; input: normalised images `(N, 3, H, W)` of any batch,
output: logits at the input's size), checked in onnxruntime against the eager model on the run's own validation
images (max abs difference <= 1e-4, in metrics.json), with a model card.

    python -m tasks.ade20k export --run runs/ade20k/<run>

The graph is exported at the run's sliding-window size (`--crop-size`, the run's by default); images of another
size are fed as the run's `--test-mode` does (whole: resized to the test scale; slide: windows of that size).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ..common import Run, Score, Summary, Task, TaskError
from ..common.export import export_onnx, model_card, write_model_card
from ..common.trained import TrainedRun
from ..common.verbs import add_run_option
from .data import load_image, read_split
from .transforms import EvalTransform


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_option(p, "python -m tasks.ade20k fit", "; its last.ckpt is the default")
    p.add_argument("--crop-size", type=int, help="the exported input's side (default: the run's crop size)")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run to export")


def export(run: Run) -> Summary:
    from .trained import load_segmenter

    args = run.args
    for key in ("weights", "model", "backbone", "model_arg", "num_classes", "img_scale", "test_mode", "test_stride"):
        setattr(args, key, None)  # all from the run
    seg = load_segmenter(args)
    side = seg.test.crop_size
    example = _example(seg, side)
    onnx = export_onnx(seg.model, [example], run.dir / "model.onnx", input_names=["pixel_values"],
                       output_names=["logits"])
    run.say(f"ONNX: {onnx['file']} ({side}x{side}; onnxruntime max abs diff {onnx['max_abs_diff']:.1e})")
    trained = TrainedRun.open(seg.source)
    usage = (f'import onnxruntime, numpy as np\nsession = onnxruntime.InferenceSession("model.onnx")\n'
             f'# pixel_values: RGB / 255, minus mean {EvalTransform.mean}, over std {EvalTransform.std}, NCHW '
             f'float32, {side}x{side}\n(logits,) = session.run(None, {{"pixel_values": pixel_values}})\n'
             f'mask = logits.argmax(1)  # class index; value index + 1 in ADE20K annotations')
    write_model_card(run.dir, model_card(f"UPerNet {seg.name} (ONNX)", trained.metrics, usage,
                                         [f"Classes: {', '.join(seg.class_names)}", ""]))
    return Summary(Score("max_abs_diff", onnx["max_abs_diff"]), data=str(trained.dir), split="export",
                   params_m=sum(p.numel() for p in seg.model.parameters()) / 1e6,
                   extras=dict(model=seg.name, run=str(trained.dir), onnx=onnx, input_size=[side, side]))


def _example(seg, side: int, n: int = 2) -> torch.Tensor:
    """`n` of the run's validation images, normalised and resized to `side` (random pixels when they are gone)."""
    from focalmod.models.upernet import resize

    try:
        samples = read_split(seg.data, "validation", len(seg.class_names))[:n]
    except TaskError:
        samples = []
    if not samples:
        return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))
    images = []
    for sample in samples:
        image = load_image(sample.image)
        x, _ = EvalTransform()(image, np.zeros(image.shape[:2], np.uint8))
        images.append(resize(x.unsqueeze(0), (side, side))[0])
    return torch.stack(images)


TASK = Task(name="ade20k-export", module="tasks.ade20k export", doc=__doc__, add_options=add_options,
            run=export, resolve=check, trainer=False)
