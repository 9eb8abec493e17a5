"""Exports every task shares: ONNX (the dynamo exporter, checked in onnxruntime against the eager model) and a model
card. The field-specific folders (timm / Hugging Face, MONAI bundle) are written by the tasks with those tools."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .cli import TaskError
from .files import atomic_write

ONNX_TOLERANCE = 1e-4  # max abs difference between onnxruntime and eager outputs on the task's own inputs


def onnxruntime_outputs(path: Path, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The outputs of the ONNX file `path` run by onnxruntime's CPU provider on `inputs`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: x.detach().cpu().numpy() for arg, x in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(out) for out in session.run(None, feeds)]


def export_onnx(model: torch.nn.Module, example: Sequence[torch.Tensor], path: Path,
                input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                dynamic_batch: bool = True) -> dict[str, Any]:
    """`model` (eval mode) written to `path` by `torch.onnx.export(dynamo=True)` (dynamic batch unless
    `dynamic_batch` is False), then run in onnxruntime on `example`: returns `{"file", "max_abs_diff", "opset",
    "exporter"}`. A difference above `ONNX_TOLERANCE`, or outputs of other shapes, is a `TaskError` (the file is
    kept as `<name>.rejected.onnx`)."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise TaskError(f"--format onnx needs onnx, onnxscript and onnxruntime ({err}); pip install "
                        "'focalmod[dev]'") from None
    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    names = dict(input_names=list(input_names), output_names=list(output_names))
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1, max=1024)
        shapes = tuple({0: batch} for _ in example) if dynamic_batch else None
        program = torch.onnx.export(model, tuple(example), dynamo=True, dynamic_shapes=shapes, **names)
        program.save(str(tmp))
        expected = model(*example)
    expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    got = onnxruntime_outputs(tmp, example)
    same_shapes = len(got) == len(expected) and all(g.shape == e.shape for g, e in zip(got, expected))
    diff = max((float((g.double() - e.double()).abs().max()) for g, e in zip(got, expected) if g.numel()),
               default=0.0) if same_shapes else float("inf")
    if not diff <= ONNX_TOLERANCE:
        tmp.replace(path.with_suffix(".rejected.onnx"))
        raise TaskError(f"ONNX export: onnxruntime differs from the eager model by {diff:.2e} (> {ONNX_TOLERANCE}; "
                        f"inf: other output shapes); the file is kept as {path.with_suffix('.rejected.onnx')}")
    tmp.replace(path)
    return {"file": str(path), "max_abs_diff": diff, "opset": program.model.opset_imports.get(""),
            "exporter": "dynamo"}


def model_card(title: str, metrics: Mapping[str, Any] | None, usage: str, extra: Sequence[str] = ()) -> str:
    """A README.md model card: what the model is, the run's metric beside its baseline, the data, the command that
    trained it and how to load it (`usage`, a code block's content)."""
    lines = [f"# {title}", "", "Trained and exported with focalmod (`python -m tasks.<task> fit`, then `export`).", ""]
    if metrics:
        metric, baseline = metrics.get("metric") or {}, metrics.get("baseline")
        lines += ["| | |", "|---|---|", f"| task | {metrics.get('task')} |", f"| data | {metrics.get('data')} "
                  f"({metrics.get('split')} split) |", f"| {metric.get('name')} | {_number(metric.get('value'))} |"]
        if baseline:
            lines.append(f"| baseline: {baseline.get('name')} | {_number(baseline.get('value'))} |")
        lines += [f"| parameters | {metrics.get('params_m')} M |", f"| trained by | `{metrics.get('command')}` |",
                  f"| focalmod commit | {metrics.get('git_commit')} |", ""]
    else:
        lines += ["The training run wrote no metrics.json (it was stopped before its evaluation).", ""]
    lines += [*extra, "## Use", "", "```python", usage.strip(), "```", ""]
    return "\n".join(lines)


def write_model_card(folder: Path, text: str) -> Path:
    return atomic_write(Path(folder) / "README.md", text)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
