# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Fixtures for the model tests: built models, a generated dataset, a saved checkpoint, a `yolo` runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ultralytics import RTDETR

ROOT = Path(__file__).resolve().parents[2]

VARIANTS = ("rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml")
YOLO = Path(sys.executable).with_name("yolo")


def run_yolo(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run the installed ``yolo`` CLI, failing the test with its output if it fails; return the output."""
    result = subprocess.run(
        [str(YOLO), *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"yolo {' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="session", params=VARIANTS)
def variant_model(request: pytest.FixtureRequest) -> RTDETR:
    """Each fork model YAML, built by bare name (nc=1, random weights, eval mode)."""
    torch.manual_seed(0)
    model = RTDETR(request.param)
    model.model.eval()
    return model


@pytest.fixture(scope="session")
def hgblock_model() -> RTDETR:
    """rtdetr-l-HGBlock_Biformer.yaml, built by bare name, eval mode."""
    torch.manual_seed(0)
    model = RTDETR("rtdetr-l-HGBlock_Biformer.yaml")
    model.model.eval()
    return model


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, hgblock_model: RTDETR) -> Path:
    """The HGBlock_Biformer model saved as an Ultralytics checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "hgblock_biformer.pt"
    hgblock_model.save(path)
    return path
