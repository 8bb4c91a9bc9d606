# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Write a comparison's table: compare.md (baseline first, each variant's difference), compare.csv, compare.json."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = (
    "COLUMNS",
    "RANKING_MIN_EPOCHS",
    "Column",
    "run_notes",
    "settings_line",
    "write_csv",
    "write_json",
    "write_markdown",
)

# Below this many epochs RT-DETR has barely left its warm-up; differences between models are noise, not a ranking.
RANKING_MIN_EPOCHS = 50


@dataclass(frozen=True)
class Column:
    """One figure of the table.

    Attributes:
        key (str): Key in a model's result (and compare.csv header).
        header (str): Markdown header.
        show (Callable[[float], str]): Formats a value for the markdown table.
        relative (bool): The difference from the baseline is shown in percent (cost) instead of absolute (accuracy).
    """

    key: str
    header: str
    show: Callable[[float], str]
    relative: bool


def _accuracy(value: float) -> str:
    """Format an AP, precision or recall (0-1)."""
    return f"{value:.3f}"


COLUMNS = (
    Column("params", "params (M)", lambda v: f"{v / 1e6:.2f}", relative=True),
    Column("gflops", "GFLOPs", lambda v: f"{v:.1f}", relative=True),
    Column("mAP50", "mAP50", _accuracy, relative=False),
    Column("mAP50-95", "mAP50-95", _accuracy, relative=False),
    Column("AP_small", "AP small", _accuracy, relative=False),
    Column("AP_medium", "AP medium", _accuracy, relative=False),
    Column("AP_large", "AP large", _accuracy, relative=False),
    Column("precision", "P", _accuracy, relative=False),
    Column("recall", "R", _accuracy, relative=False),
    Column("train_s_per_epoch", "train s/epoch", lambda v: f"{v:.1f}", relative=True),
    Column("latency_ms", "latency ms", lambda v: f"{v:.1f}", relative=True),
)
CSV_FIELDS = ("name", "model", *(c.key for c in COLUMNS), "epochs", "val_images", "weights")
NO_VALUE = "–"  # an AP by size without objects of that size in the val split


def _cell(column: Column, value: float | None, baseline: float | None) -> str:
    """Format one markdown cell: the value and, for a variant, its difference from the baseline."""
    if value is None:
        return NO_VALUE
    text = column.show(value)
    if baseline is None:
        return text
    if column.relative:
        return f"{text} ({(value / baseline - 1) * 100:+.0f} %)" if baseline else text
    return f"{text} ({value - baseline:+.3f})"


def run_notes(epochs: int) -> list[str]:
    """Sentences the report puts above its table: that a run shorter than RANKING_MIN_EPOCHS ranks nothing."""
    if epochs >= RANKING_MIN_EPOCHS:
        return []
    return [
        f"A short run ({epochs} epochs): it shows that the comparison works and ranks nothing. Differences between "
        "these models are noise; compare on your own data with enough epochs (docs/compare.md)."
    ]


def settings_line(
    data_yaml: str, nc: int, val_images: int, args: dict[str, Any], environment: dict[str, Any], wall: float
) -> str:
    """The report's line naming the dataset, the train arguments, the device, the versions and the wall time.

    Args:
        data_yaml (str): Dataset YAML.
        nc (int): Its class count.
        val_images (int): Validation images.
        args (dict[str, Any]): Train arguments (``data`` is left out: named first).
        environment (dict[str, Any]): ``device`` (with ``name``) and ``versions`` (ultralytics, ultralytics-biformer,
            torch), as compare.json records them.
        wall (float): Wall time of the comparison in seconds.

    Returns:
        (str): One markdown line.
    """
    versions = environment["versions"]
    return (
        f"Dataset `{data_yaml}` ({nc} classes, {val_images} val images); "
        + ", ".join(f"{k}={v}" for k, v in args.items() if k != "data")
        + f"; device {environment['device']['name']}; ultralytics {versions['ultralytics']} "
        f"(ultralytics-biformer {versions['ultralytics-biformer']}), torch {versions['torch']}; {wall:.0f} s wall time."
    )


def write_markdown(path: Path, rows: list[dict[str, Any]], notes: list[str], settings_line: str) -> None:
    """Write compare.md: a table ready to paste into a report, the baseline first.

    Args:
        path (Path): Output file.
        rows (list[dict[str, Any]]): One result per model; the first is the baseline.
        notes (list[str]): Sentences printed above the table (e.g. that a short run ranks nothing).
        settings_line (str): One line naming the dataset, train arguments, device and versions.
    """
    baseline = rows[0]
    lines = [f"# Comparison against {baseline['name']}", "", *(f"**{n}**" for n in notes), ""]
    lines += ["| model | " + " | ".join(c.header for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for i, row in enumerate(rows):
        cells = [_cell(c, row[c.key], baseline[c.key] if i else None) for c in COLUMNS]
        lines.append(f"| {row['name']}{' (baseline)' if i == 0 else ''} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Variants show their difference from the baseline: absolute for AP, P and R; in percent for the costs. "
        f"{NO_VALUE}: no objects of that size in the val split. AP by size: faster-coco-eval's AP50-95 "
        "for objects under 32², 32²–96² and over 96² pixels of the original image. Latency: median of one-image "
        "forward passes (fused, fp32, no pre/post-processing), all models interleaved in one process. "
        "train s/epoch includes the per-epoch validation.",
        "",
        settings_line,
        "",
        "![mAP50-95 per epoch, and against latency and parameters](compare.png)",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write compare.csv: one row per model, full precision, empty cells for AP by sizes without objects."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write compare.json: every figure, the settings, versions and device."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
