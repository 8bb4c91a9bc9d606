# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Reduced-precision tolerances of the module tests, derived from the formats' unit roundoff."""

from __future__ import annotations

import torch

BF16_UNIT_ROUNDOFF = 2**-8  # bf16 keeps 8 significant bits: one rounding errs by at most this, relatively
# A BRA forward (or backward) rounds to bf16 a handful of times in sequence (projection, logits, probabilities,
# attention output, output projection); allow 6 roundings' worth, norm-wise
BF16_RELATIVE_TOLERANCE = 6 * BF16_UNIT_ROUNDOFF
FP16_UNIT_ROUNDOFF = 2**-11  # fp16 keeps 11 significant bits
FP16_RELATIVE_TOLERANCE = 6 * FP16_UNIT_ROUNDOFF  # the same 6 roundings, at fp16's precision (CUDA autocast)
FP32_ABS_TOLERANCE = 1e-4  # max abs error of a float32 module against the float64 reference


def norm_relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| (Frobenius), computed in float64."""
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


# Input scale of the bf16 tests. With random weights and unit inputs the softmax is nearly uniform, and a wrong
# attention scale hides in the bf16 tolerance; at 2 the attention weights (and the scale) matter. At 3, bf16 errors
# against the float64 reference exceed the tolerance.
ATTENTION_PEAKING = 2.0
# The reduced-precision case of BiLevelRoutingAttention_nchw compared with the float64 reference (the module tests and
# tools/gpu_check.py): few, well-separated regions, so that bf16/fp16 projections leave the routes as float64 has them
AUTOCAST_BRA_ARGS = {"num_heads": 2, "n_win": 3, "topk": 3}
AUTOCAST_MAP = (10, 7)
