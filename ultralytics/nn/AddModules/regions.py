# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The region grid of BRA and the region-major layouts of its maps.

A map of H x W tokens is cut into regions of rh x rw tokens, row-major; the last row and column of regions may be
partial, in which case the map is zero-padded bottom/right to whole regions and the padded positions are masked later.

Sizes are either Python ints (eager, and static exports: tracing freezes them) or, while tracing a dynamic export,
0-dim tensors read from the input's shape, so that the exported graph computes the grid from the input it is given.
Every function here works with both.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = (
    "RegionGrid",
    "Size",
    "at_most",
    "bra_grid",
    "from_regions",
    "gather_regions",
    "map_size",
    "qkv_to_regions",
    "region_counts",
    "region_grid",
    "region_means",
    "region_valid",
    "static_shape",
    "to_regions",
)

Size = Union[int, torch.Tensor]  # a Python int, or a 0-dim integer tensor while tracing with symbolic sizes


class RegionGrid(NamedTuple):
    """Region grid over an (h, w) map: region size (rh, rw) and regions per side (nh, nw), row-major."""

    h: Size
    w: Size
    rh: Size
    rw: Size
    nh: Size
    nw: Size

    @property
    def hp(self) -> Size:
        """Padded height, a multiple of rh."""
        return self.nh * self.rh

    @property
    def wp(self) -> Size:
        """Padded width, a multiple of rw."""
        return self.nw * self.rw

    @property
    def regions(self) -> Size:
        """Number of regions R = nh * nw."""
        return self.nh * self.nw

    @property
    def tokens(self) -> Size:
        """Tokens per region, padding included."""
        return self.rh * self.rw

    @property
    def symbolic(self) -> bool:
        """Whether the sizes are traced tensors (a dynamic export) rather than Python ints."""
        return isinstance(self.h, torch.Tensor) or isinstance(self.w, torch.Tensor)

    @property
    def padded(self) -> bool:
        """Whether the map may need bottom/right padding to whole regions (always assumed when symbolic)."""
        return self.symbolic or self.hp != self.h or self.wp != self.w


