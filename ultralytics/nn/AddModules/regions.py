# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The region grid of BRA and the region-major layouts of its maps: the one owner of the region layout.

A map of H x W tokens is cut into regions of rh x rw tokens, row-major; the last row and column of regions may be
partial, in which case the map is zero-padded bottom/right to whole regions and the padded positions are masked later.
Within a region, tokens are row-major too. Everything that depends on this tiling lives here: the tensor layouts
(`to_regions`, `from_regions`), the real-token masks and counts, a map cell's (region, token) (`cell_region`), each
region's extent in map cells (`region_cells`) and the inverse of the routed gather (`place_routed`).

Sizes are either Python ints (eager, and static exports: tracing freezes them) or, while tracing a dynamic export,
0-dim tensors read from the input's shape (`sizes.py`). Every tensor function here works with both.

No tensor here has more than MAX_DIMS dimensions, at any step: XNNPACK (ExecuTorch's CPU delegate), LiteRT and other
mobile runtimes refuse tensors of higher rank, and einops reshapes every pattern into its elementary axes before it
permutes. The region layouts therefore split heads off in a reshape of their own, apart from the six-axis region
permute; the joint qkv projection is permuted once, as 3*heads heads, and q, k and v are split off after it. Each
layout call passes sizes of the grid (traced tensors in a dynamic trace, ints otherwise): with only the int head
count passed, a dynamic export traced after a static one in the same process came out with sizes of the static
trace (seen with the whole models, not reproduced with a lone layer; einops caches what it computes per pattern,
shape and lengths), and the graph failed in onnxruntime.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .sizes import Size, at_least_one

MAX_DIMS = 6  # highest tensor rank of the layouts: XNNPACK's XNN_MAX_TENSOR_DIMS
TO_REGIONS = "n d (nh rh) (nw rw) -> n (nh nw) (rh rw) d"  # the region permute: six axes
FROM_REGIONS = "n (nh nw) (rh rw) d -> n d (nh rh) (nw rw)"
SPLIT_HEADS = "b (heads d) h w -> (b heads) d h w"  # reshapes: to_regions' first step, from_regions' last
JOIN_HEADS = "(b heads) d h w -> b (heads d) h w"

__all__ = (
    "MAX_DIMS",
    "RegionGrid",
    "bra_grid",
    "cell_region",
    "from_regions",
    "gather_regions",
    "place_routed",
    "qkv_to_regions",
    "region_cells",
    "region_counts",
    "region_grid",
    "region_means",
    "region_valid",
    "to_regions",
)


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


def region_grid(h: Size, w: Size, rh: Size, rw: Size) -> RegionGrid:
    """Tile an (h, w) map into regions of (rh, rw), the last row/column of regions possibly partial.

    The ceiling divisions add first: exported integer division truncates, so the negated floor trick would be wrong.
    """
    return RegionGrid(h, w, rh, rw, (h + rh - 1) // rh, (w + rw - 1) // rw)


def bra_grid(h: Size, w: Size, n_win: int) -> RegionGrid:
    """BRA's grid: regions of (h // n_win, w // n_win) tokens, at least 1 (n_win x n_win regions when divisible)."""
    return region_grid(h, w, at_least_one(h // n_win), at_least_one(w // n_win))


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
    per_head = rearrange(_pad(x, grid), SPLIT_HEADS, heads=num_heads, h=grid.hp, w=grid.wp)  # a view
    return rearrange(per_head, TO_REGIONS, rh=grid.rh, rw=grid.rw)


def qkv_to_regions(qkv: torch.Tensor, grid: RegionGrid, num_heads: int) -> tuple[torch.Tensor, ...]:
    """`to_regions` of q, k and v at once: one region permute of the whole joint projection.

    The permute keeps (B, qkv, heads) joined as its first axis; splitting q, k and v off afterwards is a view for one
    image and a copy of each for a batch.

    Args:
        qkv (torch.Tensor): Projection of shape (B, 3*C, H, W): q, k, v stacked along channels.
        grid (RegionGrid): Region grid of the map.
        num_heads (int): Number of heads.

    Returns:
        (tuple[torch.Tensor, ...]): q, k, v, each of shape (B*num_heads, R, rh*rw, C/num_heads).
    """
    regions = to_regions(qkv, grid, 3 * num_heads)  # (B*3*heads, R, rh*rw, d)
    sizes = {"heads": num_heads, "r": grid.regions, "t": grid.tokens}  # grid sizes: see the module docstring
    split = rearrange(regions, "(b qkv heads) r t d -> qkv b heads r t d", qkv=3, **sizes)
    return tuple(rearrange(t, "b heads r t d -> (b heads) r t d", **sizes) for t in split.unbind(0))


def from_regions(x: torch.Tensor, grid: RegionGrid, num_heads: int) -> torch.Tensor:
    """Inverse of `to_regions`: (B*heads, R, rh*rw, d) to (B, heads*d, H, W), padding cropped."""
    per_head = rearrange(x, FROM_REGIONS, nh=grid.nh, rh=grid.rh)  # (B*heads, d, hp, wp)
    x = rearrange(per_head, JOIN_HEADS, heads=num_heads, h=grid.hp, w=grid.wp)  # (B, heads*d, hp, wp), a view
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


def cell_region(grid: RegionGrid, cell: tuple[int, int]) -> tuple[int, int]:
    """The region of a map cell and the cell's token index within it (row-major, padding included).

    Args:
        grid (RegionGrid): Region grid of the map (int sizes).
        cell (tuple[int, int]): Row and column of the cell.

    Returns:
        (tuple[int, int]): Region index (row-major over the nh x nw grid) and token index (row-major over rh x rw),
            the indices of the cell in `to_regions`' layout.
    """
    (ri, ty), (rj, tx) = divmod(cell[0], grid.rh), divmod(cell[1], grid.rw)
    return ri * grid.nw + rj, ty * grid.rw + tx


def region_cells(grid: RegionGrid) -> np.ndarray:
    """Each region's extent in map cells, row-major; a partial last row/column covers only the real cells.

    Args:
        grid (RegionGrid): Region grid of the map (int sizes).

    Returns:
        (np.ndarray): Shape (R, 4) int: first row, first column, end row, end column (exclusive) of each region.
    """
    i, j = np.divmod(np.arange(grid.nh * grid.nw), grid.nw)
    rows = np.minimum(np.stack((i, i + 1)) * grid.rh, grid.h)
    cols = np.minimum(np.stack((j, j + 1)) * grid.rw, grid.w)
    return np.stack((rows[0], cols[0], rows[1], cols[1]), -1)


def place_routed(values: torch.Tensor, routes: torch.Tensor, grid: RegionGrid) -> torch.Tensor:
    """Inverse of the routed gather: put values over the tokens of routed regions back onto the map.

    A scatter into the region-major layout (zeros in regions not routed), then `from_regions`, which crops padding.

    Args:
        values (torch.Tensor): Shape (C, k*rh*rw): for each of the k routed regions, its rh*rw tokens row-major, as
            the routed attention lays out keys (e.g. one query token's attention row, C heads).
        routes (torch.Tensor): The k routed regions, shape (k,), distinct.
        grid (RegionGrid): Region grid of the map (int sizes).

    Returns:
        (torch.Tensor): Shape (C, h, w); zero outside the routed regions.
    """
    channels = values.shape[0]
    region_major = values.new_zeros(channels, grid.regions, grid.tokens, 1)
    region_major[:, routes.to(values.device)] = values.view(channels, -1, grid.tokens, 1)
    return from_regions(region_major, grid, channels)[0]
