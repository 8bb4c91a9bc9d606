# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The deployment parity matrix: every cell that works for upstream's rtdetr-l must work for both BiFormer
models, with the same numbers. docs/deploy.md holds the matrix as a table.

Rows: rtdetr-l.yaml and the two BiFormer YAMLs, each trained briefly (conftest.py). Columns: TorchScript, ONNX and
OpenVINO, static and dynamic, `resume` and `compile=True`. Exported outputs are compared with the fused fp32 PyTorch
model on generated images resized to every size a dynamic export must serve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import openvino as openvino_runtime
import pytest
import torch

from ultralytics import RTDETR
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules.regions import bra_grid
from ultralytics.nn.autobackend import AutoBackend

from .conftest import BASELINE, DYNAMIC_INPUTS, EPOCHS, EXPORT_IMGSZ, PARITY_MODELS, Lazy, run_backend
from detections import assert_same_detections, score_error
from openvino_ir import NOT_ROUTING_TYPES, ROUTING_TYPES, compiled_precisions, marked_layers

FP32_ATOL = 1e-3  # fp32 runtimes: the same arithmetic in another order
# OpenVINO at its default precision where that is bf16 (CPUs with AVX512-BF16 or AMX; docs/deploy.md has the figures),
# over every image of the batch at every size a dynamic export serves. The per-image error is heavy-tailed (a near-tie
# at the top of the ranking swaps, some images are more sensitive than others), so the bounds hold medians:
# - any model, rtdetr-l included: median at most BF16_MEDIAN (measured 0.03-0.05) and every image at most BF16_MAX
#   (measured up to 0.31); a broken export is off by order 1;
# - a BiFormer model: median at most BF16_SLACK x rtdetr-l's on the same images (measured 0.63-0.98x).
BF16_MEDIAN, BF16_MAX = 0.1, 0.5
BF16_SLACK = 1.5
BF16_BATCH = 4  # the generated validation images, one batch
BF16_SIZES = sorted({(h, w) for _, h, w in DYNAMIC_INPUTS})  # a static export serves only the first
OPENVINO_F32, OPENVINO_DEFAULT = "f32", "default"  # INFERENCE_PRECISION_HINT pinned, or as AutoBackend leaves it
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
def test_torchscript_dynamic(model: str, exports, references):
    """A dynamic TorchScript export (`format=torchscript dynamic=True`, patch 0005 for BRA) matches PyTorch at every
    batch size and input size, as rtdetr-l's does."""
    traced = torch.jit.load(exports[model, "torchscript", True])
    for n, h, w in DYNAMIC_INPUTS:
        x, expected = references[model, n, h, w]
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


def inputs(dynamic: bool) -> list[tuple[int, int, int]]:
    """The (batch, height, width) inputs an export must serve."""
    return DYNAMIC_INPUTS if dynamic else [(1, EXPORT_IMGSZ, EXPORT_IMGSZ)]


def runtime_precision(backend) -> str:
    """The precision ("f32", "bf16", "f16") an OpenVINO AutoBackend's compiled model infers in."""
    return backend.backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def openvino_xml(export: str) -> Path:
    """The .xml file of an OpenVINO export folder."""
    return next(Path(export).glob("*.xml"))


@pytest.fixture(scope="module")
def openvino(exports, backends) -> dict[tuple[str, bool, str], object]:
    """Lazily loaded AutoBackends of each model's OpenVINO export, keyed by (model, dynamic, precision): as Ultralytics
    loads it (OPENVINO_DEFAULT), or recompiled by the same backend with INFERENCE_PRECISION_HINT f32 (OPENVINO_F32)."""

    def load(key: tuple[str, bool, str]):
        model, dynamic, precision = key
        if precision == OPENVINO_DEFAULT:
            return backends[model, "openvino", dynamic]
        backend = AutoBackend(exports[model, "openvino", dynamic], device=torch.device("cpu"), verbose=False)
        ov_model = openvino_runtime.Core().read_model(openvino_xml(exports[model, "openvino", dynamic]))
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        backend.backend.ov_compiled_model = backend.backend.compile_model(ov_model, config=config)
        return backend

    return Lazy(load)


@pytest.fixture(scope="module")
def openvino_errors(openvino, references) -> dict[tuple[str, bool], list[float]]:
    """Lazily measured per-image score errors of each model's OpenVINO export at its default precision, keyed by
    (model, dynamic): every image of a BF16_BATCH batch at every size of BF16_SIZES the export serves."""

    def measure(key: tuple[str, bool]) -> list[float]:
        model, dynamic = key
        backend = openvino[model, dynamic, OPENVINO_DEFAULT]
        errors = []
        for h, w in BF16_SIZES if dynamic else [(EXPORT_IMGSZ, EXPORT_IMGSZ)]:
            x, expected = references[model, BF16_BATCH, h, w]
            images = (
                [run_backend(backend, x)] if dynamic else [run_backend(backend, x[i : i + 1]) for i in range(len(x))]
            )
            actual = np.concatenate(images)
            errors += [score_error(actual[i : i + 1], expected[i : i + 1]) for i in range(len(x))]
        return errors

    return Lazy(measure)


