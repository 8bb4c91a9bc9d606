# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""regions.py owns the region layout: a cell's (region, token), region extents and the inverse of the routed gather
all agree with the tensor layout `to_regions` builds, on a grid whose last row of regions is partial."""

from __future__ import annotations

import torch

from ultralytics.nn.AddModules.regions import (
    bra_grid,
    cell_region,
    from_regions,
    place_routed,
    region_cells,
    region_valid,
    to_regions,
)

H, W = 7, 9  # n_win 3: regions of 2x3 tokens, 4x3 regions, the last row one token high
GRID = bra_grid(H, W, 3)


def cell_ids() -> torch.Tensor:
    """A (1, 1, H, W) map whose cells hold their own row-major index."""
    return torch.arange(H * W, dtype=torch.float64).view(1, 1, H, W)


def test_cell_region_is_where_to_regions_puts_the_cell():
    """Every cell's (region, token) is its position in `to_regions`' region-major layout."""
    laid_out = to_regions(cell_ids(), GRID, num_heads=1)[0, :, :, 0]  # (R, rh*rw)
    for row in range(H):
        for col in range(W):
            region, token = cell_region(GRID, (row, col))
            assert laid_out[region, token] == row * W + col


def test_region_cells_are_the_real_cells_of_each_region():
    """Each region's extent holds exactly the real (unpadded) cells `to_regions` puts in it."""
    laid_out = to_regions(cell_ids(), GRID, num_heads=1)[0, :, :, 0]
    valid = region_valid(GRID, torch.device("cpu"))
    extents = region_cells(GRID)
    assert extents.shape == (12, 4) and extents[-1].tolist() == [6, 6, 7, 9]  # the partial last region
    for region, (row0, col0, row1, col1) in enumerate(extents.tolist()):
        cells = {int(i) for i in laid_out[region][valid[region]]}
        assert cells == {r * W + c for r in range(row0, row1) for c in range(col0, col1)}


def test_place_routed_is_from_regions_of_the_routed_values():
    """The inverse of the routed gather: values over routed regions' tokens land where `from_regions` puts those
    regions' tokens, zero elsewhere, padding dropped (the recorder places attention rows with it)."""
    routes = torch.tensor([10, 2, 7])  # a partial region first, then two whole ones
    values = torch.arange(2 * 3 * GRID.tokens, dtype=torch.float64).view(2, -1) + 1  # 2 heads, distinct nonzero
    placed = place_routed(values, routes, GRID)
    expected = torch.zeros(2, H, W, dtype=torch.float64)  # by hand: route j's token t at its cell, if real
    for j, region in enumerate(routes.tolist()):
        region_row, region_col = divmod(region, 3)  # 3 regions per row
        for t in range(6):  # 2x3 tokens, row-major
            row, col = region_row * 2 + t // 3, region_col * 3 + t % 3
            if row < H:
                expected[:, row, col] = values[:, j * 6 + t]
    assert placed.shape == (2, H, W) and torch.equal(placed, expected)
    region_major = torch.zeros(2, GRID.regions, GRID.tokens, 1, dtype=torch.float64)  # and as from_regions lays out
    region_major[:, routes] = values.view(2, 3, GRID.tokens, 1)
    assert torch.equal(placed, from_regions(region_major, GRID, num_heads=2)[0])
