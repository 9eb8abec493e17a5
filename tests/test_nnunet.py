"""nnU-Net: its raw layout as an input of tasks.medical, and the Focal-UNet trainers inside nnU-Net v2 (plan and
preprocess, a few training iterations on the CPU, nnU-Net's predictor, deep-supervision shapes vs the trainer's scales),
all on tiny datasets the tests write in nnU-Net's raw layout."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monai")
nib = pytest.importorskip("nibabel")

from tasks.common.cli import TaskError  # noqa: E402
from tasks.medical import __main__ as medical  # noqa: E402
from tasks.medical.data import DataConfig, build_transforms, check_case, read_decathlon  # noqa: E402
from tasks.medical.nnunet_raw import write_nnunet_raw  # noqa: E402
from tasks.medical.synthetic import write_synthetic_decathlon  # noqa: E402


def _write_raw(root: Path, cases: int = 3, channels: int = 2, size: int = 16) -> Path:
    """A 3D dataset in nnU-Net's raw layout: `channels` files per case, labels 0/1, a v2 dataset.json."""
    root.mkdir(parents=True)
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    rng = np.random.RandomState(0)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    for i in range(cases):
        label = np.zeros((size,) * 3, np.uint8)
        label[2 + i: size // 2 + i, 3:-3, 4:-4] = 1
        for c in range(channels):
            image = (label * (c + 1.0) + rng.normal(0, 0.1, label.shape)).astype(np.float32)
            nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"case{i:02d}_{c:04d}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"case{i:02d}.nii.gz")
    info = {"channel_names": {str(c): f"mod{c}" for c in range(channels)}, "labels": {"background": 0, "blob": 1},
            "numTraining": cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(info))
    return root


def test_raw_layout_reads_as_decathlon(tmp_path: Path):
    root = _write_raw(tmp_path / "Dataset007_Blobs")
    ds = read_decathlon(root)
    assert ds.name == "Blobs" and ds.labels == {0: "background", 1: "blob"} and ds.modalities == ["mod0", "mod1"]
    assert len(ds.training) == 3 and ds.test == []
    case = ds.training[0]
    assert case["image"] == [str(root / "imagesTr" / f"case00_{c:04d}.nii.gz") for c in range(2)]
    check_case(case, ds.labels, spatial_dims=3, num_modalities=2)
    cfg = DataConfig(spatial_dims=3, roi_size=(16, 16, 16), intensity="zscore", crop_foreground=False)
    view = build_transforms(cfg, train=False)(case)  # MONAI stacks the channel files as the channel axis
    assert view["image"].shape == (2, 16, 16, 16) and view["label"].shape == (1, 16, 16, 16)
    raw = np.asarray(nib.load(case["image"][1]).dataobj)
    assert np.corrcoef(view["image"][1].numpy().ravel(), raw.ravel())[0, 1] > 0.99  # RAS already


def _edit(root: Path, **changes) -> None:
    info = json.loads((root / "dataset.json").read_text())
    info.update(changes)
    (root / "dataset.json").write_text(json.dumps(info))


def test_raw_layout_errors_name_the_file(tmp_path: Path):
    root = _write_raw(tmp_path / "Dataset008_Bad", channels=2)
    meta = root / "dataset.json"
    _edit(root, regions_class_order=[1])
    with pytest.raises(TaskError, match=rf"{meta}: unknown key\(s\) \['regions_class_order'\]"):
        read_decathlon(root)
    _edit(root, regions_class_order=None)
    info = json.loads(meta.read_text())
    del info["regions_class_order"]
    meta.write_text(json.dumps(info))
    (root / "imagesTr" / "case01_0001.nii.gz").unlink()
    with pytest.raises(TaskError, match=r"case01_0001.nii.gz: missing channel file of case 'case01'"):
        read_decathlon(root)
    _edit(root, channel_names={"0": "mod0"})  # now case01 has one channel, but case00 has an extra one
    with pytest.raises(TaskError, match=r"case00_0001.nii.gz: channel beyond the 1 declared"):
        read_decathlon(root)
    (root / "imagesTr" / "case01_0001.nii.gz").write_bytes((root / "imagesTr" / "case01_0000.nii.gz").read_bytes())
    _edit(root, channel_names={"0": "a", "1": "b"}, labels={"background": 0, "x": [1, 2]})
    with pytest.raises(TaskError, match=r"label 'x' is a region"):
        read_decathlon(root)
    _edit(root, labels={"background": 0, "blob": 1}, numTraining=5)
    with pytest.raises(TaskError, match=r"numTraining is 5 but"):
        read_decathlon(root)


FIT_3D = ["--spatial-dims", "3", "--roi-size", "32", "--feature-size", "8", "--depths", "1", "1", "--num-samples",
          "1", "--sw-batch-size", "2", "--print-every", "0", "--no-progress", "--max-steps", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def synthetic_raw(tmp_path_factory) -> Path:
    """The synthetic 3D set (32^3, labels 0/1/2, 5 training + 1 test case) in nnU-Net's raw layout."""
    tmp = tmp_path_factory.mktemp("nnunet")
    decathlon = write_synthetic_decathlon(tmp / "decathlon", spatial_dims=3, size=32, num_train=5, num_test=1)
    return write_nnunet_raw(read_decathlon(decathlon), tmp / "raw", 1, "Synth")


def test_fit_on_raw_folder(synthetic_raw: Path, tmp_path: Path):
    run = tmp_path / "run"
    metrics = medical.main(["fit", "--data", str(synthetic_raw), *FIT_3D, "--out", str(run)])
    assert metrics["steps"] == 2 and metrics["dataset"] == "Synthetic3D"
    [pred] = metrics["predictions"]
    image = nib.load(synthetic_raw / "imagesTr" / Path(pred).name.replace("_seg.nii.gz", ".nii.gz"))
    assert nib.load(pred).shape == image.shape
    np.testing.assert_allclose(nib.load(pred).affine, image.affine)


# ---- nnU-Net v2 itself -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planned(synthetic_raw: Path):
    """nnUNetv2_plan_and_preprocess (Python API, one process) for 2d and 3d_fullres; nnU-Net's env vars set.

    nnunetv2 2.7 reads its folders from the environment when `nnunetv2.paths` is first imported (2.8 on each use), so
    the variables are set before anything here imports nnunetv2."""
    if importlib.util.find_spec("nnunetv2") is None:
        pytest.skip("nnunetv2 is not installed (focalmod[nnunet])")
    work = synthetic_raw.parent.parent
    with pytest.MonkeyPatch.context() as env:
        for key, value in dict(nnUNet_raw=work / "raw", nnUNet_preprocessed=work / "preprocessed",
                               nnUNet_results=work / "results", nnUNet_n_proc_DA=1, nnUNet_def_n_proc=1,
                               OMP_NUM_THREADS=1, FOCALMOD_NNUNET_EPOCHS=2, FOCALMOD_NNUNET_ITERS=2,
                               FOCALMOD_NNUNET_VAL_ITERS=1).items():
            env.setenv(key, str(value))
        import nnunetv2.paths

        if str(nnunetv2.paths.nnUNet_raw) != str(work / "raw"):
            pytest.fail(f"nnunetv2.paths was imported before this fixture with nnUNet_raw={nnunetv2.paths.nnUNet_raw}"
                        "; nnunetv2 2.7 reads it once, so these tests must be the first to import nnunetv2")
        from focalmod.integrations.nnunet import TRAINER_FOLDER, install_trainers

        env.setenv("nnUNet_extTrainer", str(TRAINER_FOLDER))  # nnunetv2 2.8
        install_trainers()  # nnunetv2 2.7: the module inside its trainer package, as `train` writes it (2.8: None)
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprints,
            plan_experiments,
            preprocess,
        )

        threads = torch.get_num_threads()
        extract_fingerprints([1], num_processes=1, check_dataset_integrity=True)
        plan_experiments([1])
        preprocess([1], configurations=("2d", "3d_fullres"), num_processes=(1, 1))
        env.setenv("nnUNet_n_proc_DA", "0")  # training: augmentation in this process
        torch.set_num_threads(threads)
        yield work


def _trainer(name: str, configuration: str):
    from nnunetv2.run.run_training import get_trainer_from_args

    return get_trainer_from_args("1", configuration, 0, name, device=torch.device("cpu"))


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_deep_supervision_outputs_match_the_trainers_scales(planned, configuration):
    from focalmod.integrations.nnunet import FocalUNetDeepSupervision
    from focalmod.models import FocalUNet

    trainer = _trainer("nnUNetTrainerFocalUNet", configuration)
    patch = list(trainer.configuration_manager.patch_size)
    assert patch == [32] * len(patch)
    scales = trainer._get_deep_supervision_scales()
    heads = trainer.label_manager.num_segmentation_heads
    net = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, heads, True)
    assert isinstance(net, FocalUNetDeepSupervision) and len(net.encoder.layers) == 3  # 32 / (2 * 2**2) = 4 >= 4
    net.eval()
    x = torch.randn(2, 1, *patch)
    with torch.no_grad():
        outputs = net(x)
        net.deep_supervision = False
        single = net(x)
    assert len(outputs) == len(scales) == 3
    for out, scale in zip(outputs, scales):  # highest resolution first, at the trainer's scales
        assert out.shape == (2, heads, *[round(p * s) for p, s in zip(patch, scale)])
    torch.testing.assert_close(outputs[0], single)  # the tapped decoder is FocalUNet's own forward
    # nnU-Net's own deep-supervision loss takes them with targets downsampled by the same scales.
    targets = [torch.randint(0, heads, (2, 1, *o.shape[2:])).float() for o in outputs]
    assert torch.isfinite(trainer._build_loss()(outputs, targets))
    # The heads are the only addition to FocalUNet.
    plain = FocalUNet(len(patch), 1, heads, feature_size=net.encoder.embed_dim[0], depths=(2, 2, 2), decoder="focal",
                      decoder_depth=2)
    extra = sum(p.numel() for p in net.ds_heads.parameters())
    assert sum(p.numel() for p in net.parameters()) - extra == sum(p.numel() for p in plain.parameters())


