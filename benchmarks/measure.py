"""Per-model measurements: parameters, MACs, inference/training throughput, batch-1 latency and peak memory.

Models are named as in timm: a timm name (``convnext_tiny``) builds timm's model, ``focalmod_<name>`` (or a
focalmod name timm does not know, e.g. ``hornet_tiny_7x7``) builds ours with `focalmod.create_model`. Every
time is the median of `repeats` calls after `warmup` calls (CUDA: synchronised). Peak memory is the CUDA
allocator's `max_memory_allocated` on GPU and, on CPU, the peak RSS (VmHWM) of a child process that builds the
model and runs one forward and one training step (so models never share the high-water mark).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ._timing import TIMERS, interleave, median, set_threads
from .flops import count_macs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REPO_ROOT = Path(__file__).resolve().parent.parent

# timm's results/benchmark-*.csv columns first, then ours.
TIMM_COLUMNS = [
    "model",
    "infer_img_size",
    "infer_samples_per_sec",
    "infer_step_time",
    "infer_batch_size",
    "param_count",
    "infer_gmacs",
]
BENCH_COLUMNS = TIMM_COLUMNS + [
    "source",
    "infer_elementwise_gmuls",
    "infer_latency_ms",
    "train_samples_per_sec",
    "train_step_time",
    "train_batch_size",
    "infer_peak_mem_mib",
    "train_peak_mem_mib",
    "mem_base_mib",
    "status",
]


@dataclass
class Settings:
    """How to run: device, precision, layout, compilation, threads, sizes and repeat counts."""

    device: str = "cpu"
    dtype: str = "float32"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    batch_size: int = 32
    img_size: int | None = None
    warmup: int = 3
    repeats: int = 10
    train: bool = True
    memory: bool = True
    timer: str = "wall"
    child_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.amp and self.dtype == "float32":
            raise ValueError("amp needs a low-precision dtype: pass dtype 'bfloat16' or 'float16'")
        for name in ("batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.timer not in TIMERS:
            raise ValueError(f"timer must be one of {sorted(TIMERS)}, got {self.timer!r}")
        if self.timer == "cpu" and self.is_cuda:
            raise ValueError("timer 'cpu' (process CPU time) cannot time CUDA work: use 'wall'")
        if self.img_size is not None and self.img_size < 1:
            raise ValueError(f"img_size must be a positive int, got {self.img_size}")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    @property
    def param_dtype(self) -> torch.dtype:
        """Weights/inputs dtype: float32 under AMP (autocast casts per op), else `dtype`."""
        return torch.float32 if self.amp else DTYPES[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=DTYPES[self.dtype])

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)

    def tag(self) -> str:
        """Short description, e.g. ``fp32 nchw eager`` or ``amp-bfloat16 nhwc compile``."""
        prec = f"amp-{self.dtype}" if self.amp else {"float32": "fp32"}.get(self.dtype, self.dtype)
        return f"{prec} {'nhwc' if self.channels_last else 'nchw'} {'compile' if self.compile else 'eager'}"


@dataclass(frozen=True)
class ModelRequest:
    """A model to measure: a registered name plus constructor overrides (e.g. a shrunken variant in tests)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- models


def resolve_source(name: str) -> str:
    """'focalmod' for ``focalmod_*`` names and focalmod-only names, 'timm' for timm's own names."""
    import timm

    import focalmod

    if name.startswith("focalmod_"):
        return "focalmod"
    if timm.is_model(name):
        return "timm"
    if name in focalmod.list_models():
        return "focalmod"
    raise ValueError(f"unknown model {name!r}: not a timm model name nor in focalmod.list_models()")


