# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The comparison's table holds the numbers of each run's own results.csv, checkpoint and upstream validator."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from ultralytics import RTDETR
from ultralytics.biformer.compare import report as compare_report
from ultralytics.biformer.compare.per_image import PER_IMAGE_FILE, PerImageStats
from ultralytics.biformer.compare.report import RANKING_MIN_EPOCHS, run_notes, settings_line

from .conftest import IMGSZ, RUN_NAMES, RUNS, SEEDS, read_csv, run_folder

TIME_COLUMNS = {"time", "train_s_per_epoch", "latency_ms", "name", "weights"}  # differ between identical runs


def _run_rows(compared: Path) -> list[dict[str, str]]:
    """compare.csv's (model, seed) rows."""
    return [row for row in read_csv(compared / "compare.csv") if row["statistic"] == "run"]


def _summary_row(compared: Path, name: str, statistic: str) -> dict[str, str]:
    """compare.csv's row of one statistic (mean, sd, min, max) of one model."""
    return next(r for r in read_csv(compared / "compare.csv") if r["name"] == name and r["statistic"] == statistic)


def _markdown_rows(compared: Path) -> list[list[str]]:
    """compare.md's main table: the header's cells, then each model's."""
    lines = (compared / "compare.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    rows = [lines[header]] + lines[header + 2 : header + 2 + len(RUN_NAMES)]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in rows]


@pytest.mark.slow
def test_writes_four_files_with_one_row_per_model_and_seed(compared: Path, report: dict):
    """compare.md, .csv, .json and .png exist; csv and json hold one row per (model, seed), the baseline first, and
    the csv each model's mean, sd, min and max after them."""
    assert sorted(p.name for p in compared.glob("compare.*")) == [
        "compare.csv",
        "compare.json",
        "compare.md",
        "compare.png",
    ]
    assert [(row["name"], int(row["seed"])) for row in _run_rows(compared)] == list(RUNS)
    summary = [(r["name"], r["statistic"]) for r in read_csv(compared / "compare.csv") if r["statistic"] != "run"]
    assert summary == [(name, s) for name in RUN_NAMES for s in ("mean", "sd", "min", "max")]
    assert [(row["name"], row["seed"]) for row in report["models"]] == list(RUNS) and report["baseline"] == RUN_NAMES[0]
    assert report["settings"]["epochs"] == 2 and report["settings"]["imgsz"] == IMGSZ
    assert report["settings"]["seeds"] == list(SEEDS) and report["versions"]["ultralytics"] == "8.4.190"
    assert report["device"]["torch"] == "cpu"


@pytest.mark.slow
@pytest.mark.parametrize("name, seed", RUNS)
def test_each_seed_trains_in_its_own_run_folder(compared: Path, name: str, seed: int):
    """Every (model, seed) is an upstream run of its own, whose args.yaml records its seed."""
    args = yaml.safe_load((run_folder(compared, name, seed) / "args.yaml").read_text())
    assert args["seed"] == seed and args["epochs"] == 2 and Path(args["save_dir"]) == run_folder(compared, name, seed)


@pytest.mark.slow
def test_table_is_the_mean_and_spread_of_each_runs_own_result(compared: Path, report: dict):
    """Each model's mean, sd, min and max (csv, json) and its markdown cells are those of the per-seed values that
    each run's own validation recorded in its folder."""
    header, *cells = _markdown_rows(compared)
    for index, name in enumerate(RUN_NAMES):
        per_seed = [json.loads((run_folder(compared, name, s) / "compare-result.json").read_text()) for s in SEEDS]
        for column in compare_report.COLUMNS:
            if column.key == "latency_ms" or per_seed[0][column.key] is None:
                continue
            values = [r[column.key] for r in per_seed]
            expected = {
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values),
                "min": min(values),
                "max": max(values),
            }
            assert {s: float(_summary_row(compared, name, s)[column.key]) for s in expected} == pytest.approx(
                expected, rel=1e-12, abs=1e-15
            )
            assert report["summary"][name][column.key] == pytest.approx(expected, rel=1e-12, abs=1e-15)
            cell = cells[index][header.index(column.header)]
            shown = column.show(expected["mean"])
            assert cell.startswith(f"{shown} ± {column.show(expected['sd'])}" if column.varies else shown), cell


@pytest.mark.slow
def test_short_run_says_it_ranks_nothing(compared: Path, report: dict):
    """A 2-epoch run says plainly, in compare.md and compare.json, that it ranks nothing."""
    assert "A short run (2 epochs)" in report["notes"][0] and "ranks nothing" in report["notes"][0]
    assert f"**{report['notes'][0]}**" in (compared / "compare.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(RUNS)))
def test_training_figures_equal_results_csv(compared: Path, report: dict, index: int):
    """Epochs, time per epoch and the per-epoch mAP50-95 curve are those of the run's own results.csv."""
    rows = read_csv(run_folder(compared, *RUNS[index]) / "results.csv")
    table = _run_rows(compared)[index]
    assert int(table["epochs"]) == len(rows) == 2
    assert float(table["train_s_per_epoch"]) == pytest.approx(float(rows[-1]["time"]) / 2, rel=1e-12)
    assert report["models"][index]["epoch_map"] == [float(r["metrics/mAP50-95(B)"]) for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(RUNS)))
