"""Environmental sound classification on ESC-50 with focal modulation: `python -m tasks.audio.esc50`.

With `--data` it reads a local ESC-50 directory; without it, it writes a procedurally synthesised ESC-50-format
set into the run directory and runs the same protocol on it. Protocols: the official 5-fold cross-validation
(train on four folds, test on the held-out one, report per-fold and mean +- std accuracy; `--folds` for a subset)
or the sound paper's single split (`--protocol paper-split`: train 1-3, validate 4, test 5).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from focalmod.viz import find_modulations
from tasks.common import (
    TaskError,
    ThroughputLogger,
    add_common_args,
    apply_threads,
    build_trainer,
    parse_with_config,
    run_main,
    save_config,
    write_metrics,
)
from tasks.common.callbacks import EpochPrinter, RefreshLastCheckpoint
from tasks.common.csvlog import merge_csv_logs, set_aside_csv_log
from tasks.common.launch import is_rank_zero, release_run_dir, shared_run_dir
from tasks.common.reports import save_classification_report
from tasks.common.files import atomic_write

from .data import ESC50Index, FeatureCache, extract_features, load_waveform, read_esc50
from .features import FEATURE_KINDS, FeatureConfig, FeatureExtractor
from .interpret import explain_clip, last_stage_modulator_map
from .models import AUDIO_MODELS, build_audio_model, default_variant
from .module import AudioClassifierModule, TrainConfig
from .synth import generate_synthetic_esc50

TASK = "esc50"
SYNTH_DIR = "synthetic_esc50"

# Defaults that depend on the data: real ESC-50 (5 s clips, the paper's 16 kHz) or the small synthetic set.
REAL_DEFAULTS = dict(
    sample_rate=16000, clip_seconds=5.0, n_mels=128, epochs=60, batch_size=32, lr=5e-4, weight_decay=0.05,
    mixup=0.2, freq_mask=24, time_mask=48, gain_db=6.0, time_shift=0.1, explain=0, warmup_epochs=3.0,
    drop_path=0.1, init="trunc_normal", threads=0,
)
SYNTH_DEFAULTS = dict(
    sample_rate=16000, clip_seconds=1.0, n_mels=64, epochs=24, batch_size=8, lr=2e-3, weight_decay=0.05,
    mixup=0.0, freq_mask=0, time_mask=0, gain_db=6.0, time_shift=0.1, explain=2, warmup_epochs=1.0,
    drop_path=0.0, init="fan_in", threads=1,
)  # SpecAugment off here: its masks cut tones into the gated/dashed patterns that define other synthetic classes
# (5-fold mean 92.5 % with 4/8-bin masks, 96.4 % without, in otherwise equal runs).
# Small models for the synthetic set (2 CPU cores): ~0.13-0.45 M parameters, stride-2 stems where available.
SYNTH_MODEL_DEFAULTS = {
    "focalnet2d": dict(embed_dim=24, depths="1,1,1", patch_size=2, mlp_ratio=2.0),
    "focalnet1d": dict(embed_dim=48, depths="1,1,1", patch_size=2, mlp_ratio=2.0),
    "hornet": dict(embed_dim=24, depths="1,1,1", mlp_ratio=2.0),
}
# STFT settings: the paper's 1024-point FFT with 23.2 / 11.6 ms windows at 16 kHz for --features stft.
STFT_DEFAULTS = {
    ("real", "logmel"): dict(n_fft=1024, win_length=400, hop_length=160),
    ("real", "stft"): dict(n_fft=1024, win_length=371, hop_length=186),
    ("synth", "logmel"): dict(n_fft=512, win_length=400, hop_length=160),
    ("synth", "stft"): dict(n_fft=256, win_length=256, hop_length=160),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: x)` only for fixed defaults; data-dependent ones are spelled out in the help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def _data_defaults(dest: str) -> str:
    """' (synthetic: a; --data: b)' for an option whose default depends on the data (model-specific ones too)."""
    synth = {**SYNTH_DEFAULTS, **STFT_DEFAULTS[("synth", "logmel")]}
    real = {**REAL_DEFAULTS, **STFT_DEFAULTS[("real", "logmel")]}
    if dest in SYNTH_MODEL_DEFAULTS["focalnet2d"]:
        return f" (synthetic set: {SYNTH_MODEL_DEFAULTS['focalnet2d'][dest]} for focalnet2d; else the variant's)"
    if dest not in synth and dest not in real:
        return ""
    if dest in STFT_DEFAULTS[("real", "logmel")]:
        return (f" (synthetic set: {synth[dest]}, stft {STFT_DEFAULTS[('synth', 'stft')][dest]}; --data: "
                f"{real[dest]}, stft {STFT_DEFAULTS[('real', 'stft')][dest]})")
    return f" (synthetic set: {synth.get(dest)}; --data: {real.get(dest)})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tasks.audio.esc50",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=_HelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, default=None,
                   help="ESC-50 root (meta/esc50.csv + audio/*.wav); omitted: generate the synthetic set")
    d.add_argument("--esc10", action="store_true", help="use the ESC-10 subset (rows with esc10=True)")
    d.add_argument("--protocol", choices=("cv", "paper-split"), default="cv",
                   help="cv: official 5-fold cross-validation; paper-split: train 1-3, valid 4, test 5")
    d.add_argument("--folds", default="1,2,3,4,5", help="held-out folds to run with --protocol cv, e.g. 1,2")
    d.add_argument("--synth-classes", type=int, default=12, help="synthetic set: number of classes (<= 12)")
    d.add_argument("--synth-clips", type=int, default=6, help="synthetic set: clips per class and fold")
    d.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache (default: <run>/feature_cache for the synthetic set, "
                        "~/.cache/focalmod/esc50 for --data)")
    d.add_argument("--no-cache", action="store_true", help="do not cache features on disk")
    f = p.add_argument_group("features (torchaudio; unset values depend on --data and --features)")
    f.add_argument("--features", choices=FEATURE_KINDS, default="logmel",
                   help="logmel, or stft: the sound paper's log1p linear-magnitude STFT")
    f.add_argument("--sample-rate", type=int, default=None, help="resample every clip to this rate (Hz)")
    f.add_argument("--clip-seconds", type=float, default=None, help="pad/crop clips to this length (5 for ESC-50)")
    f.add_argument("--n-fft", type=int, default=None, help="FFT size")
    f.add_argument("--win-length", type=int, default=None, help="window length (samples)")
    f.add_argument("--hop-length", type=int, default=None, help="hop (samples)")
    f.add_argument("--n-mels", type=int, default=None, help="mel bands (logmel)")
    f.add_argument("--normalize", choices=("peak", "none"), default="peak", help="peak-normalise each clip")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=AUDIO_MODELS, default="focalnet2d",
                   help="focalnet2d: 2D net on time x frequency; focalnet1d: 1D net over frames (bins = channels); "
                        "hornet: HorNet (gnConv) 2D net")
    m.add_argument("--variant", default=None, help="registered model name (default: focalnet_tiny_srf / "
                                                   "focalnet1d_tiny / hornet_tiny_7x7)")
    m.add_argument("--embed-dim", type=int, default=None, help="override the variant's first-stage width")
    m.add_argument("--depths", default=None, help="override the variant's blocks per stage, e.g. 1,1,1")
    m.add_argument("--focal-levels", type=int, default=None, help="override the variant's focal levels")
    m.add_argument("--patch-size", type=int, default=None, help="override the variant's stem stride")
    m.add_argument("--mlp-ratio", type=float, default=None, help="override the variant's MLP expansion")
    m.add_argument("--drop-path", type=float, default=None, help="stochastic depth rate")
    m.add_argument("--init", choices=("trunc_normal", "fan_in"), default=None,
                   help="Linear init: the variant's trunc-normal(0.02), or PyTorch's fan-in default (better for "
                        "narrow models trained from scratch)")
    m.add_argument("--mixer", choices=("focal", "gnconv"), default="focal",
                   help="token mixer of the FocalNet models: focal modulation, or HorNet's gnConv (all else equal)")
    m.add_argument("--in-chans", type=int, choices=(1, 3), default=1,
                   help="2D input channels (3 repeats the spectrogram for ImageNet stems)")
    m.add_argument("--pretrained", type=Path, default=None,
                   help="ImageNet FocalNet checkpoint for the 2D model (stem summed to --in-chans, new head)")
    m.add_argument("--resize", default=None, help="resize the 2D input to T,F (the paper uses 224,224)")
    t = p.add_argument_group("training (unset values depend on --data)")
    t.add_argument("--epochs", type=int, default=None, help="epochs per fold")
    t.add_argument("--batch-size", type=int, default=None, help="batch size per device")
    t.add_argument("--lr", type=float, default=None, help="AdamW peak learning rate")
    t.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (not on norms/biases)")
    t.add_argument("--warmup-epochs", type=float, default=None, help="linear warmup, then cosine decay")
    t.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    t.add_argument("--mixup", type=float, default=None, help="mixup alpha (0 = off)")
    t.add_argument("--freq-mask", type=int, default=None, help="SpecAugment frequency-mask width (0 = off)")
    t.add_argument("--time-mask", type=int, default=None, help="SpecAugment time-mask width in frames (0 = off)")
    t.add_argument("--num-masks", type=int, default=2, help="masks of each kind per example")
    t.add_argument("--gain-db", type=float, default=None, help="random gain in +-dB (0 = off)")
    t.add_argument("--time-shift", type=float, default=None, help="random circular shift, fraction of the clip")
    o = p.add_argument_group("interpretation")
    o.add_argument("--explain", type=int, default=None,
                   help="per tested fold, write modulator maps (PNG) and listenable explanations (WAV) of N clips")
    o.add_argument("--quantile", type=float, default=0.9, help="mask threshold quantile of the modulator map")
    add_common_args(p, TASK)
    for action in p._actions:
        if action.dest == "resume":
            action.help = ("continue a run directory: finished folds are kept, an interrupted fold resumes from "
                           "<fold>/checkpoints/last.ckpt; its config.yaml supplies the options")
        elif action.default is None and action.help:
            action.help += _data_defaults(action.dest)
    return p


def _int_list(value: Any, option: str) -> list[int]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    try:
        return [int(v) for v in items if v != ""]
    except ValueError:
        raise TaskError(f"{option}: expected comma-separated integers, got {value!r}") from None


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the data-dependent defaults and check the options."""
    source = "synth" if args.data is None else "real"
    defaults = {**(SYNTH_DEFAULTS if source == "synth" else REAL_DEFAULTS), **STFT_DEFAULTS[(source, args.features)]}
    if source == "synth" and args.variant is None:
        defaults.update(SYNTH_MODEL_DEFAULTS[args.model])
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.folds = _int_list(args.folds, "--folds")
    args.depths = _int_list(args.depths, "--depths") or None
    args.resize = _int_list(args.resize, "--resize") or None
    if args.protocol == "cv" and (not args.folds or any(not 1 <= k <= 5 for k in args.folds)):
        raise TaskError(f"--folds: expected folds in 1..5, got {args.folds}")
    if args.resize is not None and len(args.resize) != 2:
        raise TaskError(f"--resize: expected T,F, got {args.resize}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.quantile < 1:
        raise TaskError(f"--quantile must be in (0, 1), got {args.quantile}")
    if args.explain < 0:
        raise TaskError(f"--explain must be >= 0, got {args.explain}")
    return args


@dataclass(frozen=True)
class Split:
    """One training run of the protocol: its directory name, training/validation folds and test fold."""

    name: str
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: int


def plan_splits(protocol: str, folds: Sequence[int]) -> list[Split]:
    """cv: one split per held-out fold (validation = the held-out fold, for monitoring only; no selection);
    paper-split: train 1-3, validate 4 (best checkpoint), test 5."""
    if protocol == "paper-split":
        return [Split("paper-split", (1, 2, 3), (4,), 5)]
    return [Split(f"fold{k}", tuple(f for f in range(1, 6) if f != k), (k,), k) for k in folds]


def _argv_with_resume_config(argv: Sequence[str] | None) -> list[str]:
    """`--resume RUN` without `--config`: read RUN/config.yaml as defaults, so a run continues as it started."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv or "-c" in argv or any(a.startswith("--config=") for a in argv):
        return argv
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--resume" and i + 1 < len(argv) else None
        if arg.startswith("--resume="):
            value = arg.split("=", 1)[1]
        if value and (Path(value) / "config.yaml").is_file():
            return ["--config", str(Path(value) / "config.yaml"), *argv]
    return argv


def _resume_dir(args: argparse.Namespace) -> Path | None:
    if args.resume is None:
        return None
    if not (Path(args.resume) / "config.yaml").is_file():
        raise TaskError(f"--resume: {args.resume} is not an esc50 run directory (no config.yaml)")
    return Path(args.resume)


def _say(*parts: Any) -> None:
    """Progress line, printed by rank 0 only."""
    if is_rank_zero():
        print(*parts, flush=True)


def _dataset_root(args: argparse.Namespace, run_dir: Path) -> Path:
    if args.data is not None:
        return args.data
    root = run_dir / SYNTH_DIR
    csv_path = root / "meta" / "esc50.csv"
    if not is_rank_zero():  # rank 0 writes it; the CSV appears last
        for _ in range(600):
            if csv_path.is_file():
                return root
            time.sleep(0.5)
    if not csv_path.is_file():
        _say(f"writing the synthetic ESC-50-format set ({args.synth_classes} classes x {args.synth_clips} clips "
             f"x 5 folds, {args.clip_seconds:g} s at {args.sample_rate} Hz) to {root}")
        try:
            generate_synthetic_esc50(root, args.synth_classes, args.synth_clips, sample_rate=args.sample_rate,
                                     seconds=args.clip_seconds, seed=args.seed)
        except ValueError as err:
            raise TaskError(f"--synth-classes/--synth-clips: {err}") from None
    return root


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {"drop_path_rate": args.drop_path}
    if args.embed_dim is not None:
        overrides["embed_dim"] = args.embed_dim
    if args.depths is not None:
        overrides["depths"] = tuple(args.depths)
    for name in ("focal_levels", "patch_size", "mlp_ratio"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return overrides


def _build_model(args: argparse.Namespace, num_classes: int, fcfg: FeatureConfig):
    return build_audio_model(
        args.model, num_classes, fcfg.num_freq, fcfg.num_frames, variant=args.variant, in_chans=args.in_chans,
        pretrained=args.pretrained, resize=args.resize, init=args.init, mixer=args.mixer,
        **_model_overrides(args),
    )


def _loader(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, train: bool) -> DataLoader:
    batch = min(args.batch_size, len(x))
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=train, drop_last=train and len(x) > batch,
                      num_workers=args.num_workers, persistent_workers=args.num_workers > 0)


@torch.no_grad()
def _predict(module: AudioClassifierModule, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    module.eval()
    device = module.device
    return torch.cat([module(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def _pick_clips(labels: np.ndarray, n: int) -> list[int]:
    """Up to `n` positions, round-robin over the classes present (one clip per class before any second)."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    for rank in range(max((len(v) for v in by_class), default=0)):
        picked += [v[rank] for v in by_class if rank < len(v)]
    return picked[:n]


def _explain(module, index: ESC50Index, test_idx: np.ndarray, feats: torch.Tensor, preds: torch.Tensor,
             extractor: FeatureExtractor, args: argparse.Namespace, out_dir: Path) -> list[str]:
    names, written = index.class_names, []
    labels = index.labels[test_idx]
    module.eval()
    for pos in _pick_clips(labels, args.explain):
        clip = index.clips[test_idx[pos]]
        x = feats[test_idx[pos]][None]
        fmap = last_stage_modulator_map(module.model, module.normalize(x.to(module.device)))[0].cpu()
        cfg = extractor.config
        wave = load_waveform(index.path(clip), cfg.sample_rate, cfg.num_samples, cfg.normalize)
        true, pred = names[labels[pos]], names[int(preds[pos])]
        paths = explain_clip(out_dir / Path(clip.filename).stem, wave, x[0], fmap, extractor, args.quantile,
                             title=f"{clip.filename}: true {true}, predicted {pred}")
        written += [str(p) for p in paths.values()]
    return written


def run_split(args, split: Split, index: ESC50Index, feats: torch.Tensor, fcfg: FeatureConfig,
              split_dir: Path, ckpt: Path | None) -> dict | None:
    """Train on `split.train`, test on `split.test`; write the split's reports; returns its result (rank 0)."""
    pl.seed_everything(args.seed + split.test, workers=True, verbose=False)
    labels, folds = torch.from_numpy(index.labels), index.folds
    train_idx, val_idx = np.flatnonzero(np.isin(folds, split.train)), np.flatnonzero(np.isin(folds, split.val))
    test_idx = np.flatnonzero(folds == split.test)
    if min(len(train_idx), len(val_idx), len(test_idx)) == 0:
        raise TaskError(f"{split.name}: a fold of {split} has no clips in {index.root}")
    train_x = feats[train_idx]
    model = _build_model(args, len(index.targets), fcfg)
    tcfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__})
    module = AudioClassifierModule(model, len(index.targets), fcfg.kind, float(train_x.mean()),
                                   float(train_x.std().clamp_min(1e-6)), tcfg)
    paper = args.protocol == "paper-split"
    # cv: no model selection on the held-out fold; monitoring "step" keeps the latest weights (Lightning writes
    # last.ckpt only alongside a top-k save, so monitor=None would leave no checkpoint to resume from).
    trainer = build_trainer(args, split_dir, args.epochs, monitor="val/acc" if paper else "step",
                            callbacks=[ThroughputLogger(), EpochPrinter(["train/acc", "val/acc"]),
                                       RefreshLastCheckpoint()])
    if ckpt is not None and trainer.is_global_zero:
        set_aside_csv_log(split_dir)  # Lightning's CSVLogger would restart metrics.csv; merged back below
    start = time.perf_counter()
    trainer.fit(module, _loader(train_x, labels[train_idx], args, True),
                _loader(feats[val_idx], labels[val_idx], args, False), ckpt_path=ckpt)
    seconds = time.perf_counter() - start
    if trainer.is_global_zero:
        merge_csv_logs(split_dir)
    if trainer.interrupted:  # Ctrl-C: keep last.ckpt, record nothing, so --resume continues this fold
        raise KeyboardInterrupt
    if not trainer.is_global_zero:
        return None
    if paper and trainer.checkpoint_callback.best_model_path:
        state = torch.load(trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])
    module.to(trainer.strategy.root_device)
    preds = _predict(module, feats[test_idx], args.batch_size)
    y_true = labels[test_idx]
    report = save_classification_report(split_dir, y_true.tolist(), preds.tolist(), index.class_names,
                                        title=f"{split.name}: test fold {split.test}")
    rows = ["filename,fold,true,predicted"] + [
        f"{index.clips[i].filename},{split.test},{index.class_names[t]},{index.class_names[p]}"
        for i, t, p in zip(test_idx, y_true.tolist(), preds.tolist())
    ]
    atomic_write(split_dir / "predictions.csv", "\n".join(rows) + "\n")
    explanations = []
    if args.explain and not find_modulations(module.model):
        _say("--explain: this model has no focal modulation (HorNet or the gnConv mixer); no explanations written")
    elif args.explain:
        extractor = FeatureExtractor(fcfg)
        module.cpu()
        explanations = _explain(module, index, test_idx, feats, preds, extractor, args, split_dir / "explanations")
    result = {
        "split": split.name, "train_folds": list(split.train), "val_folds": list(split.val), "test_fold": split.test,
        "accuracy": report["accuracy"], "num_test": len(test_idx), "train_seconds": seconds,
        "epochs": trainer.current_epoch, "y_true": y_true.tolist(), "y_pred": preds.tolist(),
        "explanations": explanations,
    }
    atomic_write(split_dir / "result.json", json.dumps(result) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Run the protocol; returns the metrics (rank 0) or None."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*that has Tensor Cores.*")
    args = _resolve(parse_with_config(build_parser(), _argv_with_resume_config(argv)))
    apply_threads(args)
    run_dir = shared_run_dir(TASK, _resume_dir(args) or args.out)
    try:
        return _run(args, run_dir)
    finally:
        release_run_dir()


