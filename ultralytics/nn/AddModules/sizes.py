# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Sizes that are Python ints in eager runs and static exports, or traced 0-dim tensors in dynamic exports.

Tracing freezes a size read as a Python int into the graph as a constant; a size kept as a tensor is computed from
the input by the exported graph. The helpers here work with both kinds.
"""

from __future__ import annotations

from typing import Union

import torch

__all__ = ("Size", "at_least_one", "at_most", "map_size", "static_shape")

Size = Union[int, torch.Tensor]  # a Python int, or a 0-dim integer tensor while tracing with symbolic sizes


def static_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Return the shape of x as Python ints; under tracing this freezes the sizes as constants of the trace."""
    return tuple(int(s) for s in x.shape)


def map_size(x: torch.Tensor, symbolic: bool) -> tuple[Size, Size]:
    """(H, W) of an (N, C, H, W) map: Python ints, or with `symbolic` the sizes as tracing records them."""
    h, w = x.shape[2:]
    return (h, w) if symbolic else (int(h), int(w))


def at_least_one(v: Size) -> Size:
    """max(v, 1) for ints and traced sizes."""
    return v.clamp(min=1) if isinstance(v, torch.Tensor) else max(v, 1)


def at_most(v: Size, limit: int) -> Size:
    """min(v, limit) for ints and traced sizes."""
    return v.clamp(max=limit) if isinstance(v, torch.Tensor) else min(v, limit)
