# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Argument checks of the BiFormer layers: every error names the module, the argument and the allowed values."""

from __future__ import annotations

import torch

__all__ = ("check", "check_heads", "check_input", "check_min", "check_side_dwconv")


def check(ok: bool, module: str, message: str, error: type[Exception] = ValueError) -> None:
    """Raise `error` with a message that names the module when `ok` is False."""
    if not ok:
        raise error(f"{module}: {message}")


def check_min(module: str, name: str, value: int, minimum: int = 1) -> None:
    """Check that an integer argument is at least `minimum`."""
    ok = isinstance(value, int) and value >= minimum
    check(ok, module, f"{name} must be an integer >= {minimum}, got {value!r}")


def check_heads(module: str, name: str, dim: int, num_heads: int) -> None:
    """Check that `dim` splits evenly into `num_heads` heads, listing the head counts that would."""
    check_min(module, "num_heads", num_heads)
    allowed = [d for d in range(1, dim + 1) if dim % d == 0]
    check(dim % num_heads == 0, module, f"{name}={dim} must be divisible by num_heads={num_heads}; allowed: {allowed}")


def check_side_dwconv(module: str, side_dwconv: int) -> None:
    """Check the LCE kernel size: 0 disables it, otherwise it must be odd so the output keeps the input size."""
    ok = isinstance(side_dwconv, int) and (side_dwconv == 0 or (side_dwconv > 0 and side_dwconv % 2 == 1))
    check(ok, module, f"side_dwconv must be 0 (no LCE term) or an odd kernel size >= 1, got {side_dwconv!r}")


def check_input(x: torch.Tensor, dim: int, module: str) -> None:
    """Check that x is (N, C, H, W) with C == dim (reads only the channel count, so traced sizes stay traced)."""
    check(x.dim() == 4, module, f"expected a 4D input of shape (N, C, H, W), got shape {tuple(x.shape)}")
    channels = int(x.shape[1])
    check(channels == dim, module, f"expected {dim} input channels (dim={dim}), got {channels} (shape {tuple(x.shape)})")
