"""tasks.coco: synthetic COCO set + loader round trip, bad-input handling, COCOeval wrapper, backbone builder,
checkpoint initialisation, and the train / eval CLIs end to end on tiny images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from tasks.coco.backbone import build_backbone
from tasks.coco.data import STAT_NAMES, CocoInstances, coco_evaluate, detections_to_coco, load_coco, resolve_split
from tasks.coco.synthetic import make_shapes_dataset
from tasks.common import TaskError, run_main

TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), num_train=24, num_val=6, image_size=64, seed=1)


# ---------------------------------------------------------------- synthetic set + loader


def test_synthetic_set_is_valid_coco(shapes: Path) -> None:
    coco = load_coco(shapes / "annotations" / "instances_train.json")
    assert sorted(coco.cats) == [1, 3, 5] and len(coco.imgs) == 24
    formats = set()
    for ann in coco.dataset["annotations"]:
        formats.add("polygon" if isinstance(ann["segmentation"], list) else "rle")
        mask = coco.annToMask(ann)
        assert mask.shape == (64, 64)
        assert mask.sum() == pytest.approx(ann["area"], abs=0.5)  # area is the decoded mask's pixel count
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert x - 1 <= xs.min() and xs.max() <= x + w + 1 and y - 1 <= ys.min() and ys.max() <= y + h + 1
    assert formats == {"polygon", "rle"}  # fully visible shapes as polygons, occluded ones as RLE
    assert (shapes / "train" / coco.imgs[1]["file_name"]).is_file()


def test_synthetic_set_is_reused_when_unchanged(shapes: Path) -> None:
    ann = shapes / "annotations" / "instances_val.json"
    before = ann.stat().st_mtime_ns
    make_shapes_dataset(shapes, num_train=24, num_val=6, image_size=64, seed=1)
    assert ann.stat().st_mtime_ns == before


def test_loader_targets_match_annotations(shapes: Path) -> None:
    ds = CocoInstances(*resolve_split(shapes, "train"), train=True)
    assert len(ds) == 24 and ds.category_ids == [1, 3, 5] and ds.category_names == ["circle", "square", "triangle"]
    image, target = ds[0]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
    n = len(target["labels"])
    assert n >= 1 and target["boxes"].shape == (n, 4) and target["masks"].shape == (n, 64, 64)
    assert set(target["labels"].tolist()) <= {1, 2, 3}
    for box, mask in zip(target["boxes"], target["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box[0] - 1 <= xs.min() and xs.max() <= box[2] + 1 and box[1] - 1 <= ys.min() and ys.max() <= box[3] + 1


def test_horizontal_flip_moves_boxes_with_masks(shapes: Path) -> None:
    ds = CocoInstances(*resolve_split(shapes, "train"), train=True)
    flipped = CocoInstances(*resolve_split(shapes, "train"), train=True, flip=True)
    image, target = ds[0]
    for seed in range(20):  # find a draw that flips
        torch.manual_seed(seed)
        fimage, ftarget = flipped[0]
        if not torch.equal(fimage, image):
            break
    assert torch.equal(fimage, image.flip(-1))
    assert torch.equal(ftarget["masks"], target["masks"].flip(-1))
    assert torch.allclose(ftarget["boxes"][:, [0, 2]], 64 - target["boxes"][:, [2, 0]])


# ---------------------------------------------------------------- bad input


def _write_coco(root: Path, images: list[dict], annotations: list[dict], categories: list[dict],
                skip_files: tuple[str, ...] = ()) -> tuple[Path, Path]:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    for img in images:
        if img["file_name"] not in skip_files:
            Image.new("RGB", (img["width"], img["height"]), (90, 30, 200)).save(root / "val" / img["file_name"])
    ann = root / "annotations" / "instances_val.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann, root / "val"


IMAGES = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
          {"id": 2, "file_name": "b.png", "width": 40, "height": 30}]
CATS = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]


def _ann(i: int, img: int, cat: int, bbox: list[float], **kw) -> dict:
    x, y, w, h = bbox
    poly = [x, y, x + w, y, x + w, y + h, x, y + h]
    return {"id": i, "image_id": img, "category_id": cat, "bbox": bbox, "area": w * h, "iscrowd": 0,
            "segmentation": [poly], **kw}


def test_missing_image_file_is_one_clear_error(tmp_path: Path) -> None:
    ann, images = _write_coco(tmp_path, IMAGES, [_ann(1, 1, 7, [1, 1, 5, 5])], CATS, skip_files=("b.png",))
    with pytest.raises(TaskError, match=r"1 of 2 images listed in .* are missing .*first: b\.png"):
        CocoInstances(ann, images)


def test_boxes_clipped_and_degenerate_dropped_with_counts(tmp_path: Path) -> None:
    anns = [
        _ann(1, 1, 7, [30, 20, 20, 20]),  # runs off the right/bottom edge -> clipped to (30, 20, 40, 30)
        _ann(2, 1, 3, [5, 5, 0, 8]),  # zero width -> dropped
        _ann(3, 1, 3, [50, 5, 4, 4]),  # entirely outside -> zero area after clipping -> dropped
        _ann(4, 1, 3, [2, 2, 6, 6], iscrowd=1),  # crowd: not a training target (COCOeval ignores it)
        _ann(5, 2, 3, [2, 2, 6, 6], segmentation=[[1, 2]]),  # polygon with one point -> unusable mask
    ]
    ds = CocoInstances(*_write_coco(tmp_path, IMAGES, anns, CATS), train=True)
    r = ds.report
    assert (r["clipped_boxes"], r["degenerate_boxes"], r["crowd"], r["invalid_segmentations"]) == (1, 2, 1, 1)
    assert len(ds) == 1 and r["images_without_usable_annotations"] == 1  # image 2 lost its only annotation
    _, target = ds[0]
    assert target["boxes"].tolist() == [[30.0, 20.0, 40.0, 30.0]] and target["labels"].tolist() == [2]
    summary = ds.summary()
    assert "1 images without usable annotations skipped" in summary and "2 degenerate boxes dropped" in summary


def test_non_contiguous_categories_map_to_labels_and_back(tmp_path: Path) -> None:
    anns = [_ann(1, 1, 7, [1, 1, 10, 10]), _ann(2, 1, 3, [20, 5, 10, 10])]
    ds = CocoInstances(*_write_coco(tmp_path, IMAGES, anns, CATS), train=True)
    assert ds.category_ids == [3, 7] and ds.label_of == {3: 1, 7: 2}
    _, target = ds[0]
    assert target["labels"].tolist() == [2, 1]
    output = {"boxes": torch.tensor([[1.0, 1.0, 11.0, 11.0]]), "scores": torch.tensor([0.9]),
              "labels": torch.tensor([2]), "masks": torch.ones(1, 1, 30, 40)}
    bbox, segm = detections_to_coco(1, output, ds.category_ids)
    assert bbox[0]["category_id"] == 7 and bbox[0]["bbox"] == [1.0, 1.0, 10.0, 10.0]
    assert segm[0]["category_id"] == 7 and mask_utils.area(segm[0]["segmentation"]) == 30 * 40
    with pytest.raises(TaskError, match=r"categories \[3, 7\] differ from the model's \[1, 2\]"):
        CocoInstances(ds.ann_file, ds.image_dir, category_ids=[1, 2])


def test_images_without_annotations_skipped_for_training_kept_for_eval(tmp_path: Path) -> None:
    ann, images = _write_coco(tmp_path, IMAGES, [_ann(1, 1, 7, [1, 1, 10, 10])], CATS)
    train, val = CocoInstances(ann, images, train=True), CocoInstances(ann, images, train=False)
    assert len(train) == 1 and train.report["images_without_annotations"] == 1
    assert len(val) == 2 and val[1][1]["boxes"].shape == (0, 4)


def test_unknown_references_and_malformed_files(tmp_path: Path) -> None:
    ann, images = _write_coco(tmp_path, IMAGES, [_ann(1, 1, 99, [1, 1, 5, 5])], CATS)
    with pytest.raises(TaskError, match="1 annotation.* category_id not in 'categories'.*category_id 99"):
        CocoInstances(ann, images)
    ann.write_text("{not json")
    with pytest.raises(TaskError, match="not a readable JSON file"):
        CocoInstances(ann, images)
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(TaskError, match="missing annotations, categories"):
        CocoInstances(ann, images)
    with pytest.raises(TaskError, match=r"no annotations/instances_train2017\.json .*found: instances_val\.json"):
        resolve_split(tmp_path, "train2017")


def test_image_size_disagreeing_with_json_is_an_error(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    ann, folder = _write_coco(tmp_path, images, [_ann(1, 1, 7, [1, 1, 5, 5])], CATS)
    Image.new("RGB", (30, 40)).save(folder / "a.png")
    with pytest.raises(TaskError, match=r"a\.png: size \(30, 40\) differs from width/height 40x30"):
        CocoInstances(ann, folder)[0]


# ---------------------------------------------------------------- COCOeval wrapper


def test_coco_evaluate_perfect_empty_and_missing_area_ranges(shapes: Path) -> None:
    coco = load_coco(shapes / "annotations" / "instances_val.json")
    bbox, segm = [], []
    for ann in coco.dataset["annotations"]:
        bbox.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"], "score": 1.0})
        rle = coco.annToRLE(ann)
        if isinstance(rle["counts"], bytes):  # polygons decode to bytes; stored RLE stays str
            rle["counts"] = rle["counts"].decode("ascii")
        segm.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle, "score": 1.0})
    for iou_type, results in (("bbox", bbox), ("segm", segm)):
        stats, table = coco_evaluate(coco, results, iou_type)
        assert set(stats) == set(STAT_NAMES) and stats["AP"] == pytest.approx(1.0) and stats["AP50"] == 1.0
        assert "Average Precision" in table
    wrong = [dict(r, category_id=3 if r["category_id"] != 3 else 1) for r in bbox]
    assert coco_evaluate(coco, wrong, "bbox")[0]["AP50"] == 0.0
    stats, _ = coco_evaluate(coco, [], "bbox")
    has_large = any(a["area"] > 96**2 for a in coco.dataset["annotations"])
    assert stats["AP"] == 0.0 and (stats["APl"] == 0.0 if has_large else stats["APl"] is None)


# ---------------------------------------------------------------- backbones


@pytest.mark.parametrize(
    "name, kwargs, channels",
    [
        ("focalnet_tiny_srf", TINY, [16, 32, 64, 128]),
        ("resnet50", {}, [256, 512, 1024, 2048]),
        ("convnext_atto", {}, [40, 80, 160, 320]),
        ("resnet18", {}, [64, 128, 256, 512]),  # timm: feature maps from stride 2, the builder maps by stride
    ],
)
def test_backbone_builder_channels_strides_and_fpn(name: str, kwargs: dict, channels: list[int]) -> None:
    backbone = build_backbone(name, out_channels=24, **kwargs)
    assert backbone.in_channels == channels and backbone.strides == [4, 8, 16, 32] and backbone.out_channels == 24
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [tuple(v.shape) for v in out.values()] == [(1, 24, 16, 24), (1, 24, 8, 12), (1, 24, 4, 6), (1, 24, 2, 3),
                                                     (1, 24, 1, 2)]


def test_swin_backbone_accepts_any_size() -> None:
    backbone = build_backbone("swin_tiny_patch4_window7_224", out_channels=16, embed_dim=24, depths=(1, 1, 1, 1),
                              num_heads=(1, 1, 1, 1))
    assert backbone.in_channels == [24, 48, 96, 192] and backbone.channels_last_output
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert tuple(out["0"].shape) == (1, 16, 16, 24)


def test_focal_window_override_and_bad_names() -> None:
    backbone = build_backbone("focalnet_tiny_srf", focal_windows=9, **TINY)
    kernels = [layer[0].kernel_size for layer in backbone.body.model.layers[0].blocks[0].modulation.focal_layers]
    assert kernels == [(9, 9), (11, 11)]
    with pytest.raises(TaskError, match="focal-window applies to FocalNet backbones only"):
        build_backbone("resnet50", focal_windows=9)
    with pytest.raises(TaskError, match="unknown FocalNet 'focalnet_tiny_xyz'"):
        build_backbone("focalnet_tiny_xyz")
    with pytest.raises(TaskError, match="neither a focalmod FocalNet"):
        build_backbone("no_such_model_anywhere")


def test_build_detector_heads_and_norms() -> None:
    from tasks.coco.module import build_model

    cfg = dict(backbone="focalnet_tiny_srf", backbone_overrides=TINY, fpn_channels=16, min_size=[64], max_size=64,
               box_head_dim=32, mask_head_dim=16, mask_head_layers=1)
    faster = build_model({**cfg, "detector": "fasterrcnn"}, num_classes=3)
    assert faster.roi_heads.mask_head is None and faster.roi_heads.box_predictor.cls_score.out_features == 4
    gn = build_model({**cfg, "head_norm": "gn", "box_head_convs": 2}, num_classes=3)
    for part in (gn.backbone.fpn, gn.roi_heads.box_head, gn.roi_heads.mask_head):
        assert any(isinstance(m, torch.nn.GroupNorm) for m in part.modules())
    plain = build_model(cfg, num_classes=3)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in plain.modules())
    plain.eval()
    with torch.no_grad():
        out = plain([torch.rand(3, 64, 80)])[0]
    assert set(out) == {"boxes", "labels", "scores", "masks"} and out["masks"].shape[-2:] == (64, 80)
    with pytest.raises(ValueError, match="anchor_sizes needs one size per feature map"):
        build_model({**cfg, "anchor_sizes": [8, 16]}, num_classes=3)


def test_imagenet_checkpoint_init_pads_kernels_centrally(tmp_path: Path) -> None:
    pytest.importorskip("focalmod.checkpoints")
    import focalmod

    classifier = focalmod.create_model("focalnet_tiny_srf", focal_windows=3, **TINY)
    path = tmp_path / "in1k.pth"
    torch.save({"model": classifier.state_dict()}, path)
    backbone = build_backbone("focalnet_tiny_srf", checkpoint=path, focal_windows=9, **TINY)
    src = classifier.layers[1].blocks[0].modulation.focal_layers[0][0].weight.detach()  # 3x3 -> 9x9, zero-padded
    dst = backbone.body.model.layers[1].blocks[0].modulation.focal_layers[0][0].weight.detach()
    assert dst.shape[-1] == 9 and torch.equal(dst[..., 3:6, 3:6], src)
    assert dst.abs().sum() == pytest.approx(src.abs().sum().item())
    assert torch.equal(backbone.body.model.stem.proj.weight, classifier.stem.proj.weight)


def test_mmdet_detector_checkpoint_loads_backbone_and_output_norms(tmp_path: Path) -> None:
    pytest.importorskip("focalmod.checkpoints")
    source = build_backbone("focalnet_tiny_srf", focal_windows=9, **TINY)
    for norm in source.out_norms:
        torch.nn.init.normal_(norm.weight)
    sd = {}
    for key, value in source.body.model.state_dict().items():  # ours -> official / mmdet names (reference Sec. 5)
        key = key.replace("stem.", "patch_embed.")
        if ".downsample." in key:
            i = int(key.split(".")[1])
            key = f"layers.{i - 1}." + key.split(".", 2)[2]
        sd["backbone." + key] = value
    for i, norm in enumerate(source.out_norms):
        sd.update({f"backbone.norm{i}.weight": norm.weight, f"backbone.norm{i}.bias": norm.bias})
    sd["neck.lateral_convs.0.conv.weight"] = torch.zeros(1)
    path = tmp_path / "mask_rcnn_focalnet.pth"
    torch.save({"state_dict": sd, "meta": {"epoch": 12}}, path)
    target = build_backbone("focalnet_tiny_srf", checkpoint=path, focal_windows=9, **TINY)
    for (k, a), b in zip(source.body.state_dict().items(), target.body.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(source.out_norms, target.out_norms))


# ---------------------------------------------------------------- CLIs end to end

TINY_CLI = [
    "--synthetic-train", "8", "--synthetic-val", "4", "--synthetic-size", "64", "--min-size", "64", "--max-size",
    "64", "--backbone-arg", "embed_dim=16", "--backbone-arg", "depths=[1,1,1,1]", "--fpn-channels", "16",
    "--box-head-dim", "32", "--mask-head-dim", "16", "--mask-head-layers", "1", "--rpn-pre-nms-train", "50",
    "--rpn-post-nms-train", "30", "--rpn-pre-nms-test", "50", "--rpn-post-nms-test", "30", "--box-batch-size", "16",
    "--batch-size", "4", "--epochs", "1", "--warmup-steps", "1", "--accelerator", "cpu", "--devices", "1",
    "--no-progress",
]


def _check_metrics(metrics: dict) -> None:
    for iou_type in ("bbox", "segm"):
        assert set(metrics[iou_type]) == set(STAT_NAMES)
        assert all(v is None or 0.0 <= v <= 1.0 for v in metrics[iou_type].values())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from tasks.coco import train

    run = tmp_path_factory.mktemp("coco_run")
    train.main([*TINY_CLI, "--out", str(run)])
    return run


def test_train_cli_writes_run_dir_and_coco_metrics(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    _check_metrics(metrics)
    assert metrics["model"] == "focalnet_tiny_srf" and metrics["epochs"] == 1 and metrics["train_seconds"] > 0
    assert metrics["num_eval_images"] == 4
    assert metrics["baseline"] is None and "no simple, well-known baseline" in metrics["baseline_note"]
    for name in ("config.yaml", "checkpoints/last.ckpt", "logs/metrics.csv", "data/annotations/instances_val.json"):
        assert (trained_run / name).is_file(), name
    coco = load_coco(trained_run / "data" / "annotations" / "instances_val.json")
    for iou_type in ("bbox", "segm"):
        results = json.loads((trained_run / f"results_val_{iou_type}.json").read_text())
        if results:  # a COCO results file pycocotools accepts, with the dataset's own category ids
            coco.loadRes(results)
            assert {r["category_id"] for r in results} <= {1, 3, 5}


def test_validate_reproduces_training_metrics(trained_run: Path, tmp_path: Path) -> None:
    from tasks.coco.__main__ import main as coco

    metrics = coco(["validate", "--run", str(trained_run / "checkpoints" / "last.ckpt"), "--out",
                              str(tmp_path), "--accelerator", "cpu", "--no-progress"])
    _check_metrics(metrics)
    trained = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["bbox"] == trained["bbox"] and metrics["segm"] == trained["segm"]
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "results_val_segm.json").is_file()


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from tasks.coco import train
    from tasks.coco.__main__ import main as coco

    with pytest.raises(SystemExit) as exit_info:
        run_main(coco, ["validate", "--run", str(tmp_path / "missing.ckpt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--run: " in err and "neither a run directory nor a .ckpt" in err
    with pytest.raises(SystemExit):
        run_main(train.main, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert err.startswith("error: --data:") and "is not a directory" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_resume_continues_to_more_epochs(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    from tasks.coco import train

    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    metrics = train.main(["--resume", str(run), "--epochs", "2"])
    assert metrics["epochs"] == 2
    _check_metrics(json.loads((run / "metrics.json").read_text()))


@pytest.mark.slow
def test_ddp_two_cpu_processes_evaluate_every_image_once(tmp_path: Path) -> None:
    """`--strategy ddp --devices 2` on CPU (gloo), no --data: rank 0 writes the synthetic set while rank 1 waits
    for it; 5 val images split 3/2 (the sampler pads rank 1 with a repeat), gathered by image id before COCOeval,
    so the run's results equal a one-process eval of the same checkpoint."""
    import os
    import subprocess
    import sys

    from tasks.coco.__main__ import main as coco

    repo = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tasks.coco.train", *TINY_CLI, "--synthetic-val", "5", "--out", str(run),
           "--strategy", "ddp"]
    cmd[cmd.index("--devices") + 1] = "2"
    cmd[cmd.index("--batch-size") + 1] = "2"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["num_eval_images"] == 5
    single = coco(["validate", "--run", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "eval"),
                             "--accelerator", "cpu", "--no-progress"])
    assert single["bbox"] == trained["bbox"] and single["segm"] == trained["segm"]

    def detections(path: Path) -> list[tuple]:
        return sorted((d["image_id"], d["category_id"], *np.round(d["bbox"], 2), round(d["score"], 4))
                      for d in json.loads(path.read_text()))

    ddp_dets = detections(run / "results_val_bbox.json")
    one_dets = detections(tmp_path / "eval" / "results_val_bbox.json")
    assert {d[0] for d in ddp_dets} == {d[0] for d in one_dets} and len({d[0] for d in ddp_dets}) == 5  # non-vacuous
    assert ddp_dets == one_dets


def test_resume_from_the_shell_honours_flags_given_with_it(trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    """`python -m tasks.coco.train --resume RUN --epochs 2` with argv read from sys.argv, as a shell starts it."""
    import shutil
    import sys

    from tasks.coco import train

    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    monkeypatch.setattr(sys, "argv", ["train.py", "--resume", str(run), "--epochs", "2"])
    metrics = train.main()
    assert metrics["epochs"] == 2 and metrics["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert metrics["metric"]["name"] == "bbox/AP50" and metrics["metric"]["value"] == metrics["bbox"]["AP50"]
