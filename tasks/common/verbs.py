"""`python -m tasks.<task> VERB [options]`: one command per task whose verbs run on the shared lifecycle.

    fit        train (the training CLI itself: `python -m tasks.imagenet.train` is `python -m tasks.imagenet fit`)
    validate   score a trained run (or weights) on a labelled split: metrics.json in the one schema
    predict    apply a trained run to the user's files: a file, a folder or a glob; the field's output format
    export     a trained run -> the formats of the field (timm / Hugging Face folder, ONNX, MONAI bundle)

Each verb is a `Task` (its options, its run), so every verb gets the same run directory, config.yaml, metrics.json,
progress, SIGTERM handling and error reporting; a verb that applies a trained run takes `--run RUN_DIR` and reads
everything it needs (model, classes, preprocessing) from that run (`tasks.common.trained.TrainedRun`).
"""
from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from .cli import TaskError
from .lifecycle import Task, run_task

VERB_ORDER = ("fit", "validate", "predict", "export")


@dataclass(frozen=True)
class TaskCommand:
    """`python -m <package> VERB ...` for one task: `fit` is its training `Task` (shown as `python -m <package> fit`
    in help and resume commands), the other verbs their own `Task`s. `main(argv)` runs the verb `argv` names."""

    package: str
    doc: str
    verbs: dict[str, Task]

    @classmethod
    def of(cls, package: str, doc: str, fit: Task, **verbs: Task) -> TaskCommand:
        return cls(package, doc, {"fit": verb_task(fit, package, "fit"), **verbs})

    def main(self, argv: Sequence[str] | None = None) -> Any:
        """Run a verb; returns the content of its metrics.json. `argv` None: the command line."""
        return run_verbs(self.package, self.doc, self.verbs, argv)


def verb_task(task: Task, package: str, verb: str) -> Task:
    """`task` as the verb `verb` of `python -m <package>` (help, printed resume command), e.g. the training
    `Task` of `tasks.imagenet.train` as `python -m tasks.imagenet fit`."""
    return replace(task, module=f"{package} {verb}")


def run_verbs(package: str, doc: str, verbs: Mapping[str, Task], argv: Sequence[str] | None = None) -> Any:
    """Dispatch `argv` (None: the command line) to the verb it names; `--help` (or nothing) lists the verbs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    listing = "\n".join(f"  {name:<9} {_first_line(verbs[name].doc)}" for name in _ordered(verbs))
    usage = f"usage: python -m {package} {{{','.join(_ordered(verbs))}}} [options]\n\n{doc.strip()}\n\nverbs:\n" \
            f"{listing}\n\n`python -m {package} VERB --help` explains each verb's options."
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        if not argv:
            raise TaskError(f"name a verb: {', '.join(_ordered(verbs))}")
        return None
    verb, rest = argv[0], argv[1:]
    if verb not in verbs:
        raise TaskError(f"unknown verb {verb!r} for python -m {package}; choose from {', '.join(_ordered(verbs))}")
    return run_task(verbs[verb], rest)


def add_run_option(parser: argparse.ArgumentParser, training: str, default_help: str = "") -> None:
    """`--run`: the trained run a verb applies (its directory or one of its .ckpt files)."""
    parser.add_argument("--run", type=Path, help=f"a run directory written by `{training}` (its best.ckpt, else "
                        f"last.ckpt) or a .ckpt in its checkpoints/{default_help}")


def find_inputs(specs: Sequence[str | Path] | None, suffixes: Sequence[str], option: str = "--inputs") -> list[Path]:
    """The files a user names: each spec is a file, a folder (searched recursively for `suffixes`) or a glob
    pattern; sorted, without duplicates. One `TaskError` naming `option` when a spec matches nothing."""
    if not specs:
        raise TaskError(f"{option}: give a file, a folder or a glob pattern of {'/'.join(suffixes)} files")
    wanted = tuple(s.lower() for s in suffixes)
    found: dict[Path, None] = {}
    for spec in map(str, specs):
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(wanted))
            if not files:
                raise TaskError(f"{option}: no {'/'.join(suffixes)} files under {path}")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(spec):
            files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not files:
                raise TaskError(f"{option}: the pattern {spec} matches no file")
        else:
            raise TaskError(f"{option}: {path} does not exist (expected a file, a folder or a glob pattern)")
        found.update(dict.fromkeys(files))
    return list(found)


def _ordered(verbs: Mapping[str, Task]) -> list[str]:
    return sorted(verbs, key=lambda v: (VERB_ORDER.index(v) if v in VERB_ORDER else len(VERB_ORDER), v))


def _first_line(doc: str) -> str:
    return doc.strip().splitlines()[0] if doc.strip() else ""
