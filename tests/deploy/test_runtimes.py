# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The breadth columns of the deployment matrix: MNN, NCNN, PaddlePaddle, ExecuTorch and LiteRT, each a static export
at EXPORT_IMGSZ of the calibrated checkpoints, run through Ultralytics' AutoBackend as `yolo predict` runs it.

A cell ends at one of four stages: the export raised, AutoBackend raised loading the file, the loaded model raised on
an image, or it ran. Where rtdetr-l runs, both BiFormer models must run and match PyTorch within the format's bound.
Where rtdetr-l itself fails upstream (BASELINE_FAILURES, with the cause), the BiFormer models may fail only at the
same stage with the same exception type. docs/deploy.md holds the results, and says why TensorFlow SavedModel/GraphDef
(a protobuf pin conflict) is left out.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from ultralytics.nn.autobackend import AutoBackend

from .conftest import BASELINE, EXPORT_IMGSZ, PARITY_MODELS, Lazy, run_backend
from detections import assert_same_detections

EXPORT, LOAD, RUN, RAN = "export", "load", "run", "ran"
IMAGES = 4  # the generated validation images, each run on its own (a static export serves batch 1)
# max abs difference to PyTorch a runtime may show where it runs (tests/detections.py's assert_same_detections). MNN,
# ExecuTorch and LiteRT (XNNPACK) run fp32 on x86 CPUs: AutoBackend asks MNN for "low" precision, which means fp16
# where the CPU has it (ARM); MNN reports "fp16:0" on this project's CPUs and gives the same outputs as at "high"
BOUNDS = {"mnn": 1e-3, "ncnn": 1e-3, "paddle": 1e-3, "executorch": 1e-3, "litert": 1e-3}
# rtdetr-l's own result where upstream cannot deploy it: (stage, exception type). NCNN: pnnx converts RT-DETR's
# decoder with torch.topk, Tensor.to and torch.gather layers that NCNN does not have (Tencent/ncnn#5520), so
# `Net.load_param` returns -1; AutoBackend does not check it and fails on the first image with "list index out of
# range" (the net has no input names), as ultralytics/ultralytics#10306 reported for rtdetr-l. PaddlePaddle:
# x2paddle has no conversion for aten::grid_sampler (the decoder's deformable attention), aten::new_zeros and
# aten::reciprocal, prints them and raises "Model is not supported yet." before it writes anything.
BASELINE_FAILURES = {"ncnn": (RUN, "IndexError"), "paddle": (EXPORT, "Exception")}
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


@dataclass
class Outcome:
    """Where a cell ended, the exception that ended it, and its outputs if it ran."""

    stage: str
    error: str = ""  # "<exception type>: <message>"
    outputs: list[np.ndarray] = field(default_factory=list)  # (1, 300, 6) per image
    printed: str = ""  # what the export printed (x2paddle lists the operators it cannot convert)

    @property
    def error_type(self) -> str:
        """The exception type's name, "" when it ran."""
        return self.error.split(":", 1)[0]


def deploy(exports: dict[tuple[str, str, bool], str], images: torch.Tensor, model: str, fmt: str) -> Outcome:
    """Export model to fmt, load it with AutoBackend and run each image, noting the stage an exception ends it at.

    Args:
        exports (dict[tuple[str, str, bool], str]): The session's lazily exported files (conftest.py's `exports`).
        images (torch.Tensor): Batch of shape (N, 3, EXPORT_IMGSZ, EXPORT_IMGSZ), run one image at a time.
        model (str): Model YAML.
        fmt (str): Export format.

    Returns:
        (Outcome): The stage reached, the exception that ended it, the outputs if it ran, what the export printed.
    """
    stage, printed = EXPORT, io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exported = exports[model, fmt, False]
        stage = LOAD
        backend = AutoBackend(exported, device=torch.device("cpu"), verbose=False)
        stage = RUN
        outputs = [run_backend(backend, images[i : i + 1]) for i in range(len(images))]
        return Outcome(RAN, outputs=outputs, printed=printed.getvalue())
    except Exception as e:
        return Outcome(stage, f"{type(e).__name__}: {e}", printed=printed.getvalue())


@pytest.fixture(scope="module")
def outcomes(exports, references) -> dict[tuple[str, str], Outcome]:
    """Lazily deployed cells, keyed by (model, format), on the IMAGES validation images at EXPORT_IMGSZ."""
    return Lazy(lambda key: deploy(exports, references[key[0], IMAGES, EXPORT_IMGSZ, EXPORT_IMGSZ][0], *key))


@pytest.mark.parametrize("fmt", BOUNDS)
@pytest.mark.parametrize("model", PARITY_MODELS)
def test_runtime(model: str, fmt: str, outcomes, references):
    """rtdetr-l reaches the stage upstream reaches; a BiFormer model the same stage as rtdetr-l, and where that is
    "ran", every image's detections match PyTorch within the format's bound."""
    outcome, baseline = outcomes[model, fmt], outcomes[BASELINE, fmt]
    expected_stage, expected_error = BASELINE_FAILURES.get(fmt, (RAN, ""))
    if model == BASELINE:
        assert (outcome.stage, outcome.error_type) == (expected_stage, expected_error), outcome.error
    else:
        assert (outcome.stage, outcome.error_type) == (baseline.stage, baseline.error_type), (
            f"{model}: {outcome.stage} {outcome.error!r}; rtdetr-l: {baseline.stage} {baseline.error!r}"
        )
    if outcome.stage == RAN:
        expected = references[model, IMAGES, EXPORT_IMGSZ, EXPORT_IMGSZ][1]
        for i, out in enumerate(outcome.outputs):
            assert_same_detections(out, expected[i : i + 1], BOUNDS[fmt])


def unconverted_layers(ncnn_model: str) -> set[str]:
    """The layer types of an NCNN export's .param file that pnnx left as PyTorch calls ("torch.topk", "Tensor.to")."""
    lines = next(Path(ncnn_model).glob("*.param")).read_text().splitlines()[2:]  # magic, then the layer/blob counts
    return {line.split()[0] for line in lines if "." in line.split()[0]}


@pytest.mark.parametrize("model", PARITY_MODELS)
def test_ncnn_unconverted_layers(model: str, exports):
    """NCNN's failure is RT-DETR's: every model's export keeps the decoder's torch.topk that NCNN lacks, and a BiFormer
    export keeps every type rtdetr-l's keeps (BRA's routing adds top-k layers of its own)."""
    layers = unconverted_layers(exports[model, "ncnn", False])
    assert "torch.topk" in layers, layers
    assert unconverted_layers(exports[BASELINE, "ncnn", False]) <= layers, layers


def unsupported_operators(outcome: Outcome) -> set[str]:
    """The operators x2paddle said it cannot convert ("========== aten::grid_sampler ============")."""
    return set(re.findall(r"^=+ (aten::\w+) =+$", outcome.printed, flags=re.MULTILINE))


@pytest.mark.parametrize("model", PARITY_MODELS)
def test_paddle_unsupported_operators(model: str, outcomes):
    """PaddlePaddle's failure is RT-DETR's: x2paddle refuses every model for the decoder's aten::grid_sampler, and a
    BiFormer model for every operator it refuses in rtdetr-l, and possibly BRA's own besides."""
    operators = unsupported_operators(outcomes[model, "paddle"])
    assert "aten::grid_sampler" in operators, outcomes[model, "paddle"].printed[-2000:]
    assert unsupported_operators(outcomes[BASELINE, "paddle"]) <= operators, operators