def build_model(req: ModelRequest, img_size: int | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """The model (CPU, float32, eval) and its input size ``(C, *S)``; `img_size` sets the side of 2D inputs.

    Stochastic depth is off for our models (timm's default), so both sides train the same graph.
    """
    import timm

    import focalmod

    source = resolve_source(req.name)
    kwargs = dict(req.overrides)
    if source == "focalmod":
        spec = focalmod.models.get_spec(req.name)
        if "drop_path_rate" in spec.kwargs:
            kwargs.setdefault("drop_path_rate", 0.0)
        model = focalmod.models.build_baseline(spec.name, **kwargs)
    else:
        default = timm.get_pretrained_cfg_value(req.name, "input_size") or (3, 224, 224)
        if img_size is not None and img_size != default[-1] and "img_size" not in kwargs:
            with contextlib.suppress(TypeError):  # fixed-size models (ViT, Swin, VOLO) take img_size
                model = timm.create_model(req.name, pretrained=False, img_size=img_size, **kwargs)
                return model.eval(), _input_size(model, img_size)
        model = timm.create_model(req.name, pretrained=False, **kwargs)
    return model.eval(), _input_size(model, img_size)


def _input_size(model: nn.Module, img_size: int | None) -> tuple[int, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = tuple(cfg.get("input_size") or (3, 224, 224))
    if img_size is not None and len(size) == 3:  # only 2D inputs follow --img-size; 1D/3D keep their default
        size = (size[0], img_size, img_size)
    return size


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prepare(model: nn.Module, s: Settings) -> nn.Module:
    """Move to device/dtype, set the memory format and optionally compile."""
    model = model.to(device=s.torch_device, dtype=s.param_dtype)
    if s.channels_last:
        try:
            model = model.to(memory_format=torch.channels_last)
        except RuntimeError:  # 3D models: 5-D conv weights need the 3D variant
            model = model.to(memory_format=torch.channels_last_3d)
    if s.compile:
        model = torch.compile(model)
    return model


def make_input(input_size: tuple[int, ...], batch: int, s: Settings) -> torch.Tensor:
    x = torch.randn(batch, *input_size, device=s.torch_device, dtype=s.param_dtype)
    if s.channels_last and x.ndim in (4, 5):
        x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
    return x


def is_oom(err: BaseException) -> bool:
    """CUDA OOM, or the CPU allocator failing to allocate."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(err, MemoryError)
    )


# ---------------------------------------------------------------------------------------------------- timing


def median_time(fn: Callable[[], Any], s: Settings) -> float:
    """Median seconds per call of `fn` over `s.repeats` calls after `s.warmup` (shared `_timing` helper)."""
    sync = s.sync if s.is_cuda else None
    return median(interleave({"fn": fn}, repeats=s.repeats, warmup=s.warmup, timer=s.timer, sync=sync)["fn"])


@contextlib.contextmanager
def cuda_peak(s: Settings, out: dict[str, float], key: str) -> Iterator[None]:
    """Store the CUDA allocator's peak (MiB) during the block in `out[key]` (no-op on CPU)."""
    if not s.is_cuda:
        yield
        return
    s.sync()
    torch.cuda.reset_peak_memory_stats(s.torch_device)
    yield
    s.sync()
    out[key] = torch.cuda.max_memory_allocated(s.torch_device) / 2**20


def inference_fn(model: nn.Module, x: torch.Tensor, s: Settings) -> Callable[[], Any]:
    model.eval()

    def step() -> Any:
        with torch.inference_mode(), s.autocast():
            return model(x)

    return step


def train_fn(model: nn.Module, x: torch.Tensor, s: Settings) -> Callable[[], Any]:
    """One SGD step (timm benchmark's default optimizer) on cross-entropy against fixed random labels."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(s.torch_device.type, enabled=s.amp and s.dtype == "float16")
    target: dict[str, torch.Tensor] = {}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with s.autocast():
            out = model(x)
            if out.ndim == 2:
                if "y" not in target:
                    target["y"] = torch.randint(0, out.shape[1], (out.shape[0],), device=out.device)
                loss = F.cross_entropy(out.float(), target["y"])
            else:
                loss = out.float().square().mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


# ---------------------------------------------------------------------------------------------------- memory


def _proc_status_mib(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024  # kB
    return math.nan


def child_memory(req: ModelRequest, s: Settings) -> dict[str, Any]:
    """Peak RSS (MiB) of a fresh process running one inference forward and one training step of `req`."""
    payload = json.dumps({"request": asdict(req), "settings": asdict(s)})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.measure", "--child", payload],
            capture_output=True,
            text=True,
            timeout=s.child_timeout_s,
            env=env,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        killed = proc.returncode in (-9, 137)
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {"status": "oom" if killed or "memory" in tail.lower() else f"error: {tail}"}
    return json.loads(lines[-1])


def _child_main(payload: str) -> None:
    """Entry of the memory child: prints one JSON line with base / inference / train peak RSS in MiB."""
    data = json.loads(payload)
    s = Settings(**data["settings"])
    set_threads(s.threads)
    req = ModelRequest(**data["request"])
    model, input_size = build_model(req, s.img_size)
    model = prepare(model, s)
    x = make_input(input_size, s.batch_size, s)
    result: dict[str, Any] = {"status": "ok", "mem_base_mib": _proc_status_mib("VmRSS")}
    for key, make in (("infer_peak_mem_mib", inference_fn), ("train_peak_mem_mib", train_fn)):
        if key == "train_peak_mem_mib" and not s.train:
            break
        try:
            make(model, x, s)()
        except Exception as err:  # noqa: BLE001 - reported as the row's status
            result["status"] = "oom" if is_oom(err) else f"error: {type(err).__name__}"
            break
        result[key] = _proc_status_mib("VmHWM")  # high-water mark: monotone, so train peak >= infer peak
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------- one model


def bench_model(req: ModelRequest, s: Settings) -> dict[str, Any]:
    """One CSV row (see `BENCH_COLUMNS`); a failing measurement leaves its columns empty and is named in status."""
    row: dict[str, Any] = {"model": req.name, "infer_batch_size": s.batch_size}
    problems: list[str] = []
    try:
        row["source"] = resolve_source(req.name)
        model, input_size = build_model(req, s.img_size)
    except Exception as err:  # noqa: BLE001
        row["status"] = f"n/a ({err})"
        return row
    row["infer_img_size"] = input_size[-1]
    row["param_count"] = round(count_params(model) / 1e6, 3)
    try:
        macs = count_macs(model, torch.zeros(1, *input_size))
        row["infer_gmacs"] = float(f"{macs.gmacs:.4g}")
        row["infer_elementwise_gmuls"] = float(f"{macs.elementwise_gmuls:.3g}")
    except Exception as err:  # noqa: BLE001
        problems.append(f"macs: {type(err).__name__}")
    model = prepare(model, s)
    mem: dict[str, float] = {}
    if s.is_cuda:
        s.sync()
        mem["mem_base_mib"] = torch.cuda.memory_allocated(s.torch_device) / 2**20

    def run(label: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as err:  # noqa: BLE001
            problems.append(f"{label}: {'oom' if is_oom(err) else type(err).__name__}")
            if s.is_cuda:
                torch.cuda.empty_cache()

    def infer() -> None:
        x = make_input(input_size, s.batch_size, s)
        with cuda_peak(s, mem, "infer_peak_mem_mib"):
            t = median_time(inference_fn(model, x, s), s)
        row["infer_step_time"] = round(t * 1e3, 3)
        row["infer_samples_per_sec"] = round(s.batch_size / t, 2)

    def latency() -> None:
        row["infer_latency_ms"] = round(median_time(inference_fn(model, make_input(input_size, 1, s), s), s) * 1e3, 3)

    def train() -> None:
        x = make_input(input_size, s.batch_size, s)
        with cuda_peak(s, mem, "train_peak_mem_mib"):
            t = median_time(train_fn(model, x, s), s)
        row.update(
            train_step_time=round(t * 1e3, 3),
            train_samples_per_sec=round(s.batch_size / t, 2),
            train_batch_size=s.batch_size,
        )

    run("infer", infer)
    run("latency", latency)
    if s.train:
        run("train", train)
    if s.memory and not s.is_cuda:
        child = child_memory(req, s)
        mem.update({k: v for k, v in child.items() if k != "status"})
        if child.get("status") != "ok":
            problems.append(f"memory: {child.get('status')}")
    row.update({k: round(v, 1) for k, v in mem.items()})
    row["status"] = "; ".join(problems) if problems else "ok"
    return row


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child_main(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.measure --child JSON (internal: memory child of benchmarks.report)")
