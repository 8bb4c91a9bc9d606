# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Fixtures for the compare tests: a tiny generated dataset and one small comparison run shared by the tests."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from ultralytics.biformer.compare import compare

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from synthetic_dataset import generate  # noqa: E402

NARROW = ROOT / "tests" / "integration" / "assets" / "rtdetr-narrow-HGBlock_Biformer.yaml"
IMGSZ = 64
# The narrow model twice, each with seeds 0 and 1: seed k of one must come out identical to seed k of the other.
RUN_ARGS = {
    "models": [str(NARROW), str(NARROW)],
    "epochs": 2,
    "imgsz": IMGSZ,
    "batch": 4,
    "latency_rounds": 3,
    "seeds": 2,
    "bootstrap": 200,
    "formats": "onnx",
}
RUN_NAMES = ("rtdetr-narrow-HGBlock_Biformer", "rtdetr-narrow-HGBlock_Biformer-2")
SEEDS = (0, 1)
RUNS = tuple((name, seed) for name in RUN_NAMES for seed in SEEDS)  # the order of compare.json's rows


def run_folder(compared: Path, name: str, seed: int) -> Path:
    """The upstream run folder of one (model, seed) of a comparison."""
    return compared / name / f"seed{seed}"


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV file as a list of rows."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def data_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated detection dataset (8 train, 4 val images at 64 px, 3 classes)."""
    return generate(tmp_path_factory.mktemp("compare-data"), train=8, val=4, imgsz=IMGSZ, seed=0)


@pytest.fixture(scope="session")
def compared(tmp_path_factory: pytest.TempPathFactory, data_yaml: Path) -> Path:
    """One comparison: the narrow model trained twice with seeds 0 and 1, 2 epochs at 64 px, exported to ONNX;
    returns PROJECT/compare."""
    project = tmp_path_factory.mktemp("compare-project")
    return compare(**RUN_ARGS, data=str(data_yaml), project=str(project), plots=False)


@pytest.fixture(scope="session")
def report(compared: Path) -> dict:
    """compare.json of the shared comparison."""
    return json.loads((compared / "compare.json").read_text())