def skip_unless_bf16(backend) -> None:
    """Skip, saying why, where OpenVINO's default precision on this CPU is not bf16."""
    precision = runtime_precision(backend)
    if precision != "bf16":
        pytest.skip(
            f"OpenVINO infers in {precision} by default on this CPU (bf16 needs AVX512-BF16 or AMX; "
            f"avx512_bf16 in /proc/cpuinfo: {'avx512_bf16' in Path('/proc/cpuinfo').read_text()}): "
            "bf16 cannot run here, test_openvino_f32 checks this export at f32"
        )


dynamics = pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])


def region_tokens(weights: Path) -> set[int]:
    """Tokens per region (padding included) of every BRA layer of a checkpoint at EXPORT_IMGSZ."""
    model = RTDETR(weights).model.eval()
    tokens = set()
    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw)]
    hooks = [
        layer.register_forward_pre_hook(lambda m, args: tokens.add(bra_grid(*args[0].shape[2:], m.n_win).tokens))
        for layer in layers
    ]
    with torch.no_grad():
        model.float()(torch.zeros(1, 3, EXPORT_IMGSZ, EXPORT_IMGSZ))
    for hook in hooks:
        hook.remove()
    return tokens


@dynamics
@models
def test_openvino_f32(model: str, dynamic: bool, openvino, references):
    """OpenVINO at f32 (precision pinned) matches PyTorch like the other fp32 runtimes, at every input it must serve."""
    backend = openvino[model, dynamic, OPENVINO_F32]
    assert runtime_precision(backend) == "f32"
    for n, h, w in inputs(dynamic):
        x, expected = references[model, n, h, w]
        assert_same_detections(run_backend(backend, x), expected, FP32_ATOL)


@dynamics
@models
def test_openvino_bf16(model: str, dynamic: bool, openvino, openvino_errors):
    """OpenVINO at its default precision, where that is bf16 (as AutoBackend runs it): every model's per-image score
    errors within the bf16 bounds, and a BiFormer model's median no more than BF16_SLACK x rtdetr-l's."""
    skip_unless_bf16(openvino[model, dynamic, OPENVINO_DEFAULT])
    errors, baseline = openvino_errors[model, dynamic], openvino_errors[BASELINE, dynamic]
    shown = f"{[round(e, 3) for e in errors]} vs rtdetr-l {[round(e, 3) for e in baseline]}"
    assert np.median(errors) <= BF16_MEDIAN and max(errors) <= BF16_MAX, shown
    if model != BASELINE:
        assert np.median(errors) <= BF16_SLACK * np.median(baseline), shown


@dynamics
@models
def test_openvino_marks_routing_only(model: str, dynamic: bool, exports, calibrated):
    """The exported IR marks each BRA layer's routing nodes (sums, means, affinity matmul, top-k) to keep f32, inside
    the layers' own scopes and nothing else: no convolution, no attention; rtdetr-l gets no mark."""
    marked = marked_layers(openvino_xml(exports[model, "openvino", dynamic]))
    scopes = {
        f"__module.{name}"
        for name, m in RTDETR(calibrated[model]).model.named_modules()
        if isinstance(m, BiLevelRoutingAttention_nchw)
    }
    types = set(marked.values())
    if not scopes:
        assert marked == {}
        return
    # over one-token regions a region mean is the sum: OpenVINO folds the multiply by 1 out of a static graph
    one_token = not dynamic and region_tokens(calibrated[model]) == {1}
    required = ROUTING_TYPES - {"Multiply"} if one_token else ROUTING_TYPES
    assert required <= types and not types & NOT_ROUTING_TYPES, types
    assert sum(t == "TopK" for t in marked.values()) == len(scopes)
    assert {name.split("/", 1)[0] for name in marked} == scopes  # each layer's own code, not its projections


@dynamics
@models
def test_openvino_routing_runs_f32(model: str, dynamic: bool, openvino, exports):
    """Where OpenVINO infers in bf16, the nodes compiled from marked IR layers run in f32, convolutions in bf16."""
    backend = openvino[model, dynamic, OPENVINO_DEFAULT]
    skip_unless_bf16(backend)
    marked = marked_layers(openvino_xml(exports[model, "openvino", dynamic]))
    precisions = compiled_precisions(backend.backend.ov_compiled_model, set(marked))
    assert "bf16" in precisions["convolution"], precisions
    assert precisions["marked"] <= {"f32", "i32", "i64"} and (not marked or "f32" in precisions["marked"]), precisions
