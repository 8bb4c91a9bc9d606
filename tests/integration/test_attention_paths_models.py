# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The attention paths in whole models: a training step in PyTorch's deterministic mode (errors, not warnings) for
every path and both YAMLs next to rtdetr-l, and the `yolo` CLI choosing a path through $BIFORMER_ATTN_BACKEND."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from ultralytics.utils import ASSETS

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules.attention_paths import ENV_VAR, PATHS
from ultralytics.nn.tasks import RTDETRDetectionModel

from .conftest import ROOT, VARIANTS, run_yolo

sys.path.insert(0, str(ROOT / "benchmarks"))

from model_bench import training_batch  # noqa: E402

IMGSZ = 64  # P5 2x2: maps smaller than n_win
BATCH = 2


def training_step(model: RTDETRDetectionModel, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss and every parameter's gradient of one training step, the decoder's random denoising queries seeded."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss, _ = model.loss(batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("yaml", VARIANTS)
def test_training_step_in_deterministic_mode(yaml: str, path: str):
    """With torch.use_deterministic_algorithms(True, warn_only=False), a training step of each YAML on each path runs
    on CPU, every BRA parameter gets a finite, non-zero gradient, and a second step repeats the first bit for bit."""
    torch.manual_seed(0)
    model = RTDETRDetectionModel(yaml, nc=1, verbose=False).train()
    model.nc = 1  # set by the trainer in real training; the loss reads it
    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw)]
    assert layers
    for layer in layers:
        layer.attn_backend = path
    batch = training_batch(BATCH, IMGSZ, torch.device("cpu"))
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=False)
    try:
        first, second = training_step(model, batch), training_step(model, batch)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    assert torch.isfinite(first[0])
    for layer in layers:
        for name, p in layer.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1], strict=True))


def test_rtdetr_l_training_step_in_deterministic_mode():
    """rtdetr-l itself trains in strict deterministic mode on CPU: the BiFormer cells above compare like with like."""
    torch.manual_seed(0)
    model = RTDETRDetectionModel("rtdetr-l.yaml", nc=1, verbose=False).train()
    model.nc = 1
    batch = training_batch(BATCH, IMGSZ, torch.device("cpu"))
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=False)
    try:
        loss, _ = training_step(model, batch)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    assert torch.isfinite(loss)


@pytest.mark.parametrize("path", PATHS)
def test_cli_chooses_path_through_environment(path: str, tmp_path: Path):
    """`BIFORMER_ATTN_BACKEND=<path> yolo predict` runs that path in every BRA layer and says so once per layer."""
    output = run_yolo(
        "detect",
        "predict",
        "model=rtdetr-l-HGBlock_Biformer.yaml",
        f"source={ASSETS / 'bus.jpg'}",
        "imgsz=160",
        "save=False",
        cwd=tmp_path,
        env={ENV_VAR: path},
    )
    chosen = [line for line in output.splitlines() if "attention ($" in line]
    assert len(chosen) == 3, output[-3000:]  # three HGBlock_Biformer layers, one BRA each, logged once
    assert all(f": {path} attention (${ENV_VAR})" in line for line in chosen)
