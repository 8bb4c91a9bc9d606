# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing precision: region affinities are computed and ranked in at least fp32, whatever the input's precision.

A hard top-k over fp16/bf16 affinities flips near ties (and fp16 can overflow the sums), so routing leaves autocast
and raises its inputs to ROUTING_MIN_DTYPE; token attention keeps the running precision.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ("ROUTING_MIN_DTYPE", "autocast_off", "routing_dtype")

ROUTING_MIN_DTYPE = torch.float32


def routing_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype routing computes in for inputs like x: x's own dtype, raised to at least ROUTING_MIN_DTYPE."""
    return torch.promote_types(x.dtype, ROUTING_MIN_DTYPE)


def autocast_off(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Context that disables autocast on x's device, so that routing runs in `routing_dtype`."""
    device = x.device.type
    return (
        torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else contextlib.nullcontext()
    )

