# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Gather-based bi-level routing attention: the original BiFormer NCHW algorithm, kept as the benchmark baseline.

This is a straightforward port of the algorithm of BiFormer's `nchwBRA` (rayleizhu/BiFormer, CVPR 2023) as the
popular tutorial fork runs it, written for this repository: route on region means with `topk`, then gather the keys
and values of each query region's routed regions with `torch.gather` from a (query regions x all regions) expanded
view. The expanded view costs nothing in forward, but its gradient is a dense (query regions x all regions) tensor in
backward; that allocation is what the fork's module avoids and what `bench.py` measures.

Parameter names (`qkv_linear`, `output_linear`, `lepe`) match `BiLevelRoutingAttention_nchw`, so one state dict
loads into both. Sizes that are not multiples of the region size are zero-padded with no mask, as the original does
(padded keys take softmax weight); the two modules agree only on multiples of the region size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def to_regions(x: torch.Tensor, region: tuple[int, int], num_heads: int) -> torch.Tensor:
    """Lay out a map region-major per head.

    Args:
        x (torch.Tensor): Map of shape (B, C, H, W), H and W multiples of the region size, C divisible by num_heads.
        region (tuple[int, int]): Region size (rh, rw).
        num_heads (int): Number of heads.

    Returns:
        (torch.Tensor): Shape (B, num_heads, R, rh*rw, C/num_heads) with R = (H/rh)*(W/rw) regions.
    """
    b, c, h, w = x.shape
    rh, rw = region
    x = x.view(b, num_heads, c // num_heads, h // rh, rh, w // rw, rw)
    return x.permute(0, 1, 3, 5, 4, 6, 2).reshape(b, num_heads, (h // rh) * (w // rw), rh * rw, c // num_heads)


def from_regions(x: torch.Tensor, region: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `to_regions`.

    Args:
        x (torch.Tensor): Region-major tensor of shape (B, heads, R, rh*rw, d).
        region (tuple[int, int]): Region size (rh, rw).
        size (tuple[int, int]): Map size (H, W), multiples of the region size.

    Returns:
        (torch.Tensor): Map of shape (B, heads*d, H, W).
    """
    b, heads, _, _, d = x.shape
    (rh, rw), (h, w) = region, size
    x = x.view(b, heads, h // rh, w // rw, rh, rw, d).permute(0, 1, 6, 2, 4, 3, 5)
    return x.reshape(b, heads * d, h, w)


def gather_routed(x: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
    """Gather each query region's routed regions from a (query regions x all regions) expanded view.

    Args:
        x (torch.Tensor): Region-major keys or values of shape (B, heads, R, T, d).
        routes (torch.Tensor): Routed regions, long indices of shape (B, heads, R, topk).

    Returns:
        (torch.Tensor): Shape (B, heads, R, topk*T, d).
    """
    b, heads, regions, tokens, d = x.shape
    topk = routes.shape[-1]
    expanded = x.unsqueeze(2).expand(-1, -1, regions, -1, -1, -1)  # (B, heads, R query, R key, T, d), a view
    index = routes.view(b, heads, regions, topk, 1, 1).expand(-1, -1, -1, -1, tokens, d)
    return torch.gather(expanded, 3, index).flatten(3, 4)


class GatherBRA(nn.Module):
    """Bi-level routing attention computed the original way (topk routing, then `torch.gather` of K/V).

    Attributes:
        dim (int): Channels of input and output.
        num_heads (int): Number of attention heads.
        scale (float): Multiplier of q.k, `qk_scale or dim**-0.5` (dim, not head dim, as the original).
        topk (int): Routed key regions per query region.
        n_win (int): Regions per side; the region size is (H // n_win, W // n_win).
        qkv_linear (nn.Conv2d): 1x1 convolution producing q, k, v.
        output_linear (nn.Conv2d): 1x1 output projection.
        lepe (nn.Conv2d | None): Depth-wise convolution on v added to the attention output, or None.

    Examples:
        >>> m = GatherBRA(32, num_heads=2, n_win=7, topk=4)
        >>> m(torch.randn(1, 32, 14, 14)).shape
        torch.Size([1, 32, 14, 14])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        n_win: int = 7,
        qk_scale: float | None = None,
        topk: int = 4,
        side_dwconv: int = 3,
    ):
        """Initialize the module.

        Args:
            dim (int): Channels of input and output, divisible by num_heads.
            num_heads (int): Number of attention heads.
            n_win (int): Regions per side of a map whose size is a multiple of n_win.
            qk_scale (float, optional): Multiplier of q.k; defaults to dim**-0.5.
            topk (int): Routed key regions per query region, at most the number of regions.
            side_dwconv (int): Odd kernel size of the depth-wise convolution on v; 0 disables it.
        """
        super().__init__()
        assert dim % num_heads == 0, f"dim={dim} must be divisible by num_heads={num_heads}"
        self.dim = dim
        self.num_heads = num_heads
        self.scale = qk_scale or dim**-0.5
        self.topk = topk
        self.n_win = n_win
        self.qkv_linear = nn.Conv2d(dim, 3 * dim, kernel_size=1)
        self.output_linear = nn.Conv2d(dim, dim, kernel_size=1)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim) if side_dwconv > 0 else None

    def route(self, q: torch.Tensor, k: torch.Tensor, region: tuple[int, int]) -> torch.Tensor:
        """Pick the topk key regions of each query region by mean-query x mean-key affinity (no gradient).

        Args:
            q (torch.Tensor): Queries of shape (B, C, H, W).
            k (torch.Tensor): Keys of shape (B, C, H, W).
            region (tuple[int, int]): Region size (rh, rw).

        Returns:
            (torch.Tensor): Long indices of shape (B, R, topk).
        """
        q_mean = F.avg_pool2d(q.detach(), region, ceil_mode=True, count_include_pad=False)  # (B, C, nh, nw)
        k_mean = F.avg_pool2d(k.detach(), region, ceil_mode=True, count_include_pad=False)
        affinity = q_mean.flatten(2).transpose(1, 2) @ k_mean.flatten(2)  # (B, R, R)
        return affinity.topk(self.topk, dim=-1).indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply bi-level routing attention.

        Args:
            x (torch.Tensor): Input of shape (B, C, H, W) with H, W >= n_win.

        Returns:
            (torch.Tensor): Output of shape (B, C, H, W).
        """
        b, _, h, w = x.shape
        assert h >= self.n_win and w >= self.n_win, f"map {h}x{w} is smaller than n_win={self.n_win}"
        region = (h // self.n_win, w // self.n_win)
        q, k, v = self.qkv_linear(x).chunk(3, dim=1)
        routes = self.route(q, k, region).unsqueeze(1).expand(-1, self.num_heads, -1, -1)
        pad = (0, -w % region[1], 0, -h % region[0])  # zero padding to whole regions, not masked (as the original)
        q_r, k_r, v_r = (to_regions(F.pad(t, pad), region, self.num_heads) for t in (q, k, v))
        attn = ((q_r * self.scale) @ gather_routed(k_r, routes).transpose(-2, -1)).softmax(dim=-1)
        out = from_regions(attn @ gather_routed(v_r, routes), region, (h + pad[3], w + pad[1]))[:, :, :h, :w]
        if self.lepe is not None:
            out = out + self.lepe(v)
        return self.output_linear(out)
