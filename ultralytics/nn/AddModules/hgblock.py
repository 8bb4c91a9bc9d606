# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Upstream's HGBlock (PP-HGNetV2) with Bi-Level Routing Attention on its output."""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import HGBlock

from .bra_nchw import BiLevelRoutingAttention_nchw

__all__ = ("HGBlock_Biformer",)


class HGBlock_Biformer(HGBlock):
    """Upstream's HGBlock (PP-HGNetV2) with bi-level routing attention on its output.

    Attributes:
        m (nn.ModuleList): n `LightConv` (lightconv) or `Conv` blocks of cm channels.
        sc (Conv): 1x1 squeeze convolution to c2 // 2 channels.
        ec (Conv): 1x1 excitation convolution to c2 channels.
        cv (BiLevelRoutingAttention_nchw): Attention on the c2-channel output.
        add (bool): Whether the input is added to the output (shortcut and c1 == c2).

    Examples:
        >>> m = HGBlock_Biformer(16, 8, 32, k=3, n=2)
        >>> m(torch.randn(1, 16, 10, 10)).shape
        torch.Size([1, 32, 10, 10])
    """

    def __init__(
        self,
        c1: int,
        cm: int,
        c2: int,
        k: int = 3,
        n: int = 6,
        lightconv: bool = False,
        shortcut: bool = False,
        act: nn.Module | None = None,
    ):
        """Initialize the block.

        Args:
            c1 (int): Input channels.
            cm (int): Middle channels.
            c2 (int): Output channels.
            k (int): Kernel size of the blocks in m.
            n (int): Number of blocks in m.
            lightconv (bool): Use LightConv instead of Conv blocks.
            shortcut (bool): Add the input to the output when c1 == c2.
            act (nn.Module, optional): Activation of the convolutions; defaults to nn.ReLU().
        """
        super().__init__(c1, cm, c2, k, n, lightconv, shortcut, act)
        self.cv = BiLevelRoutingAttention_nchw(c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate x and every output of m, squeeze, excite, attend, and add x when configured.

        Args:
            x (torch.Tensor): Input of shape (N, c1, H, W).

        Returns:
            (torch.Tensor): Output of shape (N, c2, H, W).
        """
        y = [x]
        y.extend(m(y[-1]) for m in self.m)
        y = self.cv(self.ec(self.sc(torch.cat(y, 1))))
        return y + x if self.add else y
