# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Plain global multi-head self-attention with a depth-wise convolution of the input (BiFormer's AttentionLePE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .checks import check_heads, check_input, check_side_dwconv
from .lce import depthwise_conv
from .sizes import static_shape

__all__ = ("AttentionLePE",)


class AttentionLePE(nn.Module):
    """Global multi-head self-attention over all H*W tokens plus a depth-wise convolution of the input (LePE).

    Attributes:
        num_heads (int): Number of attention heads.
        head_dim (int): Channels per head.
        scale (float): Multiplier of q.k, `qk_scale or head_dim**-0.5`.
        qkv (nn.Linear): Linear(dim, 3*dim) producing q, k, v.
        attn_drop (nn.Dropout): Dropout on the attention weights (training only).
        proj (nn.Linear): Output projection.
        proj_drop (nn.Dropout): Dropout after the projection.
        lepe (nn.Conv2d | None): Depth-wise convolution of the input, or None.

    Examples:
        >>> m = AttentionLePE(32, num_heads=4)
        >>> m(torch.randn(2, 32, 6, 5)).shape
        torch.Size([2, 32, 6, 5])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        side_dwconv: int = 5,
    ):
        """Initialize the module.

        Args:
            dim (int): Channels of input and output.
            num_heads (int): Number of heads, a divisor of dim.
            qkv_bias (bool): Whether the qkv Linear has a bias.
            qk_scale (float, optional): Multiplier of q.k; defaults to head_dim**-0.5.
            attn_drop (float): Dropout probability on the attention weights.
            proj_drop (float): Dropout probability after the projection.
            side_dwconv (int): Kernel size of the depth-wise convolution; 0 disables it.
        """
        super().__init__()
        name = type(self).__name__
        check_heads(name, "dim", dim, num_heads)
        check_side_dwconv(name, side_dwconv)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.lepe = depthwise_conv(dim, side_dwconv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply global attention.

        Args:
            x (torch.Tensor): Input of shape (N, C, H, W), C == dim.

        Returns:
            (torch.Tensor): Output of shape (N, C, H, W).
        """
        check_input(x, self.dim, type(self).__name__)
        h = static_shape(x)[2]
        tokens = rearrange(x, "n c h w -> n (h w) c")
        qkv = rearrange(self.qkv(tokens), "n t (three heads d) -> three n heads t d", three=3, heads=self.num_heads)
        q, k, v = qkv.unbind(0)  # (n, heads, h*w, d) each
        dropout = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)  # (n, heads, h*w, d)
        out = rearrange(out, "n heads t d -> n t (heads d)")  # (n, h*w, c)
        if self.lepe is not None:
            out = out + rearrange(self.lepe(x), "n c h w -> n (h w) c")
        return rearrange(self.proj_drop(self.proj(out)), "n (h w) c -> n c h w", h=h)
