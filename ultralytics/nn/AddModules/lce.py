# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Local context enhancement (LCE, "LePE" in the BiFormer code): a depth-wise convolution added to attention output."""

from __future__ import annotations

from torch import nn

__all__ = ("depthwise_conv",)


def depthwise_conv(dim: int, kernel: int) -> nn.Conv2d | None:
    """Depth-wise convolution for the local context enhancement (LCE/LePE) term, or None when kernel is 0."""
    return nn.Conv2d(dim, dim, kernel, stride=1, padding=kernel // 2, groups=dim) if kernel > 0 else None
