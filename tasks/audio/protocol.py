"""The ESC-50 evaluation protocol: which folds train, validate and test each run, one split's training and test
reports (confusion matrix, predictions, listenable explanations) in `<run>/<split>/`."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from focalmod.viz import find_modulations
from tasks.common import Run, TaskError, ThroughputLogger
from tasks.common.callbacks import EpochPrinter
from tasks.common.explain import pick_per_class
from tasks.common.files import atomic_write, write_csv
from tasks.common.options import from_args
from tasks.common.reports import save_classification_report

from .data import ESC50Index, load_waveform
from .features import FeatureConfig, FeatureExtractor
from .interpret import explain_clip, last_stage_modulator_map, score_explanations_of
from .models import build_model
from .module import AudioClassifierModule, TrainConfig


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


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor overrides of the registered variant from the model options."""
    overrides: dict[str, Any] = {"drop_path_rate": args.drop_path, "global_pool": args.global_pool}
    if args.embed_dim is not None:
        overrides["embed_dim"] = args.embed_dim
    if args.depths is not None:
        overrides["depths"] = tuple(args.depths)
    for name in ("focal_levels", "patch_size", "mlp_ratio"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return overrides


def member_options(args: argparse.Namespace, member: int) -> argparse.Namespace:
    """The options member `member` of a split's ensemble trains with: its `--ensemble-models` entry (cycled; model
    and optional width) in place of `--model` and `--embed-dim`; `args` itself without `--ensemble-models`."""
    if not args.ensemble_models:
        return args
    model, _, width = args.ensemble_models[member % len(args.ensemble_models)].partition(":")
    return argparse.Namespace(**{**vars(args), "model": model, "embed_dim": int(width) if width else args.embed_dim})


def build_model_from_options(args: argparse.Namespace, num_classes: int, fcfg: FeatureConfig) -> nn.Module:
    return build_model(
        args.model, num_classes, fcfg.num_freq, fcfg.num_frames, variant=args.variant, in_chans=args.in_chans,
        pretrained=args.pretrained, resize=args.resize, init=args.init, mixer=args.mixer, **model_overrides(args),
    )


MEMBER_SEED_STRIDE = 10_000  # member m of a split trains with seed `--seed + test fold + m * stride`


def run_split(run: Run, split: Split, index: ESC50Index, feats: torch.Tensor, fcfg: FeatureConfig) -> dict | None:
    """Train `--ensemble` members on `split.train` and test their averaged class probabilities on `split.test`;
    write the split's reports to `<run>/<split.name>/`; returns its result (rank 0; None elsewhere). `result.json`
    is written last: a split that has one is done."""
    args, split_dir = run.args, run.dir / split.name
    labels, folds = torch.from_numpy(index.labels), index.folds
    train_idx, val_idx = np.flatnonzero(np.isin(folds, split.train)), np.flatnonzero(np.isin(folds, split.val))
    test_idx = np.flatnonzero(folds == split.test)
    if min(len(train_idx), len(val_idx), len(test_idx)) == 0:
        raise TaskError(f"{split.name}: a fold of {split} has no clips in {index.root}")
    probabilities, member_accuracy, seconds, first = [], [], 0.0, None
    y_true = labels[test_idx]
    for member in range(args.ensemble):
        module, trainer, member_seconds = _train_member(run, split, member, index, feats, fcfg,
                                                        (train_idx, val_idx))
        seconds += member_seconds
        if not trainer.is_global_zero:
            continue
        module.to(trainer.strategy.root_device)
        probabilities.append(_predict(module, feats[test_idx], args.batch_size))
        module.cpu()  # the first member is kept for --explain; its device memory is not
        member_accuracy.append((probabilities[-1].argmax(1) == y_true).sum().item() / len(y_true))
        if args.ensemble > 1:
            run.say(f"{split.name}: member {member + 1}/{args.ensemble} test accuracy {member_accuracy[-1]:.4f}")
        first = first or (module, trainer)
    if first is None:
        return None
    module, trainer = first
    probability = torch.stack(probabilities).mean(0)
    preds = probability.argmax(1)
    report = save_classification_report(split_dir, y_true.tolist(), preds.tolist(), index.class_names,
                                        title=f"{split.name}: test fold {split.test}")
    write_csv(split_dir / "predictions.csv", [
        dict(filename=index.clips[i].filename, fold=split.test, true=index.class_names[t],
             predicted=index.class_names[p], probability=round(float(probability[n, p]), 6))
        for n, (i, t, p) in enumerate(zip(test_idx, y_true.tolist(), preds.tolist()))])
    explanations, interpretability = [], None
    if args.explain:
        picked = pick_per_class(index.labels[test_idx], args.explain)
        inputs = module.normalize(feats[test_idx[picked]])
        interpretability = score_explanations_of(module.model, inputs, split_dir / "explanations" / "methods.png",
                                                 args.quantile, args.seed)
        if find_modulations(module.model):
            explanations = _explain(module, index, test_idx[picked], feats, preds[picked], FeatureExtractor(fcfg),
                                    args, split_dir / "explanations")
        else:
            run.say("--explain: no focal modulation in this model (HorNet or the gnConv mixer): post-hoc scores "
                    "only, no modulator maps or listenable explanations")
    result = {
        "split": split.name, "train_folds": list(split.train), "val_folds": list(split.val), "test_fold": split.test,
        "accuracy": report["accuracy"], "num_test": len(test_idx), "train_seconds": seconds,
        "epochs": trainer.current_epoch, "member_accuracy": member_accuracy, "y_true": y_true.tolist(),
        "y_pred": preds.tolist(),
        "explanations": explanations, "interpretability": interpretability,
    }
    atomic_write(split_dir / "result.json", json.dumps(result) + "\n")
    return result


def _train_member(run: Run, split: Split, member: int, index: ESC50Index, feats: torch.Tensor, fcfg: FeatureConfig,
                  indices: tuple[np.ndarray, np.ndarray]) -> tuple[AudioClassifierModule, Any, float]:
    """Train member `member` of the split's ensemble (its model from `member_options`; in `<split>/`, the others in
    `<split>/member<m>/`, each with its own checkpoints to resume from); returns its module (the best checkpoint's
    weights with the paper split), trainer and training seconds."""
    args, labels = run.args, torch.from_numpy(index.labels)
    train_idx, val_idx = indices
    pl.seed_everything(args.seed + split.test + MEMBER_SEED_STRIDE * member, workers=True, verbose=False)
    train_x = feats[train_idx]
    tcfg = from_args(TrainConfig, args)
    model = build_model_from_options(member_options(args, member), len(index.targets), fcfg)
    info = {"classes": index.class_names, "features": fcfg.to_dict(), "split": split.name, "member": member}
    module = AudioClassifierModule(model, len(index.targets), fcfg.kind,
                                   float(train_x.mean()), float(train_x.std().clamp_min(1e-6)), tcfg, info)
    paper = args.protocol == "paper-split"  # cv: no model selection on the held-out fold
    member_dir = run.dir / split.name / (f"member{member}" if member else "")
    trainer = run.trainer(tcfg.epochs, monitor="val/acc" if paper else None, dir=member_dir,
                          callbacks=[ThroughputLogger(), EpochPrinter(["train/acc", "val/acc"])])
    seconds = run.fit(trainer, module, _loader(train_x, labels[train_idx], args, True),
                      _loader(feats[val_idx], labels[val_idx], args, False))
    if trainer.is_global_zero and paper and trainer.checkpoint_callback.best_model_path:
        state = torch.load(trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])
    return module, trainer, seconds