def _run(args: argparse.Namespace, run_dir: Path) -> dict | None:
    start = time.perf_counter()
    if is_rank_zero():  # without config/out/resume, so the file can seed a new run as well as --resume this one
        save_config(run_dir, {k: v for k, v in vars(args).items() if k not in ("config", "out", "resume")})
    root = _dataset_root(args, run_dir)
    index = read_esc50(root, esc10=args.esc10)
    try:
        fcfg = FeatureConfig(args.features, args.sample_rate, args.clip_seconds, args.n_fft, args.win_length,
                             args.hop_length, args.n_mels, args.normalize)
    except ValueError as err:
        raise TaskError(str(err)) from None
    variant = args.variant or default_variant(args.model)
    _build_model(args, len(index.targets), fcfg)  # fail fast on a bad model/feature combination
    cache_dir = None if args.no_cache else args.cache_dir or (
        run_dir / "feature_cache" if args.data is None else Path.home() / ".cache" / "focalmod" / TASK)
    cache = FeatureCache(cache_dir, fcfg.to_dict())
    _say(f"run dir {run_dir}\n{len(index.clips)} clips, {len(index.targets)} classes from {root}; {fcfg.kind} "
         f"features ({fcfg.num_freq} x {fcfg.num_frames})")
    feats = extract_features(index, FeatureExtractor(fcfg), cache)
    _say(f"features ready (cache: {cache.hits} hits, {cache.misses} computed)")

    splits = plan_splits(args.protocol, args.folds)
    results: dict[str, dict] = {}
    for n, split in enumerate(splits, 1):
        split_dir = run_dir / split.name
        done, last = split_dir / "result.json", split_dir / "checkpoints" / "last.ckpt"
        if done.is_file():
            results[split.name] = json.loads(done.read_text())
            _say(f"[{n}/{len(splits)}] {split.name}: done already (accuracy {results[split.name]['accuracy']:.4f})")
            continue
        ckpt = last if last.is_file() else None
        _say(f"[{n}/{len(splits)}] {split.name}: train folds {split.train}, test fold {split.test}"
             + (f", resuming from {ckpt}" if ckpt else ""))
        result = run_split(args, split, index, feats, fcfg, split_dir, ckpt)
        if result is None:
            continue
        results[split.name] = result
        _say(f"[{n}/{len(splits)}] {split.name}: test accuracy {result['accuracy']:.4f} "
             f"({result['num_test']} clips, {result['train_seconds']:.1f} s)")
    if not is_rank_zero() or not results:
        return None
    return _finish(args, run_dir, index, fcfg, variant, results, cache, time.perf_counter() - start)


