# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Fixtures for the BiFormer module tests."""

from __future__ import annotations

import pytest
import torch

SEED = 0


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Seed torch before every test so that random weights, inputs and routing decisions are reproducible."""
    torch.manual_seed(SEED)
