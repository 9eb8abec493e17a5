"""ESC-50 task: synthetic generator, loader validation, resampling/down-mix, features + cache, models,
listenable explanations and the CLI end to end (tiny sizes)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from focalmod.interpret import METHODS, METRICS
from tasks.audio.data import ESC50_COLUMNS, FeatureCache, extract_features, load_waveform, read_esc50
from tasks.audio.features import FeatureConfig, FeatureExtractor, apply_gain
from tasks.audio.interpret import last_stage_modulator_map, listenable_explanation
from tasks.audio.models import build_model
from tasks.audio.synth import SYNTH_CLASSES, generate_synthetic_esc50
from tasks.common import TaskError

SR = 16000


def _write_esc50(root: Path, rows: list[tuple], seconds: float = 0.1, header=ESC50_COLUMNS) -> Path:
    """A small ESC-50 directory: one WAV per row (a tone) and meta/esc50.csv with `header`."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    t = np.arange(int(SR * seconds)) / SR
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            sf.write(root / "audio" / row[0], 0.5 * np.sin(2 * np.pi * 440 * t), SR)
    return root


def _rows(n_folds: int = 2) -> list[tuple]:
    return [(f"{f}-10{f}-A-{k}.wav", f, k, f"class{k}", str(k == 0), f"10{f}", "A")
            for f in range(1, n_folds + 1) for k in range(2)]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate_synthetic_esc50(tmp_path_factory.mktemp("synth"), num_classes=12, clips_per_class_per_fold=2,
                                    seconds=0.25)


def test_generator_writes_valid_esc50_layout(synth_root: Path) -> None:
    with open(synth_root / "meta" / "esc50.csv", newline="") as fh:
        assert tuple(next(csv.reader(fh))) == ESC50_COLUMNS
    index = read_esc50(synth_root)
    assert len(index.clips) == 5 * 12 * 2 and index.class_names == list(SYNTH_CLASSES)
    assert sorted(set(index.folds.tolist())) == [1, 2, 3, 4, 5]
    assert np.bincount(index.labels).tolist() == [10] * 12
    for clip in index.clips:
        assert re.fullmatch(rf"{clip.fold}-{clip.src_file}-{clip.take}-{clip.target}\.wav", clip.filename)
    folds_of_source = {}
    for clip in index.clips:  # the takes of one source never straddle folds (no leakage across folds)
        folds_of_source.setdefault(clip.src_file, set()).add(clip.fold)
    assert all(len(f) == 1 for f in folds_of_source.values())
    info = sf.info(index.path(index.clips[0]))
    assert (info.samplerate, info.frames, info.channels) == (SR, 4000, 1)
    assert len(read_esc50(synth_root, esc10=True).targets) == 10


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = generate_synthetic_esc50(tmp_path / "a", num_classes=3, clips_per_class_per_fold=1, seconds=0.1, seed=3)
    b = generate_synthetic_esc50(tmp_path / "b", num_classes=3, clips_per_class_per_fold=1, seconds=0.1, seed=3)
    names = sorted(p.name for p in (a / "audio").iterdir())
    assert names == sorted(p.name for p in (b / "audio").iterdir())
    assert all((a / "audio" / n).read_bytes() == (b / "audio" / n).read_bytes() for n in names)


