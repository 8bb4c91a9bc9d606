# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Learning check: a narrow HGBlock_Biformer RT-DETR overfits 8 generated images (mAP50 > 0.5) on one CPU core."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ultralytics import RTDETR
from ultralytics.nn.AddModules import HGBlock_Biformer

from synthetic_dataset import generate

NARROW_YAML = Path(__file__).parent / "assets" / "rtdetr-narrow-HGBlock_Biformer.yaml"
IMAGES = 8
EPOCHS = 60
MIN_MAP50 = 0.5
# nbs == batch: no gradient accumulation, so 8 images give 4 optimizer steps per epoch; augmentation off to overfit.
OVERFIT_ARGS = dict(
    imgsz=160,
    batch=2,
    nbs=2,
    optimizer="AdamW",
    lr0=0.001,
    warmup_epochs=1,
    mosaic=0.0,
    mixup=0.0,
    fliplr=0.0,
    hsv_h=0.0,
    hsv_s=0.0,
    hsv_v=0.0,
    translate=0.0,
    scale=0.0,
    workers=0,
    device="cpu",
    val=False,
    plots=False,
    seed=0,
    deterministic=True,
)


@pytest.mark.slow
def test_narrow_model_overfits_eight_images(tmp_path: Path):
    """Training the narrow variant on 8 images and validating on the same 8 reaches mAP50 > 0.5."""
    data = generate(tmp_path / "data", train=IMAGES, val=0, imgsz=160, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = RTDETR(NARROW_YAML)
        assert sum(isinstance(m, HGBlock_Biformer) for m in model.model.modules()) == 3
        metrics = model.train(
            data=str(data), epochs=EPOCHS, project=str(tmp_path / "runs"), name="overfit", **OVERFIT_ARGS
        )
    finally:
        torch.set_num_threads(threads)
    assert metrics.box.map50 > MIN_MAP50
