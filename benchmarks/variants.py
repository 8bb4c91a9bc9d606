# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Comparison modules for the BRA benchmark: the unavoidable parts alone, dense attention, and the floor model.

Both modules use BRA's parameter names (`qkv_linear`, `output_linear`, `lepe`), so a `BiLevelRoutingAttention_nchw`
state dict loads into them and every variant runs the same projections on the same weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class UnavoidableParts(nn.Module):
    """What every BRA implementation must compute besides attention: the qkv and output projections and the LCE term.

    Forward is `output_linear(v + lepe(v))` with `q, k, v = qkv_linear(x).chunk(3)`: the attention output is replaced
    by v itself (same shape), q and k are computed and dropped (backward still runs the full 3*dim qkv convolution).

    Attributes:
        dim (int): Channels of input and output.
        qkv_linear (nn.Conv2d): 1x1 convolution producing q, k, v.
        output_linear (nn.Conv2d): 1x1 output projection.
        lepe (nn.Conv2d | None): Depth-wise convolution on v, or None.

    Examples:
        >>> UnavoidableParts(16)(torch.randn(2, 16, 9, 7)).shape
        torch.Size([2, 16, 9, 7])
    """

    def __init__(self, dim: int, side_dwconv: int = 3):
        """Initialize the module.

        Args:
            dim (int): Channels of input and output.
            side_dwconv (int): Odd kernel size of the depth-wise convolution on v; 0 disables it.
        """
        super().__init__()
        self.dim = dim
        self.qkv_linear = nn.Conv2d(dim, 3 * dim, kernel_size=1)
        self.output_linear = nn.Conv2d(dim, dim, kernel_size=1)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim) if side_dwconv > 0 else None

    @classmethod
    def like(cls, bra: nn.Module) -> UnavoidableParts:
        """Build the unavoidable parts of a BRA module, sharing nothing but holding a copy of its weights.

        Args:
            bra (nn.Module): A `BiLevelRoutingAttention_nchw` (or any module with the same parameter names).

        Returns:
            (UnavoidableParts): Module on bra's device and dtype with bra's qkv_linear, output_linear and lepe weights.
        """
        side_dwconv = bra.lepe.kernel_size[0] if bra.lepe is not None else 0
        weight = bra.qkv_linear.weight
        floor = cls(bra.dim, side_dwconv).to(device=weight.device, dtype=weight.dtype)
        floor.load_state_dict(bra.state_dict())
        return floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project, add the LCE term to v, project back.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        v = self.qkv_linear(x).chunk(3, dim=1)[2]
        return self.output_linear(v if self.lepe is None else v + self.lepe(v))


class DenseAttention(UnavoidableParts):
    """Global multi-head attention over all HxW tokens with BRA's projections, LCE term and scale (fused SDPA).

    Attributes:
        num_heads (int): Number of attention heads.
        scale (float): Multiplier of q.k, dim**-0.5 as in BRA.

    Examples:
        >>> DenseAttention(16, num_heads=2)(torch.randn(2, 16, 9, 7)).shape
        torch.Size([2, 16, 9, 7])
    """

    def __init__(self, dim: int, num_heads: int = 1, side_dwconv: int = 3):
        """Initialize the module.

        Args:
            dim (int): Channels of input and output, divisible by num_heads.
            num_heads (int): Number of attention heads.
            side_dwconv (int): Odd kernel size of the depth-wise convolution on v; 0 disables it.
        """
        super().__init__(dim, side_dwconv)
        assert dim % num_heads == 0, f"dim={dim} must be divisible by num_heads={num_heads}"
        self.num_heads = num_heads
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend from every token to every token, add the LCE term, project back.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W).

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        b, c, h, w = x.shape
        q, k, v = self.qkv_linear(x).chunk(3, dim=1)
        q_t, k_t, v_t = (t.reshape(b, self.num_heads, c // self.num_heads, h * w).transpose(-2, -1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q_t, k_t, v_t, scale=self.scale).transpose(-2, -1).reshape(b, c, h, w)
        return self.output_linear(out if self.lepe is None else out + self.lepe(v))


def floor_model(model: nn.Module, bra_type: type[nn.Module]) -> tuple[nn.Module, int]:
    """Copy a model with every BRA module replaced by its `UnavoidableParts` (same weights).

    Top-level layers of an Ultralytics model carry routing attributes (`i`, `f`, `type`, `np`); a replaced top-level
    layer keeps them.

    Args:
        model (nn.Module): Model containing `bra_type` modules.
        bra_type (type[nn.Module]): The BRA class to replace.

    Returns:
        floor (nn.Module): The copy.
        replaced (int): Number of modules replaced.
    """
    floor = copy.deepcopy(model)
    targets = [(name, m) for name, m in floor.named_modules() if isinstance(m, bra_type)]
    for name, bra in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = floor.get_submodule(parent_name)
        parts = UnavoidableParts.like(bra)
        for key in ("i", "f", "type", "np"):
            if hasattr(bra, key):
                setattr(parts, key, getattr(bra, key))
        setattr(parent, attr, parts)
    return floor, len(targets)
