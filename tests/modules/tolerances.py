# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Reduced-precision tolerances of the module tests, derived from the formats' unit roundoff."""

from __future__ import annotations

import torch

BF16_UNIT_ROUNDOFF = 2**-8  # bf16 keeps 8 significant bits: one rounding errs by at most this, relatively
# A BRA forward (or backward) rounds to bf16 a handful of times in sequence (projection, logits, probabilities,
# attention output, output projection); allow 6 roundings' worth, norm-wise
BF16_RELATIVE_TOLERANCE = 6 * BF16_UNIT_ROUNDOFF


def norm_relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| (Frobenius), computed in float64."""
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()
