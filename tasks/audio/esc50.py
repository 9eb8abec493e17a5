"""Environmental sound classification on ESC-50 with focal modulation: `python -m tasks.audio.esc50`.

    python -m tasks.audio.esc50                                  # embedded default: synthetic ESC-50-format sounds
    python -m tasks.audio.esc50 --data /data/ESC-50-master       # the official 5-fold cross-validation
    python -m tasks.audio.esc50 --data my_sounds/                # a folder per class: my_sounds/<class>/*.wav
    python -m tasks.audio.esc50 --data /data/ESC-50-master --preset paper --protocol paper-split --features stft

With `--data` it reads a local ESC-50 directory, a folder per class (<class>/*.wav, .flac, .ogg) or a Hugging Face
audiofolder (metadata.csv with file_name and label columns; folds from its fold column, else a stratified 5-fold
split seeded with --split-seed, by default --seed); without it, it writes a procedurally synthesised ESC-50-format
set into the run directory and runs the same protocol on it. Protocols: the official 5-fold cross-validation
(train on four folds, test on the held-out one, report per-fold and mean +- std accuracy; `--folds` for a subset)
or the sound paper's single split (`--protocol paper-split`: train 1-3, validate 4, test 5). Every split also scores
the MFCC statistics baseline (logistic regression or an RBF SVM, chosen by cross-validation on the training folds).
Unset options take presets/synthetic.yaml without --data; with it presets/esc50.yaml, a small from-scratch model
whose width, epochs, batch size and ensemble size are sized to the clips and the machine (printed, recorded in
config.yaml), or presets/finetune.yaml when ImageNet FocalNet-T weights are in the Hugging Face cache; the sound
paper's recipe is --preset paper. `--resume RUN` keeps the finished folds and continues an interrupted one from
<fold>/checkpoints/last.ckpt (an ensemble's members from their own checkpoints).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from focalmod.interpret import average_scores, scores_table
from tasks.common import Run, Score, Summary, Task, TaskError, run_main, run_task
from tasks.common.baseline import BaselineChoice, compare_with_baseline
from tasks.common.launch import is_rank_zero
from tasks.common.options import add_settings
from tasks.common.reports import save_classification_report

from .baseline import baseline_name, mfcc_baseline
from .data import LAYOUTS, PADS, FeatureCache, extract_features, read_sounds
from .features import FEATURE_KINDS, FeatureConfig, FeatureExtractor
from .models import AUDIO_MODELS, default_variant
from .module import TrainConfig
from .protocol import build_model_from_options, member_options, model_overrides, plan_splits, run_split
from .sizing import choose_preset, count_training_clips, size_to_data
from .synth import generate_synthetic_esc50

SYNTH_DIR = "synthetic_esc50"


def add_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, default=None,
                   help="ESC-50 root (meta/esc50.csv + audio/*.wav), a folder per class (<class>/*.wav|.flac|.ogg) "
                        "or a Hugging Face audiofolder (metadata.csv: file_name, label[, fold]); omitted: generate "
                        "the synthetic set")
    d.add_argument("--split-seed", type=int, default=None,
                   help="seed of the stratified 5-fold split of a --data folder without folds (a folder per class, "
                        "an audiofolder without a fold column); unset: --seed (config.yaml records it)")
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
    f = p.add_argument_group("features (torchaudio)")
    f.add_argument("--features", choices=FEATURE_KINDS, default="logmel",
                   help="logmel, or stft: the sound paper's log1p linear-magnitude STFT")
    f.add_argument("--sample-rate", type=int, default=None, help="resample every clip to this rate (Hz)")
    f.add_argument("--clip-seconds", type=float, default=None, help="pad/crop clips to this length (5 for ESC-50)")
    f.add_argument("--n-fft", type=int, default=None, help="FFT size")
    f.add_argument("--win-length", type=int, default=None, help="window length (samples)")
    f.add_argument("--hop-length", type=int, default=None, help="hop (samples)")
    f.add_argument("--n-mels", type=int, default=None, help="mel bands (logmel)")
    f.add_argument("--normalize", choices=("peak", "none"), default="peak", help="peak-normalise each clip")
    f.add_argument("--pad", choices=PADS, default="zero",
                   help="fill a clip's window: zero = silence after a short file (as ESC-50's own files); repeat = "
                        "trim leading/trailing silence (60 dB below the loudest 10 ms) and loop the sound")
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
    m.add_argument("--global-pool", choices=("avg", "max", "avgmax"), default="avg",
                   help="pooling of the last feature map over time (and frequency): average, maximum, or their mean")
    m.add_argument("--init", choices=("trunc_normal", "fan_in"), default=None,
                   help="Linear init: the variant's trunc-normal(0.02), or PyTorch's fan-in default (better for "
                        "narrow models trained from scratch)")
    m.add_argument("--mixer", choices=("focal", "gnconv"), default="focal",
                   help="token mixer of the FocalNet models: focal modulation, or HorNet's gnConv (all else equal)")
    m.add_argument("--in-chans", type=int, choices=(1, 3), default=1,
                   help="2D input channels (3 repeats the spectrogram for ImageNet stems)")
    m.add_argument("--pretrained", default=None,
                   help="ImageNet weights for the 2D model (stem summed to --in-chans, new head): a registered name "
                        "whose weights are in the Hugging Face cache (focalnet_tiny_srf, focalnet_base_srf.ms_in1k, "
                        "...; it also names the variant) or a checkpoint file")
    m.add_argument("--resize", default=None, help="resize the 2D input to T,F (the paper uses 224,224)")
    t = p.add_argument_group("training")
    add_settings(t, TrainConfig, unset=True)  # --epochs, --lr, ..., --time-shift
    t.add_argument("--batch-size", type=int, default=None, help="batch size per device")
    t.add_argument("--ensemble", type=int, default=1,
                   help="members trained per split (seeds apart); the split is scored on their averaged class "
                        "probabilities, each member's accuracy is reported too; --explain explains the first member. "
                        "Unset: sized to the data, one per --ensemble-models entry, without them 3 below 1000 "
                        "training clips, else 1")
    t.add_argument("--ensemble-models", default=None,
                   help="the members' models, cycled over the --ensemble members: comma-separated MODEL[:WIDTH] "
                        "(e.g. focalnet1d:64,focalnet2d:32; WIDTH overrides --embed-dim); default: every member is "
                        "--model. Unset with --data: below 1000 training clips and with --model focalnet1d, "
                        "focalnet1d:64,focalnet2d:32 (the 1D and the 2D net)")
    o = p.add_argument_group("interpretation")
    o.add_argument("--explain", type=int, default=None,
                   help="per tested fold, explain N test clips: score the modulator and gate maps beside Grad-CAM, "
                        "integrated gradients and random masks (metrics.json 'interpretability', "
                        "<fold>/explanations/methods.png), and write modulator maps (PNG) and listenable "
                        "explanations (WAV); 0: none")
    o.add_argument("--quantile", type=float, default=0.9,
                   help="explanation mask: the positions at or above this quantile of a map")


def _items(value: Any) -> list[str]:
    """A comma-separated option (or a list from config.yaml) as its non-empty items."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    return [str(v) for v in items if str(v) != ""]


