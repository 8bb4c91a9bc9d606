# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Measure one trained model: upstream's validator with AP by object size, its size and cost, its training log."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ultralytics.engine.model import Model
from ultralytics.utils.torch_utils import get_flops

from .per_image import PerImageStats, keep_per_image_stats

__all__ = ("SIZES", "ap_by_size", "cost", "training_log", "validate")

SIZES = ("small", "medium", "large")  # COCO's area ranges: < 32², 32²–96², > 96² pixels of the original image
NO_OBJECTS = -1.0  # faster-coco-eval's AP for an area range without ground-truth objects
MAP_COLUMN = "metrics/mAP50-95(B)"  # upstream's results.csv column of the per-epoch validation


def validate(
    model: Model, data: str, imgsz: int, batch: int, device: str | int, save_dir: Path
) -> tuple[dict[str, Any], PerImageStats]:
    """Validate a model on the dataset's ``val`` split with upstream's validator and ``save_json=True``.

    With ``save_json=True`` upstream's detection validator builds COCO-format ground truth for any dataset and runs
    faster-coco-eval on the predictions, which adds AP for small, medium and large objects to its statistics. mAP50,
    mAP50-95, P and R are those of upstream's ``ap_per_class`` (the validator's table) on every dataset, so that the
    bootstrap, which recomputes them per image sample, reproduces them; on COCO and LVIS upstream's final statistics
    replace mAP with faster-coco-eval's.
    The validator is called as ``Model.val`` calls it, keeping the statistics ``Model.val`` does not return, and its
    per-image statistics (from which the bootstrap recomputes mAP50-95 on resampled images).

    Args:
        model (Model): An upstream model wrapper (YOLO or RTDETR) holding the trained network, or an exported one.
        data (str): Dataset YAML.
        imgsz (int): Validation image size.
        batch (int): Validation batch size.
        device (str | int): Device, as upstream takes it.
        save_dir (Path): Folder for the validator's outputs (``predictions.json``).

    Returns:
        (tuple[dict[str, Any], PerImageStats]): ``mAP50``, ``mAP50-95``, ``AP_small``, ``AP_medium``, ``AP_large``
            (None for a size without objects in the split), ``precision``, ``recall`` and ``val_images``; and the
            per-image statistics of the validation.
    """
    args = {
        **model.overrides,
        "rect": True,
        "data": data,
        "imgsz": imgsz,
        "batch": batch,
        "device": device,
        "split": "val",
        "save_json": True,
        "plots": False,
        "project": str(save_dir.parent),
        "name": save_dir.name,
        "exist_ok": True,
        "mode": "val",
    }
    callbacks = {event: list(functions) for event, functions in model.callbacks.items()}  # ours stay off the model
    validator = model.task_map[model.task]["validator"](args=args, _callbacks=callbacks)
    kept = keep_per_image_stats(validator)
    stats = validator(model=model.model)
    box = validator.metrics.box  # ap_per_class's figures (on COCO and LVIS, stats hold faster-coco-eval's)
    result = {
        "mAP50": float(box.map50),
        "mAP50-95": float(box.map),
        "precision": float(box.mp),
        "recall": float(box.mr),
        "val_images": validator.seen,
    }
    return {**result, **ap_by_size(stats)}, PerImageStats.from_validator(kept)


def ap_by_size(stats: dict[str, float]) -> dict[str, float | None]:
    """AP for small, medium and large objects from the validator's statistics; None where the split has none.

    Args:
        stats (dict[str, float]): The detection validator's statistics with ``save_json=True``
            (``metrics/mAP_small(B)`` etc.; faster-coco-eval reports -1 for an area range without objects).

    Returns:
        (dict[str, float | None]): ``AP_small``, ``AP_medium``, ``AP_large``.
    """
    values = {size: stats[f"metrics/mAP_{size}(B)"] for size in SIZES}
    return {f"AP_{size}": None if value == NO_OBJECTS else value for size, value in values.items()}


def cost(model: Model, imgsz: int) -> dict[str, float]:
    """Return a model's parameter count and its GFLOPs at ``imgsz`` as upstream counts them (``get_flops``).

    Args:
        model (Model): The trained model (not fused).
        imgsz (int): Square input size.

    Returns:
        (dict[str, float]): ``params`` and ``gflops``.
    """
    net = model.model.float()
    return {"params": sum(p.numel() for p in net.parameters()), "gflops": get_flops(net, imgsz)}


def training_log(results_csv: Path) -> dict[str, Any]:
    """Read a run's per-epoch mAP50-95 and its training time per epoch from upstream's ``results.csv``.

    Upstream's ``time`` column is the time since training started at the end of each epoch, its validation included.

    Args:
        results_csv (Path): The run's ``results.csv``.

    Returns:
        (dict[str, Any]): ``epochs`` (count), ``epoch_map`` (mAP50-95 per epoch) and ``train_s_per_epoch``.
    """
    with open(results_csv, newline="") as f:
        rows = [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    last = rows[-1]
    return {
        "epochs": int(last["epoch"]),
        "epoch_map": [row[MAP_COLUMN] for row in rows],
        "train_s_per_epoch": last["time"] / last["epoch"],
    }
