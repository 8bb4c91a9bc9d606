# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The `compile=True` column of the parity matrix: one epoch of training and validation with torch.compile, and the
compiled model's outputs against eager.

Ultralytics compiles with torch.compile(backend="inductor"). `make test` runs this with the "aot_eager" backend: the
same graph capture (TorchDynamo) and forward/backward tracing (AOTAutograd) that inductor starts from, without its C++
code generation, which takes over 20 minutes per RT-DETR model on 2 CPU cores. `make test-compile` runs it with
inductor itself (`--compile-backend=inductor`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ultralytics import RTDETR

from .conftest import PARITY_MODELS, TRAIN_ARGS, batch

COMPILED_ATOL = 1e-4  # compiled vs eager fp32 outputs: the same arithmetic, possibly fused or reordered
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", PARITY_MODELS)
def test_compile_trains_validates_and_matches_eager(
    model: str, compile_backend: str, deploy_data: Path, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """compile=True trains one epoch and validates; the compiled model's outputs equal eager's."""
    compile_eager = torch.compile
    requested = []

    def compile_with_backend(module: torch.nn.Module, **kwargs) -> torch.nn.Module:
        """torch.compile with the backend under test, recording what Ultralytics asked for."""
        requested.append(kwargs.get("backend"))
        return compile_eager(module, **{**kwargs, "backend": compile_backend})

    monkeypatch.setattr(torch, "compile", compile_with_backend)
    with torch.enable_grad():
        RTDETR(model).train(data=str(deploy_data), epochs=1, compile=True, project=str(tmp_path), name="run", **TRAIN_ARGS)
    assert requested and requested[0] == "inductor", "Ultralytics did not compile the model"
    with open(tmp_path / "run" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and "metrics/mAP50-95(B)" in rows[0], "no validation after the epoch"

    net = RTDETR(tmp_path / "run" / "weights" / "last.pt").model.float().eval()
    compiled = compile_eager(net, backend=compile_backend)
    x = batch(images, 2, TRAIN_ARGS["imgsz"], TRAIN_ARGS["imgsz"])
    with torch.inference_mode():
        expected, out = net(x)[0], compiled(x)[0]
    assert (out - expected).abs().max() <= COMPILED_ATOL