def _loader(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, train: bool) -> DataLoader:
    batch = min(args.batch_size, len(x))
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=train, drop_last=train and len(x) > batch,
                      num_workers=args.num_workers, persistent_workers=args.num_workers > 0)


@torch.no_grad()
def _predict(module: AudioClassifierModule, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Class probabilities `(N, classes)` of raw features `x`."""
    module.eval()
    device = module.device
    return torch.cat([module(x[i : i + batch_size].to(device)).softmax(1).cpu() for i in range(0, len(x), batch_size)])


def _explain(module: AudioClassifierModule, index: ESC50Index, clip_idx: np.ndarray, feats: torch.Tensor,
             preds: torch.Tensor, extractor: FeatureExtractor, args: argparse.Namespace, out_dir: Path) -> list[str]:
    """Modulator map (PNG) and listenable explanation (WAV) of the clips `clip_idx` (predicted `preds`)."""
    names, written = index.class_names, []
    labels = index.labels[clip_idx]
    module.eval()
    for pos in range(len(clip_idx)):
        clip = index.clips[clip_idx[pos]]
        x = feats[clip_idx[pos]][None]
        fmap = last_stage_modulator_map(module.model, module.normalize(x.to(module.device)))[0].cpu()
        cfg = extractor.config
        wave = load_waveform(index.path(clip), cfg.sample_rate, cfg.num_samples, cfg.normalize, cfg.pad)
        true, pred = names[labels[pos]], names[int(preds[pos])]
        paths = explain_clip(out_dir / Path(clip.filename).stem, wave, x[0], fmap, extractor, args.quantile,
                             title=f"{clip.filename}: true {true}, predicted {pred}")
        written += [str(p) for p in paths.values()]
    return written
