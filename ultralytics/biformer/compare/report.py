# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Write a comparison's report: compare.md (mean ± spread over seeds, differences, verdicts, exports), .csv, .json."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = (
    "COLUMNS",
    "RANKING_MIN_EPOCHS",
    "STATISTICS",
    "Column",
    "run_notes",
    "seed_statistics",
    "settings_line",
    "summarize",
    "write_csv",
    "write_json",
    "write_markdown",
)

# Below this many epochs RT-DETR has barely left its warm-up; differences between models are noise, not a ranking.
RANKING_MIN_EPOCHS = 50
STATISTICS = ("mean", "sd", "min", "max")  # per model over its seeds; sd is the sample standard deviation


@dataclass(frozen=True)
class Column:
    """One figure of the table.

    Attributes:
        key (str): Key in a model's result (and compare.csv header).
        header (str): Markdown header.
        show (Callable[[float], str]): Formats a value for the markdown table.
        relative (bool): The difference from the baseline is shown in percent (cost) instead of absolute (accuracy).
        varies (bool): The figure can differ between seeds, so the table shows its spread.
    """

    key: str
    header: str
    show: Callable[[float], str]
    relative: bool
    varies: bool = True


def _accuracy(value: float) -> str:
    """Format an AP, precision or recall (0-1)."""
    return f"{value:.3f}"


COLUMNS = (
    Column("params", "params (M)", lambda v: f"{v / 1e6:.2f}", relative=True, varies=False),
    Column("gflops", "GFLOPs", lambda v: f"{v:.1f}", relative=True, varies=False),
    Column("mAP50", "mAP50", _accuracy, relative=False),
    Column("mAP50-95", "mAP50-95", _accuracy, relative=False),
    Column("AP_small", "AP small", _accuracy, relative=False),
    Column("AP_medium", "AP medium", _accuracy, relative=False),
    Column("AP_large", "AP large", _accuracy, relative=False),
    Column("precision", "P", _accuracy, relative=False),
    Column("recall", "R", _accuracy, relative=False),
    Column("train_s_per_epoch", "train s/epoch", lambda v: f"{v:.1f}", relative=True),
    Column("latency_ms", "latency ms", lambda v: f"{v:.1f}", relative=True, varies=False),  # once per model
)
CSV_FIELDS = ("name", "model", "seed", "statistic", *(c.key for c in COLUMNS), "epochs", "val_images", "weights")
RUN_ROW = "run"  # compare.csv's statistic of a (model, seed) row
NO_VALUE = "–"  # an AP by size without objects of that size in the val split
EXPORT_FLAG = "⚠"


def seed_statistics(values: list[float | None]) -> dict[str, float | None]:
    """Mean, sample standard deviation (None for one value), min and max; all None if any value is None."""
    if any(v is None for v in values):
        return dict.fromkeys(STATISTICS)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Each model's figures over its seeds.

    Args:
        rows (Sequence[dict[str, Any]]): One result per (model, seed), with ``name`` and every column's key.

    Returns:
        (dict[str, dict[str, dict[str, float | None]]]): Per model name (in order of appearance), per column key,
            the ``STATISTICS``.
    """
    names = list(dict.fromkeys(row["name"] for row in rows))
    return {
        name: {c.key: seed_statistics([row[c.key] for row in rows if row["name"] == name]) for c in COLUMNS}
        for name in names
    }


def _cell(column: Column, value: dict[str, float | None], baseline: dict[str, float | None] | None) -> str:
    """Format one markdown cell: the mean, its spread over seeds and, for a variant, its difference from baseline."""
    mean = value["mean"]
    if mean is None:
        return NO_VALUE
    text = column.show(mean)
    if column.varies and value["sd"] is not None:
        text += f" ± {column.show(value['sd'])}"
    if baseline is None:
        return text
    if column.relative:
        return f"{text} ({(mean / baseline['mean'] - 1) * 100:+.0f} %)" if baseline["mean"] else text
    return f"{text} ({mean - baseline['mean']:+.3f})"


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
        args (dict[str, Any]): Train arguments (``data`` is left out: named first; a ``seeds`` list is shown with
            commas).
        environment (dict[str, Any]): ``device`` (with ``name``) and ``versions`` (ultralytics, ultralytics-biformer,
            torch), as compare.json records them.
        wall (float): Wall time of the comparison in seconds.

    Returns:
        (str): One markdown line.
    """
    versions = environment["versions"]
    shown = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in args.items() if k != "data"}
    return (
        f"Dataset `{data_yaml}` ({nc} classes, {val_images} val images); "
        + ", ".join(f"{k}={v}" for k, v in shown.items())
        + f"; device {environment['device']['name']}; ultralytics {versions['ultralytics']} "
        f"(ultralytics-biformer {versions['ultralytics-biformer']}), torch {versions['torch']}; {wall:.0f} s wall time."
    )


