"""The --data defaults sized to the data and the machine (issue #14): which preset a folder gets, what the sizing
rules choose, that flags win, and that the choice is announced and recorded in config.yaml."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from tasks.common import TaskError


def _folder(root: Path, n_train: int, side: int, classes=("a", "b")) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", 2)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n // len(classes) if split == "train" else n):
                Image.fromarray(rng.integers(0, 255, (side, side + 3, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png")
    return root


def test_image_folder_sizing_rules(tmp_path: Path, monkeypatch) -> None:
    from tasks.imagenet import sizing

    small = _folder(tmp_path / "small", 40, 28)
    big = _folder(tmp_path / "big", 300, 96)
    assert sizing.choose_preset(argparse.Namespace(data=None)) == "digits"
    assert sizing.choose_preset(argparse.Namespace(data=small)) == "folder"
    monkeypatch.setattr(sizing, "LARGE", 300)
    assert sizing.choose_preset(argparse.Namespace(data=big)) == "imagenet", "ImageNet-sized: the official recipe"
    unset = dict(input_size=None, epochs=None, batch_size=None)
    args = argparse.Namespace(data=small, **unset)
    line = sizing.size_to_data(args, gpu=False)
    assert (args.input_size, args.batch_size, args.epochs) == (32, 16, 100) and "40 training images" in line
    args = argparse.Namespace(data=big, **unset)
    sizing.size_to_data(args, gpu=False)
    assert (args.input_size, args.batch_size, args.epochs) == (64, 32, 67)
    sizing.size_to_data(args := argparse.Namespace(data=big, **unset), gpu=True)
    assert args.input_size == 128
    given = argparse.Namespace(data=big, input_size=48, epochs=3, batch_size=8)
    assert "as given" in sizing.size_to_data(given, gpu=False) and (given.input_size, given.epochs) == (48, 3)


def test_image_cli_announces_and_records_the_sized_options(tmp_path: Path, capsys) -> None:
    from tasks.imagenet import train

    data = _folder(tmp_path / "d", 8, 20)
    run = tmp_path / "run"
    metrics = train.main(["--data", str(data), "--out", str(run), "--epochs", "1", "--no-progress", "--threads", "1",
                          "--baseline-max-train", "0"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert metrics["preset"] == "folder" and config["model"] == "focalnet_small_data"
    assert (config["input_size"], config["batch_size"], config["epochs"]) == (32, 4, 1)
    out = capsys.readouterr().out
    assert "sized to the data: 8 training images on the CPU -> --input-size 32, --batch-size 4" in out
    assert "no baseline: disabled with --baseline-max-train 0" in out


def _esc50(root: Path, clips_per_fold: int) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("filename", "fold", "target", "category", "esc10", "src_file", "take"))
        for fold in range(1, 6):
            for i in range(clips_per_fold):
                name = f"{fold}-{fold}{i:03d}-A-{i % 2}.wav"
                sf.write(root / "audio" / name, np.zeros(1600, np.float32), 16000)
                writer.writerow((name, fold, i % 2, f"c{i % 2}", "False", f"{fold}{i:03d}", "A"))
    return root


def test_audio_sizing_rules_and_flags_win(tmp_path: Path) -> None:
    from tasks.audio.sizing import count_training_clips, size_to_data

    data = _esc50(tmp_path / "esc", 10)
    args = argparse.Namespace(data=data, esc10=False, protocol="cv", folds=[1], epochs=None, batch_size=None,
                              variant=None, embed_dim=None, model="focalnet2d", ensemble=None)
    assert count_training_clips(args) == 40
    assert count_training_clips(argparse.Namespace(**{**vars(args), "protocol": "paper-split"})) == 30
    line = size_to_data(args, 40, gpu=False)
    assert (args.epochs, args.batch_size, args.embed_dim, args.ensemble) == (80, 16, 32, 3)
    assert "40 training clips" in line
    size_to_data(tiny := argparse.Namespace(**{**vars(args), "batch_size": None}), 6, gpu=False)
    assert tiny.batch_size == 3, "at least two steps an epoch"
    size_to_data(args := argparse.Namespace(**{**vars(args), "epochs": None, "embed_dim": None}), 400, gpu=False)
    assert (args.epochs, args.embed_dim) == (30, 32)
    size_to_data(args := argparse.Namespace(**{**vars(args), "epochs": None, "embed_dim": None, "batch_size": None,
                                               "model": "focalnet1d", "ensemble": None}), 5000, gpu=True)
    assert (args.epochs, args.batch_size, args.embed_dim, args.ensemble) == (20, 32, 96, 1)
    size_to_data(small := argparse.Namespace(**{**vars(args), "embed_dim": None, "ensemble": None}), 400, gpu=False)
    assert (small.ensemble_models, small.ensemble, small.embed_dim) == (["focalnet1d:64", "focalnet2d:32"], 2, 64)
    size_to_data(chosen := argparse.Namespace(**{**vars(args), "embed_dim": None, "ensemble": None,
                                                 "ensemble_models": ["focalnet1d"] * 4}), 400, gpu=False)
    assert (chosen.ensemble_models, chosen.ensemble) == (["focalnet1d"] * 4, 4), "one member per entry"
    size_to_data(chosen := argparse.Namespace(**{**vars(args), "embed_dim": None, "ensemble": None,
                                                 "ensemble_models": ["focalnet2d"]}), 5000, gpu=False)
    assert (chosen.ensemble_models, chosen.ensemble) == (["focalnet2d"], 1)
    given = argparse.Namespace(**{**vars(args), "epochs": 2, "batch_size": 4, "embed_dim": 8, "ensemble": 2})
    assert "as given" in size_to_data(given, 400, gpu=False)
    assert (given.epochs, given.embed_dim, given.ensemble) == (2, 8, 2)


def test_audio_cli_sizes_to_data_and_paper_preset_keeps_the_old_recipe(tmp_path: Path, capsys) -> None:
    from tasks.audio.esc50 import TASK, main
    from tasks.common.lifecycle import resolve_options

    data = _esc50(tmp_path / "esc", 2)
    args, _, _ = resolve_options(TASK, ["--data", str(data)])
    assert args.preset == "esc50" and args.epochs is None and args.n_mels == 64, "the preset leaves them to sizing"
    paper, _, _ = resolve_options(TASK, ["--data", str(data), "--preset", "paper"])
    assert (paper.epochs, paper.batch_size, paper.n_mels, paper.mixup, paper.embed_dim) == (60, 32, 128, 0.2, None)
    with pytest.raises(TaskError, match="sizes the model and schedule to --data"):
        main(["--preset", "esc50", "--out", str(tmp_path / "none")])
    run = tmp_path / "run"
    main(["--data", str(data), "--out", str(run), "--folds", "1", "--clip-seconds", "0.1", "--hop-length", "40",
          "--epochs", "1", "--no-progress", "--no-cache"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["epochs"], config["batch_size"], config["embed_dim"], config["depths"]) == (1, 4, 64, [1, 1, 1])
    assert config["model"] == "focalnet1d" and config["global_pool"] == "avgmax" and config["ensemble"] == 2
    assert config["ensemble_models"] == ["focalnet1d:64", "focalnet2d:32"]
    log = capsys.readouterr().out
    assert ("sized to the data: 8 training clips on the CPU -> --batch-size 4, --embed-dim 64, --ensemble-models "
            "focalnet1d:64,focalnet2d:32, --ensemble 2") in log
    members = [run / "fold1" / d / "checkpoints" / "last.ckpt" for d in ("", "member1")]
    stems = [torch.load(c, map_location="cpu", weights_only=True)["state_dict"]["model.backbone.stem.proj.weight"]
             for c in members]
    assert [(s.ndim, s.shape[0]) for s in stems] == [(3, 64), (4, 32)], "a 1D member at width 64, a 2D one at 32"
    assert not (run / "fold1" / "member2").exists()


def test_medical_steps_scale_with_training_cases_and_flags_win():
    """tasks.medical.sizing: 80 steps per training case on a CPU (100 on a GPU), clamped to [200, 2000] / [200, 5000];
    a given --max-steps is kept and announced as given."""
    from tasks.medical.sizing import size_to_data

    def steps(num_train: int, gpu: bool, given: int | None = None) -> tuple[int, str]:
        args = argparse.Namespace(max_steps=given)
        line = size_to_data(args, num_train, gpu)
        return args.max_steps, line

    assert steps(10, gpu=False)[0] == 800  # a dozen volumes, 10 of them for training (docs/medical.md)
    assert steps(2, gpu=False)[0] == 200 and steps(100, gpu=False)[0] == 2000
    assert steps(10, gpu=True)[0] == 1000 and steps(100, gpu=True)[0] == 5000
    _, line = steps(10, gpu=False)
    assert "10 training cases" in line and "--max-steps 800" in line
    assert steps(10, gpu=False, given=7) == (7, "--max-steps 7 as given")