def test_reader_accepts_valid_directory(tmp_path: Path) -> None:
    index = read_esc50(_write_esc50(tmp_path / "esc", _rows()))
    assert len(index.clips) == 4 and index.class_names == ["class0", "class1"]
    assert [c.filename for c in read_esc50(tmp_path / "esc", esc10=True).clips] == ["1-101-A-0.wav", "2-102-A-0.wav"]


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_file", r"missing: 2-102-A-1\.wav"),
        ("extra_file", r"not listed in esc50\.csv: 9-999-Z-0\.wav"),
        ("bad_columns", r"missing column\(s\) category"),
        ("fold_6", r"6-106-A-0\.wav\): fold 6 is out of range; ESC-50 folds are 1\.\.5"),
        ("target_50", r"1-101-A-50\.wav\): target 50 is out of range"),
        ("no_csv", r"meta/esc50\.csv not found"),
    ],
)
def test_reader_errors_name_the_problem(tmp_path: Path, case: str, pattern: str) -> None:
    rows = _rows()
    header = ESC50_COLUMNS
    if case == "fold_6":
        rows.append(("6-106-A-0.wav", 6, 0, "class0", "True", "106", "A"))
    if case == "target_50":
        rows.append(("1-101-A-50.wav", 1, 50, "class50", "False", "101", "A"))
    if case == "bad_columns":
        header = tuple("label" if c == "category" else c for c in ESC50_COLUMNS)
    root = _write_esc50(tmp_path / "esc", rows, header=header)
    if case == "missing_file":
        (root / "audio" / "2-102-A-1.wav").unlink()
    if case == "extra_file":
        sf.write(root / "audio" / "9-999-Z-0.wav", np.zeros(100), SR)
    if case == "no_csv":
        (root / "meta" / "esc50.csv").unlink()
    with pytest.raises(TaskError, match=pattern):
        read_esc50(root)


def test_zero_length_and_unreadable_wav_name_the_file(tmp_path: Path) -> None:
    empty, broken = tmp_path / "1-1-A-0.wav", tmp_path / "1-2-A-0.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    broken.write_bytes(b"RIFF\x00\x00\x00\x00this is not audio")
    with pytest.raises(TaskError, match=r"1-1-A-0\.wav is empty"):
        load_waveform(empty, SR, 1000)
    with pytest.raises(TaskError, match=r"cannot read WAV file .*1-2-A-0\.wav"):
        load_waveform(broken, SR, 1000)