def static_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Return the shape of x as Python ints; under tracing this freezes the sizes as constants of the trace."""
    return tuple(int(s) for s in x.shape)


def map_size(x: torch.Tensor, symbolic: bool) -> tuple[Size, Size]:
    """(H, W) of an (N, C, H, W) map: Python ints, or with `symbolic` the sizes as tracing records them."""
    h, w = x.shape[2:]
    return (h, w) if symbolic else (int(h), int(w))


def _at_least_one(v: Size) -> Size:
    """max(v, 1) for ints and traced sizes."""
    return v.clamp(min=1) if isinstance(v, torch.Tensor) else max(v, 1)


def at_most(v: Size, limit: int) -> Size:
    """min(v, limit) for ints and traced sizes."""
    return v.clamp(max=limit) if isinstance(v, torch.Tensor) else min(v, limit)


def region_grid(h: Size, w: Size, rh: Size, rw: Size) -> RegionGrid:
    """Tile an (h, w) map into regions of (rh, rw), the last row/column of regions possibly partial.

    The ceiling divisions add first: exported integer division truncates, so the negated floor trick would be wrong.
    """
    return RegionGrid(h, w, rh, rw, (h + rh - 1) // rh, (w + rw - 1) // rw)


def bra_grid(h: Size, w: Size, n_win: int) -> RegionGrid:
    """BRA's grid: regions of (h // n_win, w // n_win) tokens, at least 1 (n_win x n_win regions when divisible)."""
    return region_grid(h, w, _at_least_one(h // n_win), _at_least_one(w // n_win))


def _pad(x: torch.Tensor, grid: RegionGrid) -> torch.Tensor:
    """Zero-pad an (N, C, h, w) map bottom/right to (N, C, hp, wp)."""
    return F.pad(x, (0, grid.wp - grid.w, 0, grid.hp - grid.h)) if grid.padded else x


def to_regions(x: torch.Tensor, grid: RegionGrid, num_heads: int) -> torch.Tensor:
    """Zero-pad a map to whole regions and lay it out region-major per head.

    Args:
        x (torch.Tensor): Map of shape (B, C, H, W), C divisible by num_heads.
        grid (RegionGrid): Region grid of the map.
        num_heads (int): Number of heads.

    Returns:
        (torch.Tensor): Shape (B*num_heads, R, rh*rw, C/num_heads); padded positions hold zeros.
    """
    pattern = "b (heads d) (nh rh) (nw rw) -> (b heads) (nh nw) (rh rw) d"
    return rearrange(_pad(x, grid), pattern, heads=num_heads, rh=grid.rh, rw=grid.rw)


def qkv_to_regions(qkv: torch.Tensor, grid: RegionGrid, num_heads: int) -> tuple[torch.Tensor, ...]:
    """`to_regions` of q, k and v at once: one copy of the whole joint projection.

    Args:
        qkv (torch.Tensor): Projection of shape (B, 3*C, H, W): q, k, v stacked along channels.
        grid (RegionGrid): Region grid of the map.
        num_heads (int): Number of heads.

    Returns:
        (tuple[torch.Tensor, ...]): q, k, v, each of shape (B*num_heads, R, rh*rw, C/num_heads).
    """
    pattern = "b (qkv heads d) (nh rh) (nw rw) -> qkv (b heads) (nh nw) (rh rw) d"
    return rearrange(_pad(qkv, grid), pattern, qkv=3, heads=num_heads, rh=grid.rh, rw=grid.rw).unbind(0)


def from_regions(x: torch.Tensor, grid: RegionGrid, num_heads: int) -> torch.Tensor:
    """Inverse of `to_regions`: (B*heads, R, rh*rw, d) to (B, heads*d, H, W), padding cropped."""
    pattern = "(b heads) (nh nw) (rh rw) d -> b (heads d) (nh rh) (nw rw)"
    x = rearrange(x, pattern, heads=num_heads, nh=grid.nh, rh=grid.rh, rw=grid.rw)
    return x[:, :, : grid.h, : grid.w] if grid.padded else x


def region_counts(grid: RegionGrid, like: torch.Tensor) -> torch.Tensor:
    """Number of real (unpadded) tokens in each region, shape (R,), with like's dtype and device."""
    rows = (grid.h - torch.arange(grid.nh, device=like.device) * grid.rh).clamp(max=grid.rh)
    cols = (grid.w - torch.arange(grid.nw, device=like.device) * grid.rw).clamp(max=grid.rw)
    return (rows[:, None] * cols[None, :]).reshape(-1).to(like.dtype)


def region_means(x: torch.Tensor, grid: RegionGrid, num_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """Mean of each region's real tokens, heads joined again, computed in dtype.

    Padding holds zeros, so the mean is the sum times 1 / (real count). Products, a reciprocal and reshapes only (no
    division, no unsqueeze): OpenVINO's CPU plugin rewrites those into other nodes, which lose the f32 mark
    `openvino_routing` puts on these.

    Args:
        x (torch.Tensor): Region-major tensor of shape (B*num_heads, R, rh*rw, d), zeros at padding.
        grid (RegionGrid): Region grid of the map.
        num_heads (int): Number of heads.
        dtype (torch.dtype): Precision of the sums and the result.

    Returns:
        (torch.Tensor): Shape (B, R, num_heads*d).
    """
    per_token = region_counts(grid, x.new_empty((), dtype=dtype)).reciprocal().view(-1, 1)
    return rearrange(x.sum(2, dtype=dtype) * per_token, "(b heads) r d -> b r (heads d)", heads=num_heads)


def region_valid(grid: RegionGrid, device: torch.device) -> torch.Tensor:
    """Boolean (R, rh*rw) map of which region positions are real tokens."""
    rows = torch.arange(grid.hp, device=device).view(grid.nh, grid.rh) < grid.h
    cols = torch.arange(grid.wp, device=device).view(grid.nw, grid.rw) < grid.w
    return rearrange(rows[:, None, :, None] & cols[None, :, None, :], "nh nw rh rw -> (nh nw) (rh rw)")


def gather_regions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select routed regions without expanding x per query region (backward is an index-add into x's size).

    Args:
        x (torch.Tensor): Region-major tensor of shape (B, R, ...).
        index (torch.Tensor): Long indices into R of shape (B, ...).

    Returns:
        (torch.Tensor): Shape (index.numel(), ...): x[b, index[b, ...]] in index order.
    """
    offsets = torch.arange(index.shape[0], device=index.device) * x.shape[1]
    flat = index + offsets.view(-1, *([1] * (index.dim() - 1)))
    return x.flatten(0, 1).index_select(0, flat.reshape(-1))