def _finish(args, run_dir: Path, index: ESC50Index, fcfg: FeatureConfig, variant: str, results: dict,
            cache: FeatureCache, wall: float) -> dict:
    accs = {str(r["test_fold"]): r["accuracy"] for r in results.values()}
    values = np.array(list(accs.values()))
    y_true = sum((r["y_true"] for r in results.values()), [])
    y_pred = sum((r["y_pred"] for r in results.values()), [])
    save_classification_report(run_dir, y_true, y_pred, index.class_names, title=f"ESC-50 {args.protocol}, "
                               f"folds {','.join(accs)}")
    params = sum(p.numel() for p in _build_model(args, len(index.targets), fcfg).parameters())
    metrics = {
        "mean_accuracy": float(values.mean()),
        "std_accuracy": float(values.std()),
        "fold_accuracy": accs,
        "protocol": args.protocol,
        "dataset": {"root": str(index.root), "synthetic": args.data is None, "esc10": args.esc10,
                    "num_clips": len(index.clips), "num_classes": len(index.targets)},
        "model": {"name": args.model, "variant": variant, "params": params, "overrides": _model_overrides(args),
                  "in_chans": args.in_chans, "pretrained": str(args.pretrained) if args.pretrained else None},
        "features": fcfg.to_dict(),
        "epochs": args.epochs,
        "time": {"wall_seconds": wall, "train_seconds": {k: r["train_seconds"] for k, r in results.items()},
                 "train_seconds_total": float(sum(r["train_seconds"] for r in results.values()))},
        "feature_cache": {"hits": cache.hits, "computed": cache.misses},
        "explanations": sum((r["explanations"] for r in results.values()), []),
    }
    write_metrics(run_dir, metrics)
    folds = ", ".join(f"{k}: {v:.4f}" for k, v in accs.items())
    print(f"\nESC-50 ({'synthetic' if args.data is None else index.root}, {args.protocol}) {args.model}/{variant} "
          f"{params / 1e6:.2f}M params, {fcfg.kind}: mean accuracy {metrics['mean_accuracy']:.4f} +- "
          f"{metrics['std_accuracy']:.4f} (folds {folds}); {wall:.0f} s; run dir {run_dir}")
    return metrics


if __name__ == "__main__":
    run_main(main)