def test_stereo_44k_is_resampled_and_downmixed(tmp_path: Path) -> None:
    t = np.arange(int(44100 * 0.3)) / 44100
    left = 0.8 * np.sin(2 * np.pi * 1000 * t)
    sf.write(tmp_path / "s.wav", np.stack([left, np.zeros_like(left)], axis=1), 44100)
    wave = load_waveform(tmp_path / "s.wav", SR, SR // 2, normalize="none")  # 0.3 s padded to 0.5 s
    assert wave.shape == (SR // 2,)
    body = wave[: int(0.28 * SR)].numpy()
    assert abs(np.abs(body[200:]).max() - 0.4) < 0.02  # mean of the two channels
    spectrum = np.abs(np.fft.rfft(body))
    assert abs(np.fft.rfftfreq(len(body), 1 / SR)[spectrum.argmax()] - 1000) < 10
    assert wave[int(0.31 * SR) :].abs().max() == 0  # zero padding at the end
    peak = load_waveform(tmp_path / "s.wav", SR, SR // 10)  # cropped, peak-normalised
    assert peak.shape == (SR // 10,) and abs(float(peak.abs().max()) - 1.0) < 1e-6


def test_repeat_pad_trims_silence_and_loops_the_sound(tmp_path: Path) -> None:
    # 16-bit WAV: 0.1 s of silence, a 0.2 s 440 Hz burst (first half loud, second half -20 dB), 0.3 s of silence:
    # a word in a longer window. 'repeat' keeps only the burst (both halves) and loops it over 1 s; 'zero' keeps
    # the silence.
    burst = np.sin(2 * np.pi * 440 * np.arange(int(0.2 * SR)) / SR) * np.repeat([0.8, 0.08], int(0.1 * SR))
    sf.write(tmp_path / "w.wav", np.concatenate([np.zeros(SR // 10), burst, np.zeros(3 * SR // 10)]), SR)
    looped = load_waveform(tmp_path / "w.wav", SR, SR, normalize="none", pad="repeat").numpy()
    assert looped.shape == (SR,)
    period = len(burst)
    np.testing.assert_allclose(looped[:period], burst, atol=1e-4)  # trimmed to the burst, quiet half kept
    np.testing.assert_allclose(looped[period:2 * period], burst, atol=1e-4)  # then repeated
    frames = looped[: SR // 100 * 100].reshape(100, -1)
    assert (np.abs(frames).max(axis=1) > 0.05).all()  # no silent 10 ms frame anywhere
    zero = load_waveform(tmp_path / "w.wav", SR, SR, normalize="none", pad="zero").numpy()
    assert np.abs(zero[: SR // 10]).max() == 0 and np.abs(zero[6 * SR // 10:]).max() == 0
    sf.write(tmp_path / "silent.wav", np.zeros(SR // 4), SR)  # nothing to trim to: stays silent, no error
    assert load_waveform(tmp_path / "silent.wav", SR, SR // 2, pad="repeat").abs().max() == 0
    with pytest.raises(ValueError, match="--pad must be one of zero, repeat"):
        load_waveform(tmp_path / "w.wav", SR, SR, pad="loop")


@pytest.mark.parametrize("kind", ["logmel", "stft"])
def test_features_shape_and_gain_in_feature_domain(kind: str) -> None:
    cfg = FeatureConfig(kind, SR, 0.25, n_fft=256, win_length=200, hop_length=80, n_mels=32, normalize="none")
    extractor = FeatureExtractor(cfg)
    wave = 0.3 * torch.randn(2, cfg.num_samples)
    feats = extractor(wave)
    assert feats.shape == (2, cfg.num_freq, cfg.num_frames)
    gained = apply_gain(feats, torch.tensor([6.0, -6.0]), kind)
    expected = extractor(wave * torch.tensor([[10 ** (6 / 20)], [10 ** (-6 / 20)]]))
    torch.testing.assert_close(gained, expected, atol=2e-3, rtol=1e-3)


def test_feature_cache_hits_and_invalidates(tmp_path: Path) -> None:
    root = _write_esc50(tmp_path / "esc", _rows())
    index = read_esc50(root)
    cfg = FeatureConfig("logmel", SR, 0.1, n_fft=256, win_length=200, hop_length=80, n_mels=16)
    first = FeatureCache(tmp_path / "cache", cfg.to_dict())
    a = extract_features(index, FeatureExtractor(cfg), first)
    second = FeatureCache(tmp_path / "cache", cfg.to_dict())
    b = extract_features(index, FeatureExtractor(cfg), second)
    assert (first.misses, first.hits, second.misses, second.hits) == (4, 0, 0, 4)
    torch.testing.assert_close(a, b)
    other = FeatureCache(tmp_path / "cache", {**cfg.to_dict(), "n_mels": 8})  # other params: recomputed
    extract_features(index, FeatureExtractor(FeatureConfig(**{**cfg.to_dict(), "n_mels": 8})), other)
    assert other.misses == 4
    sf.write(root / "audio" / "1-101-A-0.wav", np.zeros(800), SR)  # a changed file is recomputed
    third = FeatureCache(tmp_path / "cache", cfg.to_dict())
    c = extract_features(index, FeatureExtractor(cfg), third)
    assert (third.misses, third.hits) == (1, 3) and not torch.allclose(a[0], c[0])


@pytest.mark.parametrize("model, in_chans", [("focalnet2d", 1), ("focalnet2d", 3), ("focalnet1d", 1)])
def test_audio_models_and_modulator_maps(model: str, in_chans: int) -> None:
    net = build_model(model, 5, num_freq=16, num_frames=33, in_chans=in_chans, embed_dim=8, depths=(1, 1),
                            init="fan_in")
    feats = torch.randn(2, 16, 33)
    assert net(feats).shape == (2, 5)
    expected_input = (2, 16, 33) if model == "focalnet1d" else (2, in_chans, 33, 16)
    assert net.to_input(feats).shape == expected_input
    maps = last_stage_modulator_map(net, feats)
    assert maps.shape == (2, 33, 16) and (maps >= 0).all() and maps.std() > 0


@pytest.mark.parametrize("model", ["focalnet1d", "focalnet2d", "hornet"])
def test_global_pool_reaches_the_head(model: str) -> None:
    net = build_model(model, 3, 32, 64, embed_dim=8, depths=(1, 1), global_pool="avgmax")
    assert net.backbone.head.pool_type == "avgmax" and net(torch.randn(2, 32, 64)).shape == (2, 3)


def test_model_rejects_inputs_below_its_strides() -> None:
    with pytest.raises(TaskError, match="smaller than the 8 its strides need"):
        build_model("focalnet2d", 5, num_freq=6, num_frames=40, embed_dim=8, depths=(1, 1))


def test_imagenet_init_sums_the_stem_to_one_channel(tmp_path: Path) -> None:
    import focalmod

    source = focalmod.create_model("focalnet_tiny_srf", embed_dim=8, depths=(1, 1))
    torch.save(source.state_dict(), tmp_path / "in1k.pth")
    net = build_model("focalnet2d", 4, 16, 16, pretrained=tmp_path / "in1k.pth", in_chans=1, embed_dim=8,
                            depths=(1, 1))
    torch.testing.assert_close(net.backbone.stem.proj.weight, source.stem.proj.weight.sum(1, keepdim=True))
    torch.testing.assert_close(net.backbone.layers[1].blocks[0].modulation.h.weight,
                               source.layers[1].blocks[0].modulation.h.weight)
    assert net.backbone.head.fc.out_features == 4


def test_listenable_explanation_keeps_the_masked_region() -> None:
    cfg = FeatureConfig("logmel", SR, 0.5, n_fft=512, win_length=400, hop_length=160, n_mels=64, normalize="none")
    extractor = FeatureExtractor(cfg)
    t = torch.arange(cfg.num_samples) / SR
    low, high = torch.sin(2 * torch.pi * 500 * t), torch.sin(2 * torch.pi * 4000 * t)
    mel_hz = torch.tensor([float(f) for f in np.linspace(0, SR / 2, cfg.n_fft // 2 + 1)]) @ extractor.mel_fb
    mel_hz = mel_hz / extractor.mel_fb.sum(0)  # centre frequency of each mel band
    fmap = torch.exp(-(((mel_hz - 500) / 200) ** 2)).expand(cfg.num_frames, -1)  # (T, F): peaks at 500 Hz
    out, mask = listenable_explanation(low + high, fmap, extractor, quantile=0.9)
    assert out.shape == t.shape and 0.0 < float(mask.mean()) <= 0.2
    spectrum = torch.fft.rfft(out).abs()
    freqs = torch.fft.rfftfreq(len(out), 1 / SR)
    assert spectrum[(freqs - 500).abs() < 20].max() > 20 * spectrum[(freqs - 4000).abs() < 20].max()


def test_cli_tiny_two_folds(tmp_path: Path, capsys) -> None:
    from tasks.audio.esc50 import main

    out = tmp_path / "run"
    metrics = main([
        "--out", str(out), "--folds", "1,2", "--epochs", "1", "--synth-clips", "1", "--clip-seconds", "0.5",
        "--embed-dim", "8", "--depths", "1,1", "--batch-size", "12", "--explain", "1", "--no-progress",
        "--cache-dir", str(tmp_path / "cache"),
    ])
    saved = json.loads((out / "metrics.json").read_text())
    assert {"mean_accuracy", "std_accuracy", "fold_accuracy", "model", "features", "time"} <= set(saved)
    assert set(saved["fold_accuracy"]) == {"1", "2"} and 0.0 <= saved["mean_accuracy"] <= 1.0
    assert saved["mean_accuracy"] == pytest.approx(np.mean(list(saved["fold_accuracy"].values())))
    assert metrics["dataset"]["num_clips"] == 60 and saved["features"]["kind"] == "logmel"
    for fold in ("fold1", "fold2"):
        assert (out / fold / "confusion_matrix.png").stat().st_size > 1000
        assert (out / fold / "classification_report.txt").is_file() and (out / fold / "result.json").is_file()
        wavs = list((out / fold / "explanations").glob("*_explanation.wav"))
        assert len(wavs) == 1 and sf.info(wavs[0]).frames == 8000
        assert list((out / fold / "explanations").glob("*_map.png"))
        assert (out / fold / "explanations" / "methods.png").stat().st_size > 1000
        assert set(json.loads((out / fold / "result.json").read_text())["interpretability"]) == set(METHODS)
    assert (out / "confusion_matrix.csv").is_file() and (out / "config.yaml").is_file()
    base_folds = saved["baseline_fold_accuracy"]
    choices = {c["name"] for c in saved["baseline_fold_choice"].values()}  # chosen per fold by CV on its training folds
    assert set(base_folds) == set(saved["baseline_fold_choice"]) == {"1", "2"}
    assert saved["baseline"]["name"] == (choices.pop() if len(choices) == 1 else
                                         "MFCC statistics + RBF SVM or logistic regression (chosen per fold by CV)")
    assert saved["baseline"]["value"] == pytest.approx(np.mean(list(base_folds.values())))
    assert set(saved["interpretability"]) == set(METHODS)
    for method, scores in saved["interpretability"].items():
        assert set(scores) == set(METRICS), method
        assert 0.0 <= scores["fid_in"] <= 1.0 and 0.0 <= scores["deletion_auc"] <= 1.0
    printed = capsys.readouterr().out
    assert "mean accuracy" in printed and "| integrated_gradients |" in printed
    assert f"baseline {saved['baseline']['name']}: {saved['baseline']['value']:.4f}" in printed


def test_cli_hornet_scores_post_hoc_explanations_only(tmp_path: Path, capsys) -> None:
    from tasks.audio.esc50 import main

    out = tmp_path / "run"
    metrics = main([
        "--out", str(out), "--folds", "1", "--epochs", "1", "--synth-clips", "1", "--clip-seconds", "0.5",
        "--model", "hornet", "--embed-dim", "8", "--depths", "1,1", "--explain", "2", "--no-progress",
        "--cache-dir", str(tmp_path / "cache"), "--global-pool", "avgmax",
    ])
    assert metrics["model"]["overrides"]["global_pool"] == "avgmax"
    assert set(metrics["interpretability"]) == {"gradcam", "integrated_gradients", "random"}
    assert not list((out / "fold1" / "explanations").glob("*.wav"))
    assert "post-hoc scores only" in capsys.readouterr().out


def test_cli_bad_data_is_one_line_error(tmp_path: Path, capsys) -> None:
    from tasks.audio.esc50 import main
    from tasks.common import run_main

    with pytest.raises(SystemExit) as exc:
        run_main(main, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_resume_skips_done_folds_and_resumes_interrupted(tmp_path: Path, capsys) -> None:
    from tasks.audio.esc50 import main

    out = tmp_path / "run"
    args = ["--out", str(out), "--folds", "1,2", "--epochs", "2", "--synth-classes", "4", "--synth-clips", "2",
            "--clip-seconds", "0.5", "--embed-dim", "8", "--depths", "1,1", "--explain", "0", "--no-progress"]
    main(args)
    done = (out / "fold1" / "result.json").stat().st_mtime_ns
    (out / "fold2" / "result.json").unlink()  # fold 2 "interrupted" after its last checkpoint
    assert (out / "fold2" / "checkpoints" / "last.ckpt").is_file()
    capsys.readouterr()
    metrics = main(["--resume", str(out)])
    log = capsys.readouterr().out
    assert "fold1: done already" in log and "resuming from" in log
    assert (out / "fold1" / "result.json").stat().st_mtime_ns == done
    assert set(metrics["fold_accuracy"]) == {"1", "2"} and metrics["epochs"] == 2
    with open(out / "fold2" / "logs" / "metrics.csv", newline="") as fh:  # the pre-resume epochs are kept
        assert {r["epoch"] for r in csv.DictReader(fh) if r.get("val/acc")} == {"0", "1"}
    data = generate_synthetic_esc50(tmp_path / "esc", num_classes=4, clips_per_class_per_fold=2,
                                    sample_rate=22050, seconds=0.6)  # a --data directory at another rate
    paper = main(["--data", str(data), "--out", str(tmp_path / "paper"), "--protocol", "paper-split",
                  "--clip-seconds", "0.5", "--epochs", "1", "--embed-dim", "8", "--depths", "1,1", "--no-progress",
                  "--cache-dir", str(tmp_path / "cache")])
    assert set(paper["fold_accuracy"]) == {"5"} and (tmp_path / "paper" / "paper-split" / "result.json").is_file()
    assert paper["features"]["sample_rate"] == 16000 and paper["dataset"]["synthetic"] is False


def test_resume_from_the_shell_honours_flags_given_with_it(tmp_path: Path, monkeypatch) -> None:
    """`python -m tasks.audio.esc50 --resume RUN --folds 1,2` with argv read from sys.argv, as a shell starts it:
    fold 1 is kept, fold 2 is trained."""
    import sys

    from tasks.audio.esc50 import main

    out = tmp_path / "run"
    main(["--out", str(out), "--folds", "1", "--epochs", "1", "--synth-classes", "4", "--synth-clips", "2",
          "--clip-seconds", "0.5", "--embed-dim", "8", "--depths", "1,1", "--explain", "0", "--no-progress"])
    monkeypatch.setattr(sys, "argv", ["esc50.py", "--resume", str(out), "--folds", "1,2"])
    metrics = main()
    assert set(metrics["fold_accuracy"]) == {"1", "2"} and (out / "fold2" / "result.json").is_file()
    assert metrics["metric"] == {"name": "mean_accuracy", "value": metrics["mean_accuracy"]}
    assert metrics["model"]["overrides"]["embed_dim"] == 8, "the resumed run keeps its config.yaml's options"


def test_ensemble_averages_members_and_resumes_member_by_member(tmp_path: Path, capsys) -> None:
    """`--ensemble 2`: two members with different seeds, each with its own checkpoints; the split is scored on their
    averaged probabilities (recomputed here from the members' checkpoints); a run stopped after member 1 finished
    resumes member 2 and does not retrain member 1."""
    from tasks.audio.esc50 import main
    from tasks.audio.module import AudioClassifierModule

    out = tmp_path / "run"
    args = ["--out", str(out), "--folds", "1", "--epochs", "2", "--synth-classes", "4", "--synth-clips", "2",
            "--clip-seconds", "0.5", "--embed-dim", "8", "--depths", "1,1", "--explain", "0", "--no-progress",
            "--ensemble", "2", "--cache-dir", str(tmp_path / "cache")]
    metrics = main(args)
    assert metrics["ensemble"] == 2 and len(metrics["member_fold_accuracy"]["1"]) == 2
    ckpts = [out / "fold1" / "checkpoints" / "last.ckpt", out / "fold1" / "member1" / "checkpoints" / "last.ckpt"]
    states = [torch.load(c, map_location="cpu", weights_only=True)["state_dict"] for c in ckpts]
    assert not torch.equal(states[0]["model.backbone.head.fc.weight"], states[1]["model.backbone.head.fc.weight"])

    import argparse

    import yaml

    from tasks.audio.module import TrainConfig
    from tasks.audio.protocol import build_model_from_options

    run_args = argparse.Namespace(**yaml.safe_load((out / "config.yaml").read_text()))
    index = read_esc50(out / "synthetic_esc50")
    fcfg = FeatureConfig(**metrics["features"])
    feats = extract_features(index, FeatureExtractor(fcfg), FeatureCache(None, {}))[index.folds == 1]
    probs = []
    for state in states:  # the training-set mean and std are buffers of the checkpoint
        model = build_model_from_options(run_args, 4, fcfg)
        module = AudioClassifierModule(model, 4, fcfg.kind, 0.0, 1.0, TrainConfig())
        module.load_state_dict(state)
        with torch.no_grad():
            probs.append(module.eval()(feats).softmax(1))
    expected = torch.stack(probs).mean(0)
    predicted = json.loads((out / "fold1" / "result.json").read_text())["y_pred"]
    assert predicted == expected.argmax(1).tolist()
    with open(out / "fold1" / "predictions.csv", newline="") as fh:
        written = [float(row["probability"]) for row in csv.DictReader(fh)]
    torch.testing.assert_close(torch.tensor(written), expected.amax(1), atol=2e-6, rtol=0)

    (out / "fold1" / "result.json").unlink()  # stopped after member 2's last checkpoint, before the scoring
    member1 = ckpts[0].stat().st_mtime_ns
    capsys.readouterr()
    resumed = main(["--resume", str(out)])
    assert "resuming from" in capsys.readouterr().out
    assert ckpts[0].stat().st_mtime_ns == member1, "the finished member is not trained again"
    assert resumed["fold_accuracy"] == metrics["fold_accuracy"]


def test_ensemble_models_mixes_a_1d_and_a_2d_member(tmp_path: Path, capsys) -> None:
    """`--ensemble-models focalnet1d:8,focalnet2d:4`: member 1 is the 1D net at width 8, member 2 the 2D net at width
    4 (each its own checkpoint); the split is scored on their averaged probabilities; metrics.json lists both."""
    import argparse

    import yaml

    from tasks.audio.esc50 import main
    from tasks.audio.module import AudioClassifierModule, TrainConfig
    from tasks.audio.protocol import build_model_from_options, member_options

    out = tmp_path / "run"
    metrics = main(["--out", str(out), "--folds", "1", "--epochs", "2", "--synth-classes", "4", "--synth-clips", "2",
                    "--clip-seconds", "0.5", "--depths", "1,1", "--explain", "0", "--no-progress", "--ensemble", "2",
                    "--ensemble-models", "focalnet1d:8,focalnet2d:4", "--cache-dir", str(tmp_path / "cache")])
    assert [(m["name"], m["overrides"]["embed_dim"]) for m in metrics["members"]] == [("focalnet1d", 8),
                                                                                       ("focalnet2d", 4)]
    assert "focalnet1d/focalnet1d_tiny" in capsys.readouterr().out.split("ESC-50 (")[-1].split("+")[0]
    ckpts = [out / "fold1" / "checkpoints" / "last.ckpt", out / "fold1" / "member1" / "checkpoints" / "last.ckpt"]
    states = [torch.load(c, map_location="cpu", weights_only=True)["state_dict"] for c in ckpts]
    stems = [s["model.backbone.stem.proj.weight"] for s in states]
    assert (stems[0].ndim, stems[0].shape[0], stems[1].ndim, stems[1].shape[0]) == (3, 8, 4, 4), "1D then 2D"

    run_args = argparse.Namespace(**yaml.safe_load((out / "config.yaml").read_text()))
    index = read_esc50(out / "synthetic_esc50")
    fcfg = FeatureConfig(**metrics["features"])
    feats = extract_features(index, FeatureExtractor(fcfg), FeatureCache(None, {}))[index.folds == 1]
    probs = []
    for member, state in enumerate(states):
        model = build_model_from_options(member_options(run_args, member), 4, fcfg)
        module = AudioClassifierModule(model, 4, fcfg.kind, 0.0, 1.0, TrainConfig())
        module.load_state_dict(state)
        with torch.no_grad():
            probs.append(module.eval()(feats).softmax(1))
    predicted = json.loads((out / "fold1" / "result.json").read_text())["y_pred"]
    assert predicted == torch.stack(probs).mean(0).argmax(1).tolist()


@pytest.mark.parametrize("flags, pattern", [
    (["--ensemble-models", "focalnet1d,resnet"], "--ensemble-models: expected MODEL"),
    (["--ensemble-models", "focalnet1d:0"], "--ensemble-models: expected MODEL"),
    (["--ensemble-models", "focalnet1d,focalnet2d"], "--ensemble 1 trains fewer members than the 2"),
    (["--ensemble-models", "focalnet1d", "--variant", "focalnet1d_tiny"], "does not go with --variant"),
])
def test_ensemble_models_bad_values_are_named(tmp_path: Path, flags: list[str], pattern: str) -> None:
    from tasks.audio.esc50 import main

    with pytest.raises(TaskError, match=pattern):
        main(["--out", str(tmp_path / "run"), "--epochs", "1", *flags])