def test_train_and_predict_on_cpu(planned: Path, synthetic_raw: Path, tmp_path: Path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import run_training

    run_training("1", "3d_fullres", 0, "nnUNetTrainerFocalUNetBudget", device=torch.device("cpu"))
    model = planned / "results" / "Dataset001_Synth" / "nnUNetTrainerFocalUNetBudget__nnUNetPlans__3d_fullres"
    fold = model / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}  # nnU-Net's own validation of fold 0
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 2 and checkpoint["init_args"]["configuration"] == "3d_fullres"

    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    out = tmp_path / "pred"
    out.mkdir()
    predictor.predict_from_files_sequential(str(synthetic_raw / "imagesTs"), str(out))
    [written] = sorted(out.glob("*.nii.gz"))
    image = nib.load(synthetic_raw / "imagesTs" / "synth_005_0000.nii.gz")
    assert written.name == "synth_005.nii.gz" and nib.load(written).shape == image.shape
    np.testing.assert_allclose(nib.load(written).affine, image.affine, atol=1e-5)
    assert set(np.unique(np.asarray(nib.load(written).dataobj))) <= {0, 1, 2}


def test_adamw_trainer_keeps_the_network_and_changes_the_optimiser(planned):
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    from focalmod.integrations.nnunet import FocalUNetDeepSupervision

    trainer = _trainer("nnUNetTrainerFocalUNetAdamW", "2d")
    trainer.initialize()
    assert isinstance(trainer.network, FocalUNetDeepSupervision)
    assert type(trainer.optimizer) is torch.optim.AdamW and isinstance(trainer.lr_scheduler, PolyLRScheduler)
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (1e-3, 5e-2, (0.9, 0.98))
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in trainer.network.parameters())
