# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The deployment parity matrix (issue 9): every cell that works for upstream's rtdetr-l must work for both BiFormer
models, with the same numbers. docs/deploy.md holds the matrix as a table.

Rows: rtdetr-l.yaml and the two BiFormer YAMLs, each trained briefly (conftest.py). Columns: TorchScript, ONNX and
OpenVINO, static and dynamic, `resume` and `compile=True`. Exported outputs are compared with the fused fp32 PyTorch
model on generated images resized to every size a dynamic export must serve.
"""

from __future__ import annotations

import onnx
import pytest
import torch

from .conftest import BASELINE, DYNAMIC_INPUTS, EPOCHS, EXPORT_IMGSZ, PARITY_MODELS, Lazy, run_backend
from detections import assert_same_detections, score_error

FP32_ATOL = 1e-3  # fp32 runtimes: the same arithmetic in another order
# OpenVINO at its default precision (bf16 on CPUs with bf16 instructions, else fp32): a BiFormer model may be off by at
# most this factor of rtdetr-l's own error on the same inputs, plus a floor for runtimes where both are exact
OPENVINO_SLACK, OPENVINO_FLOOR = 1.5, 2e-3
OPENVINO_MAX = 0.05  # any model: a larger score error is a broken export, not rounding
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]
models = pytest.mark.parametrize("model", PARITY_MODELS)


@models
def test_resume(model: str, resumed_runs):
    """An interrupted run resumes from last.pt: same epoch count, next epoch, optimizer state restored."""
    run = resumed_runs[model]
    assert run.interrupted_epoch == 0
    assert (run.start_epoch, run.epochs) == (1, EPOCHS)
    assert run.optimizer_restored
    assert [int(row["epoch"]) for row in run.results] == list(range(1, EPOCHS + 1))


@models
def test_torchscript(model: str, exports, references):
    """A static TorchScript export matches PyTorch at its size, for one image and for a batch of two."""
    traced = torch.jit.load(exports[model, "torchscript", False])
    for n in (1, 2):
        x, expected = references[model, n, EXPORT_IMGSZ, EXPORT_IMGSZ]
        with torch.inference_mode():
            out = traced(x)
        assert_same_detections((out[0] if isinstance(out, (list, tuple)) else out).numpy(), expected, FP32_ATOL)


@models
def test_onnx(model: str, exports, backends, references):
    """A static ONNX export has no shape arithmetic left and matches PyTorch through AutoBackend."""
    assert "Shape" not in {node.op_type for node in onnx.load(exports[model, "onnx", False]).graph.node}
    x, expected = references[model, 1, EXPORT_IMGSZ, EXPORT_IMGSZ]
    assert_same_detections(run_backend(backends[model, "onnx", False], x), expected, FP32_ATOL)


@models
def test_onnx_dynamic(model: str, backends, references):
    """One dynamic ONNX export matches PyTorch at every batch size and input size."""
    for n, h, w in DYNAMIC_INPUTS:
        x, expected = references[model, n, h, w]
        assert_same_detections(run_backend(backends[model, "onnx", True], x), expected, FP32_ATOL)


@pytest.fixture(scope="module")
def openvino_errors(backends, references) -> dict[tuple[str, bool], list[float]]:
    """Lazily measured score errors of each model's OpenVINO export (AutoBackend, default precision), keyed by
    (model, dynamic), at each input that export must serve."""

    def measure(key: tuple[str, bool]) -> list[float]:
        model, dynamic = key
        errors = []
        for n, h, w in DYNAMIC_INPUTS if dynamic else [(1, EXPORT_IMGSZ, EXPORT_IMGSZ)]:
            x, expected = references[model, n, h, w]
            errors.append(score_error(run_backend(backends[model, "openvino", dynamic], x), expected))
        return errors

    return Lazy(measure)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@models
def test_openvino(model: str, dynamic: bool, openvino_errors):
    """OpenVINO exports run at every input they must serve and are no further from PyTorch than rtdetr-l's."""
    errors, baseline = openvino_errors[model, dynamic], openvino_errors[BASELINE, dynamic]
    assert max(errors) <= OPENVINO_MAX, f"{errors}"
    for error, base, size in zip(errors, baseline, DYNAMIC_INPUTS):
        assert error <= OPENVINO_SLACK * base + OPENVINO_FLOOR, f"input {size}: {error:.3g} vs rtdetr-l {base:.3g}"
