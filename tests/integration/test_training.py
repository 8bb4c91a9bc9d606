# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The whole `yolo` cycle offline: train, val, predict and export rtdetr-l-HGBlock_Biformer on generated data."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from ultralytics import RTDETR

from .conftest import run_yolo

EXPORT_IMGSZ = 160
# Exported graphs run the same fp32 arithmetic in another order, so values agree to about 1e-5. RT-DETR's output is
# its 300 best (query, class) scores in score order, and an untrained model has many near-equal scores whose order
# (and membership at the 300th place) such rounding can swap; detections are therefore matched as a set.
EXPORT_ATOL = 1e-3


def _assert_same_detections(actual: np.ndarray, expected: np.ndarray) -> None:
    """Assert two (1, 300, 6) RT-DETR outputs hold the same detections up to the order of near-equal scores.

    The sorted scores must agree; every detection scoring clearly above the 300th place must have a counterpart with
    the same class and box and score within EXPORT_ATOL.
    """
    actual, expected = actual[0], expected[0]
    np.testing.assert_allclose(np.sort(actual[:, 4]), np.sort(expected[:, 4]), atol=EXPORT_ATOL, rtol=0)
    clear = actual[actual[:, 4] > expected[:, 4].min() + EXPORT_ATOL]
    assert len(clear) > 0
    for row in clear:
        assert (np.abs(expected - row).max(axis=1) <= EXPORT_ATOL).any(), f"no PyTorch detection matches {row}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_yaml: Path) -> Path:
    """One epoch of `yolo detect train` on the generated dataset; returns the run folder."""
    project = tmp_path_factory.mktemp("runs")
    run_yolo(
        "detect",
        "train",
        "model=rtdetr-l-HGBlock_Biformer.yaml",
        f"data={data_yaml}",
        "epochs=1",
        "imgsz=160",
        "batch=2",
        "workers=0",
        "device=cpu",
        f"project={project}",
        "name=train",
        "plots=False",
        cwd=project,
    )
    return project / "train"


@pytest.mark.slow
def test_train_writes_weights_and_results(trained: Path):
    """Training completes and writes best.pt, last.pt and results.csv with one epoch row."""
    assert (trained / "weights" / "best.pt").is_file() and (trained / "weights" / "last.pt").is_file()
    with open(trained / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and "metrics/mAP50(B)" in rows[0]


@pytest.mark.slow
def test_val_and_predict_on_best(trained: Path, data_yaml: Path):
    """`yolo detect val` and `yolo detect predict` run on the trained checkpoint, with rect val batches."""
    best = trained / "weights" / "best.pt"
    output = run_yolo(
        "detect", "val", f"model={best}", f"data={data_yaml}", "imgsz=160", "batch=2", "rect=True", cwd=trained
    )
    assert "all" in output and "mAP50" in output
    images = Path(data_yaml).parent / "images" / "val"
    output = run_yolo(
        "detect", "predict", f"model={best}", f"source={images}", "imgsz=160", f"project={trained}", cwd=trained
    )
    assert "image 4/4" in output


def _pytorch_reference(checkpoint: Path, x: torch.Tensor) -> np.ndarray:
    """The fused fp32 PyTorch model's output, as the exporter builds it."""
    model = copy.deepcopy(RTDETR(checkpoint).model).float().eval().fuse(verbose=False)
    with torch.inference_mode():
        return model(x)[0].numpy()


@pytest.mark.slow
def test_export_onnx_matches_pytorch(trained: Path):
    """`yolo export format=onnx` succeeds and onnxruntime reproduces PyTorch on the same input."""
    import onnxruntime

    best = trained / "weights" / "best.pt"
    run_yolo("export", f"model={best}", "format=onnx", f"imgsz={EXPORT_IMGSZ}", cwd=trained)
    session = onnxruntime.InferenceSession(str(best.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, EXPORT_IMGSZ, EXPORT_IMGSZ, generator=torch.Generator().manual_seed(0))
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    _assert_same_detections(onnx_out, _pytorch_reference(best, x))


@pytest.mark.slow
def test_export_torchscript_matches_pytorch(trained: Path):
    """`yolo export format=torchscript` succeeds and the traced model reproduces PyTorch."""
    best = trained / "weights" / "best.pt"
    run_yolo("export", f"model={best}", "format=torchscript", f"imgsz={EXPORT_IMGSZ}", cwd=trained)
    traced = torch.jit.load(str(best.with_suffix(".torchscript")))
    x = torch.rand(1, 3, EXPORT_IMGSZ, EXPORT_IMGSZ, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = traced(x)
    _assert_same_detections((out[0] if isinstance(out, (list, tuple)) else out).numpy(), _pytorch_reference(best, x))
