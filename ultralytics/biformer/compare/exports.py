# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Exported-model accuracy: export a run's best.pt with upstream's exporter and validate the export on the same split.

The formats are those of the fork's parity matrix (docs/deploy.md): each is exported at the comparison's image size,
batch 1, fp32, and validated with upstream's validator through ``AutoBackend``, as ``yolo val model=best.onnx`` does.
Static exports are validated with square letterboxed images (upstream turns ``rect`` off for them), the PyTorch
model with ``rect=True``; on non-square images that alone can move mAP a little.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ultralytics import RTDETR, YOLO
from ultralytics.utils import LOGGER

from .evaluate import validate
from .inputs import CompareError, load_model
from .report import seed_statistics
from .train import BEST, PREFIX

__all__ = ("PARITY_FORMATS", "check_formats", "export_result", "export_summary", "flag_tolerance")

PARITY_FORMATS = ("torchscript", "onnx", "openvino")  # the formats of docs/deploy.md's parity matrix


def check_formats(formats: str | Sequence[str] | None) -> list[str]:
    """Resolve ``formats=``: None or empty for none, a comma-separated string or a list of parity-matrix formats.

    Args:
        formats (str | Sequence[str] | None): Export formats.

    Returns:
        (list[str]): The formats, in the order given, each once.

    Raises:
        CompareError: If a format is not one of ``PARITY_FORMATS``.
    """
    if not formats:
        return []
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    if unknown := [f for f in names if f not in PARITY_FORMATS]:
        raise CompareError(
            f"formats: {', '.join(unknown)} not in the parity matrix (allowed: {', '.join(PARITY_FORMATS)})"
        )
    return list(dict.fromkeys(names))


def _result_file(run_dir: Path, fmt: str) -> Path:
    """The record of one format's export of a run: written once the export is validated."""
    return run_dir / f"compare-export-{fmt}.json"


def export_result(run_dir: Path, fmt: str, args: dict[str, Any]) -> dict[str, Any]:
    """Export a finished run's best.pt to ``fmt`` and validate it, or read the record of an earlier export.

    Args:
        run_dir (Path): The run folder (``weights/best.pt`` inside).
        fmt (str): One of ``PARITY_FORMATS``.
        args (dict[str, Any]): The comparison's train arguments (``data``, ``imgsz``, ``batch``, ``device``).

    Returns:
        (dict[str, Any]): ``format``, ``file`` (relative to ``run_dir``), ``mAP50``, ``mAP50-95`` and the other
            validation figures of the export.
    """
    record = _result_file(run_dir, fmt)
    if record.is_file() and (run_dir / json.loads(record.read_text())["file"]).exists():
        return json.loads(record.read_text())
    model = load_model(str(run_dir / BEST))
    LOGGER.info(f"{PREFIX}{run_dir.parent.name}/{run_dir.name}: exporting best.pt to {fmt}")
    exported = Path(model.export(format=fmt, imgsz=args["imgsz"], device=args["device"], verbose=False))
    wrapper = RTDETR(str(exported)) if isinstance(model, RTDETR) else YOLO(str(exported), task=model.task)
    metrics, _ = validate(wrapper, args["data"], args["imgsz"], 1, args["device"], run_dir / f"val-{fmt}")
    result = {"format": fmt, "file": str(exported.relative_to(run_dir)), **metrics}
    record.write_text(json.dumps(result, indent=2))
    return result


def flag_tolerance(half_widths: dict[str, float | None], name: str, baseline: str) -> float | None:
    """The mAP50-95 change beyond which a model's export is flagged: half the width of its bootstrap interval.

    A variant uses its own interval against the baseline; the baseline, which has none, the narrowest of the
    variants' (the strictest). None when there is no interval (a comparison of one model).

    Args:
        half_widths (dict[str, float | None]): Half the interval width per variant name.
        name (str): The model whose export is checked.
        baseline (str): The baseline's name.

    Returns:
        (float | None): The tolerance (0-1 mAP), or None.
    """
    if name != baseline:
        return half_widths.get(name)
    widths = [w for w in half_widths.values() if w is not None]
    return min(widths) if widths else None


def export_summary(
    name: str, fmt: str, runs: list[dict[str, Any]], pytorch_map: float, tolerance: float | None, latency_ms: float
) -> dict[str, Any]:
    """One model's figures in one format, as compare.json's ``exports`` and compare.md's exports table hold them.

    Args:
        name (str): The model's run name.
        fmt (str): The export format.
        runs (list[dict[str, Any]]): ``export_result`` of each seed, with its ``seed``.
        pytorch_map (float): The model's PyTorch mAP50-95, mean over the same seeds.
        tolerance (float | None): ``flag_tolerance`` for the model.
        latency_ms (float): Latency of the first seed's export.

    Returns:
        (dict[str, Any]): ``name``, ``format``, ``mAP50-95`` (mean, sd, min, max over seeds), ``difference`` (export
            minus PyTorch, means), ``tolerance``, ``flagged`` (the difference exceeds the tolerance), ``latency_ms``
            and ``runs``.
    """
    figure = seed_statistics([run["mAP50-95"] for run in runs])
    difference = figure["mean"] - pytorch_map
    return {
        "name": name,
        "format": fmt,
        "mAP50-95": figure,
        "difference": difference,
        "tolerance": tolerance,
        "flagged": tolerance is not None and abs(difference) > tolerance,
        "latency_ms": latency_ms,
        "runs": runs,
    }