def _int_list(value: Any, option: str) -> list[int]:
    try:
        return [int(v) for v in _items(value)]
    except ValueError:
        raise TaskError(f"{option}: expected comma-separated integers, got {value!r}") from None


def _member_models(value: Any) -> list[str] | None:
    """`--ensemble-models` as a list of `MODEL[:WIDTH]` entries (checked), None when not given."""
    if value is None:
        return None
    entries = _items(value)
    for entry in entries:
        model, colon, width = entry.partition(":")
        if model not in AUDIO_MODELS or (colon and not (width.isdigit() and int(width) > 0)):
            raise TaskError(f"--ensemble-models: expected MODEL[:WIDTH] entries with MODEL one of "
                            f"{', '.join(AUDIO_MODELS)} and WIDTH a positive integer, got {entry!r}")
    if not entries:
        raise TaskError(f"--ensemble-models: expected at least one MODEL[:WIDTH], got {value!r}")
    return entries


def resolve(args: argparse.Namespace) -> None:
    """Spell out the list options, size the options the preset leaves to the data, and check the values."""
    args.folds = _int_list(args.folds, "--folds")
    args.depths = _int_list(args.depths, "--depths") or None
    args.resize = _int_list(args.resize, "--resize") or None
    args.ensemble_models = _member_models(args.ensemble_models)
    if args.split_seed is None:
        args.split_seed = args.seed  # recorded in config.yaml: --resume and the verbs split the same way
    if args.protocol == "cv" and (not args.folds or any(not 1 <= k <= 5 for k in args.folds)):
        raise TaskError(f"--folds: expected folds in 1..5, got {args.folds}")
    if args.epochs is None or args.batch_size is None or args.ensemble is None or (
            args.variant is None and args.embed_dim is None and args.preset == "esc50"):
        if args.data is None:
            unset = [f"--{n.replace('_', '-')}" for n in ("epochs", "batch_size", "embed_dim", "ensemble")
                     if getattr(args, n) is None]
            raise TaskError(f"--preset {args.preset} sizes the model and schedule to --data; give --data, or "
                            f"{', '.join(unset)}")
        gpu = args.accelerator != "cpu" and torch.cuda.is_available()
        line = size_to_data(args, count_training_clips(args), gpu)
        if is_rank_zero():
            print(line, flush=True)
    if args.resize is not None and len(args.resize) != 2:
        raise TaskError(f"--resize: expected T,F, got {args.resize}")
    for name in ("epochs", "batch_size", "ensemble"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.ensemble_models and args.ensemble < len(args.ensemble_models):
        raise TaskError(f"--ensemble {args.ensemble} trains fewer members than the {len(args.ensemble_models)} "
                        f"--ensemble-models ({','.join(args.ensemble_models)}); give --ensemble "
                        f"{len(args.ensemble_models)} or more")
    if args.ensemble_models and (args.variant is not None or args.pretrained is not None):
        raise TaskError("--ensemble-models chooses each member's model; it does not go with --variant or "
                        "--pretrained (one model)")
    if not 0 < args.quantile < 1:
        raise TaskError(f"--quantile must be in (0, 1), got {args.quantile}")
    if args.explain < 0:
        raise TaskError(f"--explain must be >= 0, got {args.explain}")


def dataset_root(run: Run) -> Path:
    """`--data`, or the synthetic set written (by rank 0, once) into the run directory."""
    args = run.args
    if args.data is not None:
        return Path(args.data)
    root = run.dir / SYNTH_DIR
    csv_path = root / "meta" / "esc50.csv"  # written last
    if not csv_path.is_file():
        run.say(f"writing the synthetic ESC-50-format set ({args.synth_classes} classes x {args.synth_clips} clips "
                f"x 5 folds, {args.clip_seconds:g} s at {args.sample_rate} Hz) to {root}")
    try:
        run.on_rank_zero_first(
            lambda: csv_path.is_file() or generate_synthetic_esc50(
                root, args.synth_classes, args.synth_clips, sample_rate=args.sample_rate,
                seconds=args.clip_seconds, seed=args.seed),
            ready=csv_path.is_file, what=f"the synthetic set in {root}")
    except ValueError as err:
        raise TaskError(f"--synth-classes/--synth-clips: {err}") from None
    return root


def train(run: Run) -> Summary | None:
    """Run the protocol: features once, then one training per split (finished splits of a resumed run kept)."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*that has Tensor Cores.*")
    args = run.args
    index = read_sounds(dataset_root(run), esc10=args.esc10, seed=args.split_seed)
    if index.layout != "esc50":
        run.say(f"--data {index.root}: {LAYOUTS[index.layout]}; folds: {index.split}")
    try:
        fcfg = FeatureConfig(args.features, args.sample_rate, args.clip_seconds, args.n_fft, args.win_length,
                             args.hop_length, args.n_mels, args.normalize, args.pad)
    except ValueError as err:
        raise TaskError(str(err)) from None
    kinds = [member_options(args, m) for m in range(min(args.ensemble, len(args.ensemble_models or [args.model])))]
    models = [build_model_from_options(k, len(index.targets), fcfg) for k in kinds]  # fail fast
    params = [sum(p.numel() for p in m.parameters()) for m in models]
    cache_dir = None if args.no_cache else args.cache_dir or (
        run.dir / "feature_cache" if args.data is None else Path.home() / ".cache" / "focalmod" / "esc50")
    cache = FeatureCache(cache_dir, fcfg.to_dict())
    run.say(f"run dir {run.dir}\n{len(index.clips)} clips, {len(index.targets)} classes from {index.root}; "
            f"{fcfg.kind} features ({fcfg.num_freq} x {fcfg.num_frames})")
    feats = extract_features(index, FeatureExtractor(fcfg), cache)
    run.say(f"features ready (cache: {cache.hits} hits, {cache.misses} computed)")

    splits = plan_splits(args.protocol, args.folds)
    baseline = mfcc_baseline(index, fcfg, cache_dir, splits, args.seed) if run.is_rank_zero else {}
    if baseline:
        run.say("baseline: " + ", ".join(f"{k} {v:.4f} ({c.name})" for k, (v, c) in baseline.items()))
    results: dict[str, dict] = {}
    for n, split in enumerate(splits, 1):
        done = run.dir / split.name / "result.json"
        if done.is_file():
            results[split.name] = json.loads(done.read_text())
            run.say(f"[{n}/{len(splits)}] {split.name}: done already (accuracy {results[split.name]['accuracy']:.4f})")
            continue
        run.say(f"[{n}/{len(splits)}] {split.name}: train folds {split.train}, test fold {split.test}")
        result = run_split(run, split, index, feats, fcfg)
        if result is not None:
            results[split.name] = result
            run.say(f"[{n}/{len(splits)}] {split.name}: test accuracy {result['accuracy']:.4f} "
                    f"({result['num_test']} clips, {result['train_seconds']:.1f} s)")
    if not run.is_rank_zero or not results:
        return None
    return summarise(run, index, fcfg, kinds, params, results, cache, baseline)


def _model_entry(options: argparse.Namespace, params: int) -> dict:
    return {"name": options.model, "variant": options.variant or default_variant(options.model), "params": params,
            "overrides": model_overrides(options), "in_chans": options.in_chans,
            "pretrained": str(options.pretrained) if options.pretrained else None}


def summarise(run: Run, index: Any, fcfg: FeatureConfig, kinds: list[argparse.Namespace], params: list[int],
              results: dict[str, dict], cache: FeatureCache, baseline: dict[str, tuple[float, BaselineChoice]]
              ) -> Summary:
    """Pooled confusion matrix over the tested folds, the printed result line and the metrics. `kinds`: the
    options of the distinct members (one cycle of `--ensemble-models`, else `--model` alone), `params` theirs."""
    args = run.args
    accs = {str(r["test_fold"]): r["accuracy"] for r in results.values()}
    values = np.array(list(accs.values()))
    y_true = sum((r["y_true"] for r in results.values()), [])
    y_pred = sum((r["y_pred"] for r in results.values()), [])
    save_classification_report(run.dir, y_true, y_pred, index.class_names, title=f"ESC-50 {args.protocol}, "
                               f"folds {','.join(accs)}")
    models = [_model_entry(k, p) for k, p in zip(kinds, params)]
    train_seconds = {k: r["train_seconds"] for k, r in results.items()}
    extras = {
        "mean_accuracy": float(values.mean()),
        "std_accuracy": float(values.std()),
        "fold_accuracy": accs,
        "protocol": args.protocol,
        "dataset": {"root": str(index.root), "synthetic": args.data is None, "esc10": args.esc10,
                    "num_clips": len(index.clips), "num_classes": len(index.targets), "layout": index.layout,
                    "split": index.split},
        "model": models[0],  # the first member's
        "members": models,  # each distinct member model (--ensemble-models, cycled over the members)
        "features": fcfg.to_dict(),
        "epochs": args.epochs,
        "ensemble": args.ensemble,
        "member_fold_accuracy": {str(r["test_fold"]): r["member_accuracy"] for r in results.values()
                                 if "member_accuracy" in r},
        "time": {"wall_seconds": run.elapsed_seconds, "train_seconds": train_seconds,
                 "train_seconds_total": float(sum(train_seconds.values()))},
        "feature_cache": {"hits": cache.hits, "computed": cache.misses},
        "explanations": sum((r["explanations"] for r in results.values()), []),
        "baseline_fold_accuracy": {str(r["test_fold"]): baseline[k][0] for k, r in results.items() if k in baseline},
        "baseline_fold_choice": {str(r["test_fold"]): {"name": baseline[k][1].name,
                                                       "cross_validation": baseline[k][1].cross_validation}
                                 for k, r in results.items() if k in baseline},
    }
    metric = Score("mean_accuracy", extras["mean_accuracy"])
    tested = extras["baseline_fold_accuracy"]
    base = None
    if len(tested) == len(accs):
        base = Score(baseline_name([baseline[k][1] for k in results if k in baseline]),
                     float(np.mean(list(tested.values()))))
    folds = ", ".join(f"{k}: {v:.4f}" for k, v in accs.items())
    described = " + ".join(f"{m['name']}/{m['variant']} {m['params'] / 1e6:.2f}M" for m in models)
    members = f" x {args.ensemble} (ensemble)" if args.ensemble > 1 and len(models) == 1 else (
        f" (ensemble of {args.ensemble})" if args.ensemble > 1 else "")
    print(f"\nESC-50 ({'synthetic' if args.data is None else index.root}, {args.protocol}) {described} "
          f"params{members}, {fcfg.kind}: mean accuracy {extras['mean_accuracy']:.4f} +- "
          f"{extras['std_accuracy']:.4f} (folds {folds}); {compare_with_baseline(metric, base)}; "
          f"{run.elapsed_seconds:.0f} s; run dir {run.dir}", flush=True)
    scored = [r["interpretability"] for r in results.values() if r.get("interpretability")]
    interpretability = average_scores(scored) if scored else None
    if interpretability:
        print(f"explanations of {args.explain} test clips per fold (mask: top {1 - args.quantile:.0%} of each map; "
              f"mean over {len(scored)} folds; per fold in <fold>/result.json, figures in "
              f"<fold>/explanations/methods.png):\n{scores_table(interpretability)}", flush=True)
    split = (f"test fold {','.join(accs)} (paper split: train 1-3, validate 4)" if args.protocol == "paper-split"
             else f"test folds {','.join(accs)} (5-fold cross-validation)")
    return Summary(metric, data=str(index.root), split=split, params_m=params[0] / 1e6, extras=extras, baseline=base,
                   interpretability=interpretability)


TASK = Task(
    name="esc50", module="tasks.audio.esc50", doc=__doc__, add_options=add_options,
    presets=Path(__file__).parent / "presets", choose_preset=choose_preset,
    run=train, resolve=resolve, versions=("torchaudio", "soundfile"),
)


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Run the protocol; returns the content of metrics.json (rank 0) or None."""
    return run_task(TASK, argv)


if __name__ == "__main__":
    run_main(main)
