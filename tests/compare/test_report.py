# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The comparison's table holds the numbers of each run's own results.csv, checkpoint and upstream validator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ultralytics import RTDETR
from ultralytics.biformer.compare import report as compare_report
from ultralytics.biformer.compare.report import RANKING_MIN_EPOCHS, run_notes, settings_line

from .conftest import IMGSZ, RUN_NAMES, read_csv

TIME_COLUMNS = {"time", "train_s_per_epoch", "latency_ms", "name", "weights"}  # differ between identical runs


@pytest.mark.slow
def test_writes_four_files_with_one_row_per_model(compared: Path, report: dict):
    """compare.md, .csv, .json and .png exist; csv and json hold one row per model, the baseline first."""
    assert sorted(p.name for p in compared.glob("compare.*")) == [
        "compare.csv",
        "compare.json",
        "compare.md",
        "compare.png",
    ]
    assert [row["name"] for row in read_csv(compared / "compare.csv")] == list(RUN_NAMES)
    assert [row["name"] for row in report["models"]] == list(RUN_NAMES) and report["baseline"] == RUN_NAMES[0]
    assert report["settings"]["epochs"] == 2 and report["settings"]["imgsz"] == IMGSZ
    assert report["settings"]["seed"] == 0 and report["versions"]["ultralytics"] == "8.4.190"
    assert report["device"]["torch"] == "cpu"


@pytest.mark.slow
def test_short_run_says_it_ranks_nothing(compared: Path, report: dict):
    """A 2-epoch run says plainly, in compare.md and compare.json, that it ranks nothing."""
    assert "A short run (2 epochs)" in report["notes"][0] and "ranks nothing" in report["notes"][0]
    assert f"**{report['notes'][0]}**" in (compared / "compare.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_training_figures_equal_results_csv(compared: Path, report: dict, index: int):
    """Epochs, time per epoch and the per-epoch mAP50-95 curve are those of the run's own results.csv."""
    rows = read_csv(compared / RUN_NAMES[index] / "results.csv")
    table = read_csv(compared / "compare.csv")[index]
    assert int(table["epochs"]) == len(rows) == 2
    assert float(table["train_s_per_epoch"]) == pytest.approx(float(rows[-1]["time"]) / 2, rel=1e-12)
    assert report["models"][index]["epoch_map"] == [float(r["metrics/mAP50-95(B)"]) for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_accuracy_and_cost_equal_upstream_on_best_pt(compared: Path, data_yaml: Path, tmp_path: Path, index: int):
    """mAP50, mAP50-95, P, R equal upstream's `model.val` on best.pt; params and GFLOPs equal upstream's model.info."""
    table = read_csv(compared / "compare.csv")[index]
    best = compared / RUN_NAMES[index] / "weights" / "best.pt"
    assert table["weights"] == str(Path("weights") / "best.pt")  # relative to its run folder: projects can move
    metrics = RTDETR(best).val(data=str(data_yaml), imgsz=IMGSZ, batch=4, project=str(tmp_path), plots=False)
    expected = {"mAP50": metrics.box.map50, "mAP50-95": metrics.box.map, "precision": metrics.box.mp}
    expected["recall"] = metrics.box.mr
    assert {k: float(table[k]) for k in expected} == pytest.approx(expected, abs=1e-9)
    _, params, _, gflops = RTDETR(best).model.info(imgsz=IMGSZ)  # upstream returns figures only when verbose
    assert int(table["params"]) == params and float(table["gflops"]) == pytest.approx(gflops, rel=1e-9)
    assert int(table["val_images"]) == 4


@pytest.mark.slow
def test_markdown_shows_baseline_then_differences(compared: Path):
    """compare.md's rows carry the csv's values, rounded; the variant's cells add its difference from the baseline."""
    base, variant = read_csv(compared / "compare.csv")
    lines = (compared / "compare.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    base_cells = [c.strip() for c in lines[header + 2].split("|")[1:-1]]
    variant_cells = [c.strip() for c in lines[header + 3].split("|")[1:-1]]
    assert base_cells[0] == f"{base['name']} (baseline)" and variant_cells[0] == variant["name"]
    assert base_cells[1] == f"{int(base['params']) / 1e6:.2f}" and variant_cells[1] == f"{base_cells[1]} (+0 %)"
    assert base_cells[4] == f"{float(base['mAP50-95']):.3f}" and variant_cells[4] == f"{base_cells[4]} (+0.000)"
    change = float(variant["latency_ms"]) / float(base["latency_ms"]) - 1
    assert variant_cells[-1] == f"{float(variant['latency_ms']):.1f} ({change * 100:+.0f} %)"


@pytest.mark.slow
def test_identical_seeds_give_identical_runs(compared: Path):
    """The same model trained twice with one seed: identical results.csv (but for time), weights and figures."""
    first, second = (read_csv(compared / name / "results.csv") for name in RUN_NAMES)
    assert [{k: v for k, v in r.items() if k != "time"} for r in first] == [
        {k: v for k, v in r.items() if k != "time"} for r in second
    ]
    assert len(first) == 2 and float(first[-1]["train/giou_loss"]) > 0
    a, b = (json.loads((compared / name / "compare-result.json").read_text()) for name in RUN_NAMES)
    assert {k: v for k, v in a.items() if k not in TIME_COLUMNS} == {
        k: v for k, v in b.items() if k not in TIME_COLUMNS
    }


def test_markdown_differences_have_the_sign_of_variant_minus_baseline(tmp_path: Path):
    """With two different rows, every difference is the variant's value minus (or over) the baseline's."""
    base = {"name": "base", **{c.key: 1.0 for c in compare_report.COLUMNS}, "mAP50": 0.25, "latency_ms": 100.0}
    variant = {**base, "name": "variant", "mAP50": 0.5, "latency_ms": 150.0, "AP_large": None}
    compare_report.write_markdown(tmp_path / "compare.md", [base, variant], [], "settings")
    lines = (tmp_path / "compare.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    columns = [c.strip() for c in lines[header].split("|")[1:-1]]
    cells = dict(zip(columns, [c.strip() for c in lines[header + 3].split("|")[1:-1]]))
    assert cells["mAP50"] == "0.500 (+0.250)"
    assert cells["latency ms"] == "150.0 (+50 %)"
    assert cells["AP large"] == compare_report.NO_VALUE


def test_short_run_note_at_its_boundary():
    """Runs below RANKING_MIN_EPOCHS get the note that they rank nothing; from it on, none."""
    assert run_notes(RANKING_MIN_EPOCHS) == []
    (note,) = run_notes(RANKING_MIN_EPOCHS - 1)
    assert note.startswith(f"A short run ({RANKING_MIN_EPOCHS - 1} epochs)") and "ranks nothing" in note


def test_settings_line_names_dataset_arguments_device_and_versions():
    """The report's settings line names everything a reader needs to reproduce the table, `data` only once."""
    environment = {
        "device": {"name": "cpu X"},
        "versions": {"ultralytics": "8.4.190", "ultralytics-biformer": "v", "torch": "t"},
    }
    line = settings_line("d.yaml", 3, 4, {"data": "d.yaml", "epochs": 2, "seed": 0}, environment, 12.3)
    assert line == (
        "Dataset `d.yaml` (3 classes, 4 val images); epochs=2, seed=0; device cpu X; ultralytics 8.4.190 "
        "(ultralytics-biformer v), torch t; 12 s wall time."
    )