def test_accuracy_and_cost_equal_upstream_on_best_pt(compared: Path, data_yaml: Path, tmp_path: Path, index: int):
    """mAP50, mAP50-95, P, R equal upstream's `model.val` on best.pt; params and GFLOPs equal upstream's model.info;
    the stored per-image statistics recompute the run's mAP50-95."""
    table = _run_rows(compared)[index]
    best = run_folder(compared, *RUNS[index]) / "weights" / "best.pt"
    assert table["weights"] == str(Path("weights") / "best.pt")  # relative to its run folder: projects can move
    metrics = RTDETR(best).val(data=str(data_yaml), imgsz=IMGSZ, batch=4, project=str(tmp_path), plots=False)
    expected = {"mAP50": metrics.box.map50, "mAP50-95": metrics.box.map, "precision": metrics.box.mp}
    expected["recall"] = metrics.box.mr
    assert {k: float(table[k]) for k in expected} == pytest.approx(expected, abs=1e-9)
    _, params, _, gflops = RTDETR(best).model.info(imgsz=IMGSZ)  # upstream returns figures only when verbose
    assert int(table["params"]) == params and float(table["gflops"]) == pytest.approx(gflops, rel=1e-9)
    assert int(table["val_images"]) == 4
    per_image = PerImageStats.load(run_folder(compared, *RUNS[index]) / PER_IMAGE_FILE)
    assert per_image.images == 4 and per_image.map50_95() == pytest.approx(float(table["mAP50-95"]), abs=1e-12)


@pytest.mark.slow
def test_markdown_shows_baseline_then_differences(compared: Path):
    """compare.md's rows carry the csv's means, rounded, with their spread; the variant's cells add its difference
    from the baseline."""
    base, variant = (_summary_row(compared, name, "mean") for name in RUN_NAMES)
    base_sd = _summary_row(compared, RUN_NAMES[0], "sd")
    _, base_cells, variant_cells = _markdown_rows(compared)
    assert base_cells[0] == f"{base['name']} (baseline)" and variant_cells[0] == variant["name"]
    assert base_cells[1] == f"{float(base['params']) / 1e6:.2f}" and variant_cells[1] == f"{base_cells[1]} (+0 %)"
    assert base_cells[9] == f"{float(base['recall']):.3f} ± {float(base_sd['recall']):.3f}"
    assert variant_cells[9] == f"{base_cells[9]} (+0.000)"
    change = float(variant["latency_ms"]) / float(base["latency_ms"]) - 1
    assert variant_cells[-1] == f"{float(variant['latency_ms']):.1f} ({change * 100:+.0f} %)"


@pytest.mark.slow
def test_identical_runs_give_a_zero_interval_and_no_difference(compared: Path, report: dict):
    """The variant is the baseline trained again with the same seeds: the paired bootstrap gives [0, 0], recorded
    with its resamples and seed, and compare.md says no difference is shown."""
    bootstrap = report["bootstrap"]
    assert (bootstrap["resamples"], bootstrap["seed"], bootstrap["images"], bootstrap["pairs"]) == (200, 0, 4, [0, 1])
    interval = bootstrap["variants"][RUN_NAMES[1]]
    assert (interval["difference"], interval["low"], interval["high"]) == (0.0, 0.0, 0.0)
    assert f"- {RUN_NAMES[1]}: no difference shown: +0.0 [+0.0, +0.0]" in (compared / "compare.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(RUNS)))
def test_export_accuracy_equals_upstream_val_of_the_export(compared: Path, data_yaml: Path, tmp_path: Path, index: int):
    """Each run's ONNX export is validated as `yolo val model=best.onnx` validates it; the report's per-model figure
    is the mean over seeds, its difference the one from the PyTorch mean, flagged beyond the interval's half-width."""
    report = json.loads((compared / "compare.json").read_text())
    name, seed = RUNS[index]
    onnx = run_folder(compared, name, seed) / "weights" / "best.onnx"
    metrics = RTDETR(str(onnx)).val(data=str(data_yaml), imgsz=IMGSZ, batch=1, project=str(tmp_path), plots=False)
    row = next(r for r in report["exports"] if r["name"] == name and r["format"] == "onnx")
    (run,) = [r for r in row["runs"] if r["seed"] == seed]
    assert run["file"] == str(Path("weights") / "best.onnx")
    assert (run["mAP50"], run["mAP50-95"]) == pytest.approx((metrics.box.map50, metrics.box.map), abs=1e-9)
    mean = statistics.fmean(r["mAP50-95"] for r in row["runs"])
    assert row["mAP50-95"]["mean"] == pytest.approx(mean, abs=1e-12)
    assert row["difference"] == pytest.approx(mean - report["summary"][name]["mAP50-95"]["mean"], abs=1e-12)
    assert row["tolerance"] == 0.0 and row["flagged"] == (abs(row["difference"]) > 0) and row["latency_ms"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_identical_seeds_give_identical_runs(compared: Path, seed: int):
    """The same model trained twice with one seed: identical results.csv (but for time), weights and figures; the
    other seed trains differently."""
    first, second = (read_csv(run_folder(compared, name, seed) / "results.csv") for name in RUN_NAMES)
    assert [{k: v for k, v in r.items() if k != "time"} for r in first] == [
        {k: v for k, v in r.items() if k != "time"} for r in second
    ]
    assert len(first) == 2 and float(first[-1]["train/giou_loss"]) > 0
    other = read_csv(run_folder(compared, RUN_NAMES[0], 1 - seed) / "results.csv")
    assert [r["train/giou_loss"] for r in other] != [r["train/giou_loss"] for r in first]
    a, b = (json.loads((run_folder(compared, name, seed) / "compare-result.json").read_text()) for name in RUN_NAMES)
    assert {k: v for k, v in a.items() if k not in TIME_COLUMNS} == {
        k: v for k, v in b.items() if k not in TIME_COLUMNS
    }


def test_markdown_differences_have_the_sign_of_variant_minus_baseline(tmp_path: Path):
    """With two different rows, every difference is the variant's value minus (or over) the baseline's."""
    base = {"name": "base", "seed": 0, **{c.key: 1.0 for c in compare_report.COLUMNS}, "mAP50": 0.25}
    base["latency_ms"] = 100.0
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
