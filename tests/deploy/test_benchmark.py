# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`yolo benchmark` parity: upstream's own benchmark of each calibrated checkpoint, on the generated dataset (its
default, coco8, is a download), one format of the matrix at a time. Every BiFormer checkpoint must get rtdetr-l's
status per format (✅ ran and validated, ❎ exported but did not run, ❌ did not export), and rtdetr-l the status
its results in the matrix imply. docs/deploy.md shows the three tables.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ultralytics import RTDETR

from .conftest import BASELINE, PARITY_MODELS
from .test_runtimes import BASELINE_FAILURES, BOUNDS, EXPORT

BENCHMARK_FORMATS = ("-", "torchscript", "onnx", "openvino", *BOUNDS)  # "-": PyTorch itself
BENCHMARK_IMGSZ = 160  # upstream's default
STATUS, METRIC = "Status❔", "metrics/mAP50-95(B)"
PYTORCH = "-"
FP32_FORMATS = ("torchscript", "onnx", "mnn", "executorch", "litert")  # fp32 on x86 CPUs (OpenVINO: bf16 on bf16 CPUs)
MAP_TOLERANCE = 5e-4  # mAP50-95 of an fp32 export against PyTorch's (upstream rounds it to 4 decimals)
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


def expected_status(fmt: str) -> str:
    """rtdetr-l's status for fmt: ❌ where its export fails, ❎ where it exports but cannot run, ✅ elsewhere."""
    if fmt not in BASELINE_FAILURES:
        return "✅"
    return "❌" if BASELINE_FAILURES[fmt][0] == EXPORT else "❎"


@pytest.fixture(scope="module")
def benchmarks(calibrated, deploy_data: Path, tmp_path_factory) -> dict[str, dict[str, dict[str, str]]]:
    """Per model, `RTDETR(checkpoint).benchmark(...)` (what `yolo benchmark` calls) of every BENCHMARK_FORMATS format:
    its row of upstream's table, as strings. Each model benchmarks a copy of its checkpoint in a folder of its own,
    where the exports and benchmarks.log go."""
    tables = {}
    for model, weights in calibrated.items():
        folder = tmp_path_factory.mktemp(f"benchmark-{Path(model).stem}")
        checkpoint = shutil.copyfile(weights, folder / weights.name)
        tables[model] = {}
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            for fmt in BENCHMARK_FORMATS:
                benchmark = RTDETR(checkpoint).benchmark(
                    data=str(deploy_data), imgsz=BENCHMARK_IMGSZ, format=fmt, device="cpu", verbose=False
                )
                tables[model][fmt] = benchmark.row(0, named=True)
                remove_exports(folder, keep={checkpoint, folder / "benchmarks.log"})
    return tables


def remove_exports(folder: Path, keep: set[Path]) -> None:
    """Delete what a benchmark exported into folder (nothing reads it again; 8 formats for 3 models would take about
    3.4 GB)."""
    for path in folder.iterdir():
        if path not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize("model", PARITY_MODELS)
def test_benchmark_statuses(model: str, benchmarks):
    """Each format's status for model equals rtdetr-l's, and rtdetr-l's is the one the matrix implies; every format
    that ran reports an mAP50-95, an fp32 one PyTorch's (the briefly trained checkpoints score mAP50-95 near 0, so
    this catches only an export that finds other objects)."""
    statuses = {fmt: row[STATUS] for fmt, row in benchmarks[model].items()}
    assert statuses == {fmt: row[STATUS] for fmt, row in benchmarks[BASELINE].items()}
    assert statuses == {fmt: expected_status(fmt) for fmt in BENCHMARK_FORMATS}
    for fmt, row in benchmarks[model].items():
        assert (row[METRIC] != "-") == (statuses[fmt] == "✅"), (fmt, row)
    pytorch = float(benchmarks[model][PYTORCH][METRIC])
    for fmt in FP32_FORMATS:
        assert abs(float(benchmarks[model][fmt][METRIC]) - pytorch) <= MAP_TOLERANCE, (fmt, benchmarks[model][fmt])