def _table(summary: dict[str, dict[str, dict[str, float | None]]]) -> list[str]:
    """The main table's markdown lines: the baseline first, then each variant with its differences."""
    names = list(summary)
    lines = ["| model | " + " | ".join(c.header for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for i, name in enumerate(names):
        base = summary[names[0]] if i else None
        cells = [_cell(c, summary[name][c.key], base[c.key] if base else None) for c in COLUMNS]
        lines.append(f"| {name}{' (baseline)' if i == 0 else ''} | " + " | ".join(cells) + " |")
    return lines


def _verdicts(bootstrap: dict[str, Any]) -> list[str]:
    """The verdict lines: one per variant, with what the interval is."""
    lines = [
        "**Verdicts** (mAP50-95 points, variant minus baseline, mean over the seed pairs; "
        f"{bootstrap['confidence']:.0%} paired-bootstrap interval over the {bootstrap['images']} val images, "
        f"{bootstrap['resamples']} resamples, "
        f"random seed {bootstrap['seed']}):",
        "",
    ]
    lines += [f"- {name}: {interval['verdict']}" for name, interval in bootstrap["variants"].items()]
    return [*lines, ""]


def _exports(exports: list[dict[str, Any]]) -> list[str]:
    """The exported models' table: mAP50-95 and latency per (model, format), flagged beyond the tolerance."""
    lines = [
        "| model | format | mAP50-95 | vs PyTorch | tolerance | latency ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in exports:
        stat = row["mAP50-95"]
        text = _accuracy(stat["mean"]) + (f" ± {_accuracy(stat['sd'])}" if stat["sd"] is not None else "")
        tolerance = "–" if row["tolerance"] is None else f"± {row['tolerance']:.3f}"
        flag = f" {EXPORT_FLAG}" if row["flagged"] else ""
        lines.append(
            f"| {row['name']} | {row['format']} | {text} | {row['difference']:+.3f}{flag} | {tolerance} | "
            f"{row['latency_ms']:.1f} |"
        )
    return [
        "**Exported models** (each seed's best.pt exported at the comparison's image size, batch 1, fp32, validated "
        "with upstream's validator on the same split; mean over seeds):",
        "",
        *lines,
        "",
        f"vs PyTorch: the export's mAP50-95 minus its PyTorch model's. {EXPORT_FLAG}: the change exceeds the "
        "tolerance, half the width of the model's bootstrap interval (the baseline takes the narrowest of the "
        "variants'), so the export could change the verdict. Latency: as the table's, on the first seed's export.",
        "",
    ]


def write_markdown(
    path: Path,
    rows: list[dict[str, Any]],
    notes: list[str],
    settings_line: str,
    bootstrap: dict[str, Any] | None = None,
    exports: list[dict[str, Any]] | None = None,
) -> None:
    """Write compare.md: a table ready to paste into a report, the baseline first.

    Args:
        path (Path): Output file.
        rows (list[dict[str, Any]]): One result per (model, seed); the first model is the baseline.
        notes (list[str]): Sentences printed above the table (e.g. that a short run ranks nothing).
        settings_line (str): One line naming the dataset, train arguments, device and versions.
        bootstrap (dict[str, Any] | None): compare.json's ``bootstrap`` (the verdicts), or None (one model).
        exports (list[dict[str, Any]] | None): compare.json's ``exports`` per (model, format), or None.
    """
    summary = summarize(rows)
    seeds = list(dict.fromkeys(row["seed"] for row in rows))
    spread = (
        f"Each cell: the mean over seeds {', '.join(map(str, seeds))} ± the sample standard deviation (min and max "
        "in compare.csv). "
        if len(seeds) > 1
        else f"One seed ({seeds[0]}). "
    )
    lines = [f"# Comparison against {rows[0]['name']}", "", *(f"**{n}**" for n in notes), "", *_table(summary), ""]
    lines += [
        spread + "Variants show their difference from the baseline: absolute for AP, P and R; in percent for the "
        f"costs. {NO_VALUE}: no objects of that size in the val split. AP by size: faster-coco-eval's AP50-95 "
        "for objects under 32², 32²–96² and over 96² pixels of the original image. Latency: median of one-image "
        "forward passes (fused, fp32, no pre/post-processing) of the first seed's best.pt, all models interleaved "
        "in one process. train s/epoch includes the per-epoch validation.",
        "",
    ]
    if bootstrap:
        lines += _verdicts(bootstrap)
    if exports:
        lines += _exports(exports)
    lines += [settings_line, "", "![mAP50-95 per epoch, and against latency and parameters](compare.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write compare.csv: one row per (model, seed), then each model's mean, sd, min and max; full precision.

    Cells of AP by sizes without objects are empty, as is sd for a single seed.
    """
    summary = summarize(rows)
    by_name = {row["name"]: row for row in rows}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, "statistic": RUN_ROW} for row in rows)
        for name, figures in summary.items():
            for statistic in STATISTICS:
                values = {key: stats[statistic] for key, stats in figures.items()}
                writer.writerow({"name": name, "model": by_name[name]["model"], "statistic": statistic, **values})


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write compare.json: every figure, the settings, versions and device."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
