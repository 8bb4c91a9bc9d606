# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The GPU acceptance run's dry run, `make gpu-check GPU=cpu QUICK=1`: every section at the smallest sizes, so that
the kit a GPU session runs in one call cannot rot on machines without one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tools"), str(REPO / "benchmarks")]

import gpu_check  # noqa: E402

from ultralytics.nn.AddModules.attention_paths import PATHS  # noqa: E402

SECTIONS = ("correctness", "module", "model", "training")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the make target once, as a user would; return the process and the report folder."""
    report = tmp_path_factory.mktemp("gpu-check")
    runs = tmp_path_factory.mktemp("gpu-check-runs")
    command = ["make", "-s", "gpu-check", "GPU=cpu", "QUICK=1", f"REPORT={report}"]
    env = {**os.environ, "TMPDIR": str(runs)}  # the training runs' temporary folder: cleaned with pytest's
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    return process, report


def test_dry_run_succeeds_and_writes_only_the_report(dry_run):
    """Exit status 0, progress per section, and exactly the JSON and markdown files in REPORT."""
    process, report = dry_run
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    for name in SECTIONS:
        assert f"gpu_check: {name} done" in process.stdout
    assert sorted(p.name for p in report.iterdir()) == sorted([gpu_check.REPORT_JSON, gpu_check.REPORT_MD])


def test_every_section_measured(dry_run):
    """Each section holds what the GPU run needs: every path checked, every variant timed, both YAMLs with
    deterministic on and off against floor and rtdetr-l, and one finite epoch per model."""
    _, report = dry_run
    results = json.loads((report / gpu_check.REPORT_JSON).read_text())
    sections = results["sections"]
    assert all(sections[name]["ok"] for name in SECTIONS), {n: s.get("error") for n, s in sections.items()}
    correctness = sections["correctness"]["result"]
    assert {(r["path"], r["precision"]) for r in correctness} == {(p, q) for p in PATHS for q in ("fp32", "bf16")}
    assert all(r["passed"] and r["routing_fp32"] and 0 < r["worst"] <= r["tolerance"] for r in correctness)
    comparisons = sections["module"]["result"]["comparisons"]
    assert {r["variant"] for r in comparisons} == {"bra", *(f"bra-{p}" for p in PATHS)}
    assert all(r["time_x_baseline"] > 0 and r["mem_x_baseline"] > 0 for r in comparisons)
    model = sections["model"]["result"]
    cells = {(r["yaml"], r["deterministic"], r["model"]) for r in model}
    expected = {
        (y, d, m) for y in gpu_check.BIFORMER_YAMLS for d in (False, True) for m in ("bra", "floor", "rtdetr-l")
    }
    assert cells == expected
    assert all(r["train_x_nondeterministic"] > 0 and r["train_peak_mib"] > 0 for r in model)
    training = sections["training"]["result"]
    assert [r["yaml"] for r in training] == list(gpu_check.TRAIN_YAMLS)
    assert all(r["finite"] and r["epoch_seconds"] > 0 and set(r["losses"]) for r in training)
    assert [t["target"] for t in results["targets"]] == [t.name for t in gpu_check.GPU_TARGETS]
    assert all(t["worst"] is None for t in results["targets"])  # fp16 AMP targets: nothing measured on CPU


def test_markdown_report(dry_run):
    """The markdown report names the device and shows every section's table."""
    _, report = dry_run
    text = (report / gpu_check.REPORT_MD).read_text()
    for title in ("Correctness against float64", "Module ratios", "Whole model", "One epoch of training", "Targets"):
        assert f"## {title}" in text


def test_failed_section_is_reported_not_fatal():
    """A section that raises is recorded with its error and time; the run goes on."""

    def broken() -> None:
        raise RuntimeError("no kernel image is available")

    lines = []
    section = gpu_check.run_section("module", broken, lines.append)
    assert not section["ok"] and section["error"] == "RuntimeError: no kernel image is available"
    assert "RuntimeError" in section["traceback"] and lines[-1].startswith("gpu_check: module FAILED")


def test_finite_losses():
    """An epoch passes the training check only with losses, all finite."""
    assert gpu_check.finite({"giou_loss": 1.2, "cls_loss": 0.4})
    assert not gpu_check.finite({"giou_loss": 1.2, "cls_loss": float("nan")})
    assert not gpu_check.finite({"giou_loss": float("inf")})
    assert not gpu_check.finite({})


def test_missing_wheel_named_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """Without a required package the kit stops at once, naming it and the docs section that says how to bring it,
    before any section runs or any report is written."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "polars" else find_spec(name))
    with pytest.raises(SystemExit, match=r"missing \['polars'\].*docs/gpu.md"):
        gpu_check.main(["--device", "cpu", "--quick", "--report", str(tmp_path / "report")])
    assert "gpu_check: correctness" not in capsys.readouterr().out  # no section started
    assert not (tmp_path / "report").exists()


def test_gpu_targets_read_the_rows_they_name():
    """Each GPU target reads its metric from the fp16 rows of the BiFormer model (auto at 20x20 or 40x40 for the
    module ones; deterministic off for the floor ratio, on for the deterministic cost), and no other row."""
    from report import evaluate_targets

    module = [
        {"precision": "fp16", "size": 20, "variant": "bra", "time_x_baseline": 0.4, "mem_x_baseline": 0.3},
        {"precision": "fp16", "size": 20, "variant": "bra-gather", "time_x_baseline": 9.0, "mem_x_baseline": 9.0},
        {"precision": "fp16", "size": 40, "variant": "bra", "time_x_baseline": 0.6, "mem_x_baseline": 0.2},
        {"precision": "fp16", "size": 80, "variant": "bra", "time_x_baseline": 9.0, "mem_x_baseline": 9.0},
        {"precision": "bf16", "size": 20, "variant": "bra", "time_x_baseline": 9.0, "mem_x_baseline": 9.0},
        {"precision": "fp32", "size": 20, "variant": "bra", "time_x_baseline": 9.0, "mem_x_baseline": 9.0},
    ]
    model = [
        {
            "precision": "fp16",
            "model": "bra",
            "deterministic": False,
            "train_x_floor": 1.1,
            "train_x_nondeterministic": 1,
        },
        {
            "precision": "fp16",
            "model": "bra",
            "deterministic": True,
            "train_x_floor": 9.0,
            "train_x_nondeterministic": 1.2,
        },
        {
            "precision": "fp16",
            "model": "floor",
            "deterministic": True,
            "train_x_floor": 9.0,
            "train_x_nondeterministic": 9,
        },
        {
            "precision": "fp32",
            "model": "bra",
            "deterministic": False,
            "train_x_floor": 9.0,
            "train_x_nondeterministic": 9,
        },
    ]
    verdicts = evaluate_targets(gpu_check.GPU_TARGETS, {"module": module, "model": model})
    expected = [(1.1, True), (0.4, True), (0.3, True), (0.6, False), (0.2, True), (1.2, False)]
    assert [(v["worst"], v["met"]) for v in verdicts] == expected
