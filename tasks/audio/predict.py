"""Label the user's sound files with a trained run: a CSV of path, top-k labels and probabilities, optionally the
listenable explanations (modulator map PNG + masked WAV) of the first clips.

    python -m tasks.audio predict --run runs/esc50/<run> --inputs recordings/              # a folder (recursive)
    python -m tasks.audio predict --run runs/esc50/<run> --fold 3 --inputs a.wav "takes/*.wav" --explain 2

A run holds one model (or ensemble) per held-out fold; `--fold` picks one (default: the first trained fold; the
paper split's is fold 5). Each WAV is read with soundfile, down-mixed, resampled to the run's rate, trimmed or padded
to its clip length and peak-normalised exactly as training loaded its clips, turned into the run's features (log-mel
or log-STFT, its FFT, hop and bands) and labelled in batches with a progress bar; an ensemble's members' class
probabilities are averaged, as training scored the fold. A file that cannot be read is named and skipped; the
others are still labelled, and the command then exits non-zero listing the skipped files. Writes predictions.csv
(path, label_1, prob_1, ...), explanations/ with `--explain N` (first member, FocalNets only), metrics.json and
config.yaml.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..common import Run, Score, Summary, Task, TaskError, write_csv
from ..common.verbs import add_run_option, find_inputs
from .trained import SoundClassifier

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")  # what soundfile reads


def add_run_options(p: argparse.ArgumentParser) -> None:
    """`--run` and `--fold`, shared by the verbs that apply a run."""
    add_run_option(p, "python -m tasks.audio fit", " (in <fold>/[member<m>/]checkpoints/: that member alone)")
    p.add_argument("--fold", type=int, default=None, help="the fold whose model(s) to use: a run trains one per "
                   "held-out fold (default: the first trained fold; the paper split's is 5)")


def add_options(p: argparse.ArgumentParser) -> None:
    add_run_options(p)
    p.add_argument("--inputs", nargs="+", help="sound files (WAV, FLAC, OGG), folders (searched recursively) or glob "
                   "patterns")
    p.add_argument("--top-k", type=int, default=5, help="labels per file in predictions.csv")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")
    p.add_argument("--explain", type=int, default=0, help="write the modulator map (PNG) and the listenable "
                   "explanation (WAV) of the first N files (explanations/; the first member; FocalNets only)")
    p.add_argument("--quantile", type=float, default=0.9,
                   help="explanation mask: the positions at or above this quantile of the map")


def check(args: argparse.Namespace) -> None:
    if args.run is None:
        raise TaskError("--run is required: the training run whose model labels the sounds")
    if args.top_k < 1:
        raise TaskError(f"--top-k must be >= 1, got {args.top_k}")
    if args.explain < 0:
        raise TaskError(f"--explain must be >= 0, got {args.explain}")
    if not 0 < args.quantile < 1:
        raise TaskError(f"--quantile must be in (0, 1), got {args.quantile}")
    find_inputs(args.inputs, AUDIO_EXTENSIONS)  # one clear error before the run directory is made


class ClipFeatures(Dataset):
    """The run's features of each file (loaded and extracted one clip at a time, as training did)."""

    def __init__(self, classifier: SoundClassifier, files: list[Path]) -> None:
        self.classifier, self.files = classifier, files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.classifier.featurize(self.classifier.load(self.files[i]))


def readable(classifier: SoundClassifier, files: list[Path]) -> tuple[list[Path], list[Path]]:
    """`(readable, skipped)`: each file read once as training reads clips; the unreadable ones are named."""
    ok, skipped = [], []
    for path in files:
        try:
            classifier.load(path)
            ok.append(path)
        except TaskError as err:
            print(f"{err}: skipped", flush=True)
            skipped.append(path)
    return ok, skipped


def predict_probabilities(run: Run, classifier: SoundClassifier, files: list[Path], batch_size: int
                          ) -> torch.Tensor:
    """`(N, classes)` averaged member probabilities of `files` through Lightning's `Trainer.predict`."""
    from ..common.predictor import Predictor

    loader = DataLoader(ClipFeatures(classifier, files), batch_size=batch_size, num_workers=run.args.num_workers)
    return torch.cat(run.trainer(logger=False).predict(Predictor(classifier.ensemble), loader)).float()


def predict(run: Run) -> Summary:
    args = run.args
    classifier = SoundClassifier.from_run(args.run, args.fold)
    files = find_inputs(args.inputs, AUDIO_EXTENSIONS)
    ok, skipped = readable(classifier, files)
    k = min(args.top_k, len(classifier.classes))
    rows = []
    if ok:
        run.say(f"labelling {len(ok)} file(s) with {classifier.split} of {classifier.run}: {classifier.name} "
                f"({len(classifier.members)} member(s), {len(classifier.classes)} classes)")
        probs, labels = predict_probabilities(run, classifier, ok, args.batch_size).topk(k, dim=1)
        for path, p, idx in zip(ok, probs.tolist(), labels.tolist()):
            row = {"path": str(path)}
            for rank, (prob, label) in enumerate(zip(p, idx), 1):
                row[f"label_{rank}"], row[f"prob_{rank}"] = classifier.classes[label], f"{prob:.6f}"
            rows.append(row)
    explanations = _explain(classifier, ok, rows, args, run.dir / "explanations") if args.explain and ok else []
    write_csv(run.dir / "predictions.csv", rows,
              ["path", *[f"{c}_{r}" for r in range(1, k + 1) for c in ("label", "prob")]])
    print(f"{len(rows)} file(s) labelled: {run.dir / 'predictions.csv'}", flush=True)
    mean_top = sum(float(r["prob_1"]) for r in rows) / len(rows) if rows else None
    extras = dict(clips=len(rows), run=str(classifier.run), fold=classifier.split, model=classifier.name,
                  members=len(classifier.members), classes=len(classifier.classes),
                  features=classifier.features.to_dict(), checkpoints=[str(c) for c in classifier.checkpoints],
                  explanations=explanations)
    return Summary(Score("mean_top1_probability", mean_top), data=", ".join(map(str, args.inputs)), split="predict",
                   params_m=classifier.params_m, extras=extras, skipped=[str(p) for p in skipped])


def _explain(classifier: SoundClassifier, files: list[Path], rows: list[dict], args: argparse.Namespace,
             folder: Path) -> list[str]:
    """The sound paper's listenable explanation of the first `--explain` files, by the first member."""
    from focalmod.viz import find_modulations

    from .interpret import explain_clip, last_stage_modulator_map

    member = classifier.members[0]
    if not find_modulations(member.model):
        raise TaskError(f"--explain: {classifier.options[0].model} has no focal modulation layers (HorNet or the "
                        "gnConv mixer) to explain with")
    written: list[str] = []
    for i, path in enumerate(files[: args.explain]):
        wave = classifier.load(path)
        x = classifier.featurize(wave)
        fmap = last_stage_modulator_map(member.model, member.normalize(x[None]))[0]
        title = f"{path.name}: {rows[i]['label_1']} ({float(rows[i]['prob_1']):.2f})"
        paths = explain_clip(folder / f"{i:04d}_{path.stem}", wave, x, fmap, classifier.extractor, args.quantile,
                             title=title)
        written += [str(p) for p in paths.values()]
    return written


TASK = Task(name="esc50-predict", module="tasks.audio predict", doc=__doc__, add_options=add_options, run=predict,
            resolve=check, versions=("torchaudio", "soundfile"))
