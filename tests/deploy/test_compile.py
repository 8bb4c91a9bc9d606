# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The `compile=True` column of the parity matrix: one epoch of training and validation with torch.compile, and the
compiled model's loss against eager's.

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
import torch._inductor.config

from ultralytics import RTDETR

from .conftest import PARITY_MODELS, TRAIN_ARGS

COMPILED_RTOL = 1e-4  # compiled vs eager fp32 losses: the same arithmetic, possibly fused or reordered
pytestmark = pytest.mark.slow


def tensors(output: object) -> list[torch.Tensor]:
    """Every tensor in a (nested) model output, in order: the loss and its terms."""
    if isinstance(output, torch.Tensor):
        return [output]
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    return [t for item in items for t in tensors(item)]


@pytest.mark.parametrize("model", PARITY_MODELS)
def test_compile_trains_validates_and_matches_eager(
    model: str, compile_backend: str, deploy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """compile=True trains one epoch and validates; after training, the compiled model's loss and loss terms on a
    training batch equal those of the same model run eagerly (the graph training compiled, so no recompilation)."""
    compile_eager = torch.compile
    requested, compared = [], {}

    def compile_with_backend(module: torch.nn.Module, **kwargs) -> torch.nn.Module:
        """torch.compile with the backend under test, recording what Ultralytics asked for."""
        requested.append(kwargs.get("backend"))
        return compile_eager(module, **{**kwargs, "backend": compile_backend})

    def compare_with_eager(trainer) -> None:
        """on_train_end: the compiled and the eager model on one training batch."""
        batch = trainer.preprocess_batch(next(iter(trainer.train_loader)))
        for name, net in (("compiled", trainer.model), ("eager", trainer.model._orig_mod)):
            torch.manual_seed(0)  # RT-DETR's training forward draws random denoising queries
            compared[name] = [t.detach().clone() for t in tensors(net(batch))]

    monkeypatch.setattr(torch, "compile", compile_with_backend)
    rtdetr = RTDETR(model)
    rtdetr.add_callback("on_train_end", compare_with_eager)
    with torch.enable_grad(), torch._inductor.config.patch(fallback_random=True):  # inductor: eager's random numbers
        rtdetr.train(data=str(deploy_data), epochs=1, compile=True, project=str(tmp_path), name="run", **TRAIN_ARGS)
    assert requested and requested[0] == "inductor", "Ultralytics did not compile the model"
    with open(tmp_path / "run" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["metrics/mAP50-95(B)"]) >= 0, "no validation after the epoch"
    for out, expected in zip(compared["compiled"], compared["eager"], strict=True):
        assert expected.abs().max() > 0
        torch.testing.assert_close(out, expected, rtol=COMPILED_RTOL, atol=0)
