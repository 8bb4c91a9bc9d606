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
from ultralytics.cfg import DEFAULT_CFG_DICT

from .conftest import BASELINE, EXPORT_IMGSZ, PARITY_MODELS
from .test_runtimes import BASELINE_FAILURES, BOUNDS, EXPORT

BENCHMARK_FORMATS = ("-", "torchscript", "onnx", "openvino", *BOUNDS)  # "-": PyTorch itself
BENCHMARK_IMGSZ = EXPORT_IMGSZ  # the matrix's size, so that it runs the matrix's exports (upstream's default: 160)
STATUS, METRIC = "Status❔", "metrics/mAP50-95(B)"
PYTORCH = "-"
FP32_FORMATS = ("torchscript", "onnx", "mnn", "executorch", "litert")  # fp32 on x86 CPUs (OpenVINO: bf16 on bf16 CPUs)
MATRIX_EXPORT_ARGS = {"dynamic": False, "batch": 1}  # conftest.py's static export; DEFAULT_CFG_DICT for the rest
MAP_TOLERANCE = 5e-4  # mAP50-95 of an fp32 export against PyTorch's (upstream rounds it to 4 decimals)
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


def expected_status(fmt: str) -> str:
    """rtdetr-l's status for fmt: ❌ where its export fails, ❎ where it exports but cannot run, ✅ elsewhere."""
    if fmt not in BASELINE_FAILURES:
        return "✅"
    return "❌" if BASELINE_FAILURES[fmt][0] == EXPORT else "❎"


def shared_export(exports: dict[tuple[str, str, bool], str], model: str, data: Path):
    """A stand-in for `Model.export` inside `benchmark()` that takes the matrix's static export of model.

    `benchmark()` exports each format with `model.export(imgsz=, format=, quantize=None, data=, device=, verbose=False,
    nms=None, **<the format's other export arguments at their defaults>)`, batch 1 (`Model.export`'s default). The
    matrix's static export (conftest.py's `exports`) is the same call at EXPORT_IMGSZ on CPU, but for `data` (INT8
    calibration only; the benchmark's is recorded in its export's metadata) and `verbose`. Any other difference fails
    the test, and each format exports once for the benchmark and the cells; an export that raises raises here too, each
    time it is asked for (PaddlePaddle's, about 10 s).

    Args:
        exports (dict[tuple[str, str, bool], str]): The session's lazily exported files.
        model (str): Model YAML of the benchmarked checkpoint.
        data (Path): The benchmark's dataset YAML (passed on to formats whose export takes `data`).

    Returns:
        (Callable[..., str]): The replacement export, returning the exported file's path.
    """

    def export(*, format: str, imgsz: int | list[int], quantize: int | str | None, nms: bool | None, **kwargs) -> str:
        device, given_data = str(kwargs.pop("device")), kwargs.pop("data", None)
        kwargs.pop("verbose")  # False: the benchmark's logging only
        changed = {k: v for k, v in kwargs.items() if v != MATRIX_EXPORT_ARGS.get(k, DEFAULT_CFG_DICT[k])}
        same = imgsz in (EXPORT_IMGSZ, [EXPORT_IMGSZ] * 2) and quantize is None and not nms and device == "cpu"
        if not same or changed or given_data not in (None, str(data)):  # pytest.fail: benchmark() catches Exception
            pytest.fail(
                f"benchmark() exported {format} unlike the matrix: {imgsz=} {quantize=} {nms=} {device=} "
                f"{given_data=} {changed=}"
            )
        return exports[model, format, False]

    return export


@pytest.fixture(scope="module")
def benchmarks(calibrated, exports, deploy_data: Path, tmp_path_factory) -> dict[str, dict[str, dict[str, str]]]:
    """Per model, `RTDETR(checkpoint).benchmark(...)` (what `yolo benchmark` calls) of every BENCHMARK_FORMATS format,
    its exports the matrix's (`shared_export`): its row of upstream's table, as strings. Each model benchmarks a copy
    of its checkpoint in a folder of its own, where benchmarks.log goes."""
    tables = {}
    for model, weights in calibrated.items():
        folder = tmp_path_factory.mktemp(f"benchmark-{Path(model).stem}")
        checkpoint = shutil.copyfile(weights, folder / weights.name)
        tables[model] = {}
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            for fmt in BENCHMARK_FORMATS:
                rtdetr = RTDETR(checkpoint)
                patch.setattr(rtdetr, "export", shared_export(exports, model, deploy_data), raising=False)
                benchmark = rtdetr.benchmark(
                    data=str(deploy_data), imgsz=BENCHMARK_IMGSZ, format=fmt, device="cpu", verbose=False
                )
                tables[model][fmt] = benchmark.row(0, named=True)
    return tables


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
