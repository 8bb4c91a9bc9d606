# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""AP by object size on a fixed case with known boxes: compare's validation against faster-coco-eval run directly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from faster_coco_eval import COCO, COCOeval_faster
from torch import nn

from ultralytics import RTDETR
from ultralytics.biformer.compare.evaluate import ap_by_size, validate

from .conftest import NARROW

SIDE = 320  # image side; validated at this size, so the validator's boxes are the images' own pixels
IMAGES = 4
# Ground truth of every image, pixel (x, y, w, h): one small (< 32²), one medium and one large (> 96²) object.
TRUTH = ((20, 30, 24, 24), (100, 40, 60, 60), (160, 150, 140, 140))
# The model's detections on every image: each object shifted right by d px, so IoU = (side - d) / (side + d):
# 20/28 = 0.71 (a match at IoU 0.50-0.70), 54/66 = 0.82 (0.50-0.80), 134/146 = 0.92 (0.50-0.90); and a medium false
# positive, away from every object, scored above them all. AP small 5/10 = 0.5; AP medium 7/10 x 0.5 = 0.35 (the four
# false positives rank above the four true ones); AP large 9/10 = 0.9.
SHIFTS = (4, 6, 6)
SCORES = (0.9, 0.8, 0.7)
FALSE_POSITIVE = ((10, 250, 40, 40), 0.95)
DETECTIONS = (*(((x + d, y, w, h), s) for (x, y, w, h), d, s in zip(TRUTH, SHIFTS, SCORES)), FALSE_POSITIVE)
EXPECTED_AP = {"small": 0.5, "medium": 0.35, "large": 0.9}


class FixedDetector(nn.Module):
    """A stand-in RT-DETR network whose output, whatever the image, is DETECTIONS (normalised cx, cy, w, h, score, cls).

    Attributes:
        names (dict[int, str]): Class names, as upstream's validator reads them from a model.
        output (torch.Tensor): The (N, 6) detections.
    """

    def __init__(self):
        """Build the fixed output."""
        super().__init__()
        self.names = {0: "box"}
        rows = [[(x + w / 2) / SIDE, (y + h / 2) / SIDE, w / SIDE, h / SIDE, s, 0] for (x, y, w, h), s in DETECTIONS]
        self.register_buffer("output", torch.tensor(rows, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return DETECTIONS for every image of the batch, shape (B, N, 6)."""
        return self.output.expand(x.shape[0], -1, -1)


def _dataset(root: Path) -> Path:
    """Write IMAGES blank images labelled with TRUTH (YOLO format) and their data YAML."""
    for split in "images", "labels":
        (root / split / "val").mkdir(parents=True)
    for i in range(IMAGES):  # labels: class cx cy w h, normalised
        cv2.imwrite(str(root / "images" / "val" / f"{i}.png"), np.full((SIDE, SIDE, 3), 114, np.uint8))
        rows = [f"0 {(x + w / 2) / SIDE} {(y + h / 2) / SIDE} {w / SIDE} {h / SIDE}" for x, y, w, h in TRUTH]
        (root / "labels" / "val" / f"{i}.txt").write_text("\n".join(rows) + "\n")
    data = root / "data.yaml"
    split = "images/val"
    data.write_text(yaml.safe_dump({"path": str(root), "train": split, "val": split, "names": {0: "box"}}))
    return data


def _faster_coco_eval() -> dict[str, float]:
    """faster-coco-eval's own statistics for TRUTH and DETECTIONS on IMAGES images."""
    truth = {
        "images": [{"id": i} for i in range(IMAGES)],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": i * 10 + j + 1, "image_id": i, "category_id": 1, "bbox": list(b), "area": b[2] * b[3], "iscrowd": 0}
            for i in range(IMAGES)
            for j, b in enumerate(TRUTH)
        ],
    }
    detections = [
        {"image_id": i, "category_id": 1, "bbox": list(b), "score": s} for i in range(IMAGES) for b, s in DETECTIONS
    ]
    anno = COCO(truth)
    evaluator = COCOeval_faster(anno, anno.loadRes(detections), iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats_as_dict


@pytest.fixture(scope="module")
def fixed_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[RTDETR, Path, Path]:
    """An RTDETR wrapper holding FixedDetector, the labelled images and a folder for the validator."""
    model = RTDETR(str(NARROW))
    model.model = FixedDetector()
    root = tmp_path_factory.mktemp("fixed-case")
    return model, _dataset(root / "data"), root / "val"


@pytest.mark.slow
def test_ap_by_size_equals_faster_coco_eval(fixed_case: tuple[RTDETR, Path, Path]):
    """compare's AP small/medium/large are faster-coco-eval's figures for the known boxes: 0.5, 0.35 and 0.9."""
    model, data, save_dir = fixed_case
    result, _ = validate(model, str(data), imgsz=SIDE, batch=2, device="cpu", save_dir=save_dir)
    reference = _faster_coco_eval()
    assert {size: reference[f"AP_{size}"] for size in EXPECTED_AP} == pytest.approx(EXPECTED_AP, abs=1e-6)
    assert {size: result[f"AP_{size}"] for size in EXPECTED_AP} == pytest.approx(
        {size: reference[f"AP_{size}"] for size in EXPECTED_AP}, abs=1e-6
    )
    assert result["val_images"] == IMAGES and (save_dir / "predictions.json").is_file()


@pytest.mark.slow
def test_map_precision_recall_equal_upstream_val(fixed_case: tuple[RTDETR, Path, Path], tmp_path: Path):
    """compare's mAP50, mAP50-95, P and R on the fixed case equal upstream's `model.val` on it (none trivial, P != R)."""
    model, data, save_dir = fixed_case
    result, _ = validate(model, str(data), imgsz=SIDE, batch=2, device="cpu", save_dir=save_dir)
    box = model.val(data=str(data), imgsz=SIDE, batch=2, project=str(tmp_path), plots=False).box
    expected = {"mAP50": box.map50, "mAP50-95": box.map, "precision": box.mp, "recall": box.mr}
    assert {k: result[k] for k in expected} == pytest.approx(expected, abs=1e-9)
    assert 0.1 < box.map < box.map50 and 0.1 < box.mp < box.mr


@pytest.mark.slow
def test_per_image_statistics_recompute_the_validators_map(fixed_case: tuple[RTDETR, Path, Path]):
    """The kept per-image statistics hold every image's detections and objects, and recompute the validator's own
    mAP50-95 exactly: the bootstrap's point estimate is the table's figure."""
    model, data, save_dir = fixed_case
    result, per_image = validate(model, str(data), imgsz=SIDE, batch=3, device="cpu", save_dir=save_dir)
    assert per_image.pred_counts.tolist() == [len(DETECTIONS)] * IMAGES  # batch 3: images of two batches
    assert per_image.target_counts.tolist() == [len(TRUTH)] * IMAGES
    assert per_image.map50_95() == pytest.approx(result["mAP50-95"], abs=1e-12) and result["mAP50-95"] > 0.1


def test_size_without_objects_reads_none():
    """faster-coco-eval's -1 for an area range without objects becomes None; every other value, 0 included, stays."""
    stats = {"metrics/mAP_small(B)": -1.0, "metrics/mAP_medium(B)": 0.0, "metrics/mAP_large(B)": 0.25}
    assert ap_by_size(stats) == {"AP_small": None, "AP_medium": 0.0, "AP_large": 0.25}
