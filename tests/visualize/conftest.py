# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Fixtures for the routing-map tests: the fork's models, built once."""

from __future__ import annotations

import pytest
import torch

from ultralytics import RTDETR

VARIANTS = ("rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml")
BRA_LAYERS = {"rtdetr-l-Biformer.yaml": [9] * 6, "rtdetr-l-HGBlock_Biformer.yaml": [5, 6, 7]}  # model layer of each


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    """Each fork model YAML's DetectionModel, random weights, eval mode."""
    torch.manual_seed(0)
    return request.param, RTDETR(request.param).model.eval()
