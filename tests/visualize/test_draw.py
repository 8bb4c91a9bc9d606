# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""What the routing pictures draw, against known routes on a non-square, stretched image: regions, ranks, counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from ultralytics.biformer.routing.draw import RoutingView, draw_popularity, draw_routes
from ultralytics.biformer.routing.geometry import ImageTransform
from ultralytics.biformer.routing.record import LayerRouting
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules.regions import bra_grid

H, W, STRIDE = 7, 9, 16  # a 7x9 map of 2x3 regions (n_win 3): 4x3 regions, the last row partial
ORIG_HW = (300, 200)  # a tall original stretched onto a wide 112x144 input: different gains per axis
INPUT_HW = (H * STRIDE, W * STRIDE)
REGIONS, TOPK = 12, 4
# region r routes to these, most affine first: four distinct regions drawn once, so regions differ in popularity
_GEN = torch.Generator().manual_seed(0)
ROUTES = torch.stack([torch.randperm(REGIONS, generator=_GEN)[:TOPK] for _ in range(REGIONS)])


def expected_box(region: int) -> tuple[float, float, float, float]:
    """Region's box x0, y0, w, h in original pixels, by hand: 2x3-cell regions, row-major, 3 per row, the last
    row one cell high; 16 input px per cell, then the stretch undone axis by axis."""
    row, col = divmod(region, 3)
    y0, y1 = 2 * row, min(2 * row + 2, H)
    x0, x1 = 3 * col, 3 * col + 3
    sy, sx = ORIG_HW[0] / INPUT_HW[0], ORIG_HW[1] / INPUT_HW[1]
    return x0 * STRIDE * sx, y0 * STRIDE * sy, (x1 - x0) * STRIDE * sx, (y1 - y0) * STRIDE * sy


@pytest.fixture
def view() -> RoutingView:
    """A view of a hand-made record, the query in region 7 (region row 2, column 1)."""
    module = BiLevelRoutingAttention_nchw(8, n_win=3, topk=TOPK)
    affinity = torch.zeros(1, REGIONS, REGIONS)
    inputs = torch.zeros(1, 8, H, W)
    layer = LayerRouting(0, "m", 3, module, INPUT_HW, bra_grid(H, W, 3), affinity, ROUTES[None], inputs)
    transform = ImageTransform.from_shapes(ORIG_HW, INPUT_HW, stretch=True)
    image = np.full((*ORIG_HW, 3), 128, np.uint8)
    query = (4.5 * STRIDE * ORIG_HW[1] / INPUT_HW[1], 4.5 * STRIDE * ORIG_HW[0] / INPUT_HW[0])  # cell (4, 4)
    return RoutingView(layer, image, transform, query)


def _axes():
    """A fresh matplotlib axes."""
    return Figure().subplots()


def test_routing_map_fills_the_query_regions_routes_in_rank_order(view: RoutingView):
    """The filled rectangles are region 7's four routes, in order, where those regions lie on the original image;
    each carries its rank at its centre."""
    assert view.region == 7 and ROUTES[7].tolist() != ROUTES[0].tolist()
    ax = _axes()
    draw_routes(ax, view)
    filled = [p for p in ax.patches if p.get_fill()]
    boxes = [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in filled]
    expected = [expected_box(r) for r in ROUTES[7].tolist()]
    np.testing.assert_allclose(boxes, expected, atol=1e-9)
    ranks = {t.get_text(): t.get_position() for t in ax.texts}
    for rank, (x, y, w, h) in enumerate(expected, 1):
        np.testing.assert_allclose(ranks[str(rank)], (x + w / 2, y + h / 2), atol=1e-9)
    (query_outline,) = [p for p in ax.patches if not p.get_fill()]
    np.testing.assert_allclose(
        (query_outline.get_x(), query_outline.get_y(), query_outline.get_width(), query_outline.get_height()),
        expected_box(7),
        atol=1e-9,
    )


def test_popularity_counts_are_the_known_ones_where_their_regions_lie(view: RoutingView):
    """Each region shows how many query regions route to it (counted here from ROUTES), at its centre."""
    ax = _axes()
    draw_popularity(ax, view)
    counts = np.bincount(ROUTES.flatten().numpy(), minlength=REGIONS)
    assert counts.sum() == REGIONS * TOPK and len(set(counts.tolist())) > 1
    shown = {tuple(np.round(t.get_position(), 6)): int(t.get_text()) for t in ax.texts}
    for region, count in enumerate(counts):
        x, y, w, h = expected_box(region)
        assert shown[tuple(np.round((x + w / 2, y + h / 2), 6))] == count
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(4, 3), counts.reshape(4, 3))
