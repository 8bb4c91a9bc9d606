# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Draw one BRA layer's routing on the original image: routing map, routing popularity, token attention."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ultralytics.nn.AddModules.regions import cell_region

from .geometry import ImageTransform, cell_edges, query_cell, region_boxes, region_edges
from .record import LayerRouting, TokenAttention

KINDS = ("routes", "popularity", "attention")  # one picture of each per layer, in this order on the contact sheet
PANEL_INCHES = 5.0  # width of one picture
DPI = 100
SHEET_DPI = 50  # the contact sheet holds 3 pictures per layer: smaller
OVERLAY_ALPHA = 0.55  # heat maps and filled regions over the image
MAX_LABELLED_REGIONS = 100  # popularity counts are written into the regions up to this many regions
TITLE_INCHES = 0.55  # room above each picture for its two-line title
MARGIN = 0.02  # figure fraction left around the pictures
COLORBAR_LABELS = 0.08  # figure fraction kept free on the right for colour-bar tick labels
GRID_STYLE = dict(color="white", linewidth=0.6, alpha=0.7)
QUERY_COLOR = "red"


@dataclass(frozen=True)
class RoutingView:
    """One BRA layer seen on one image, with one query position: what each picture of that layer draws.

    Attributes:
        layer (LayerRouting): The recorded layer.
        image (np.ndarray): The original image, RGB uint8 of shape (h, w, 3), possibly downscaled for display: it is
            drawn over the original extent `transform.orig_hw`.
        transform (ImageTransform): How the image became the network input.
        query_xy (tuple[float, float]): Query position x y in original pixels.
        n (int): Image of the recorded batch.
    """

    layer: LayerRouting
    image: np.ndarray
    transform: ImageTransform
    query_xy: tuple[float, float]
    n: int = 0

    @cached_property
    def cell(self) -> tuple[int, int]:
        """Map cell (row, col) of the query position."""
        xy = self.transform.to_input(np.asarray(self.query_xy))
        return query_cell(self.layer.grid, self.layer.input_hw, tuple(xy))

    @cached_property
    def region(self) -> int:
        """Query region."""
        return cell_region(self.layer.grid, self.cell)[0]

    @cached_property
    def boxes(self) -> np.ndarray:
        """Region boxes in original pixels, shape (R, 4)."""
        return self.transform.to_original(region_boxes(self.layer.grid, self.layer.input_hw))

    @cached_property
    def token_attention(self) -> TokenAttention:
        """Attention row of the query token."""
        return self.layer.attention(self.cell, self.n)

    def edges(self, regions: bool) -> tuple[np.ndarray, np.ndarray]:
        """x and y edges of the regions (or of the map cells) in original pixels."""
        xs, ys = (region_edges if regions else cell_edges)(self.layer.grid, self.layer.input_hw)
        box = self.transform.to_original(np.stack((xs, np.zeros_like(xs), xs, np.zeros_like(xs)), -1))
        xs = box[:, 0]
        box = self.transform.to_original(np.stack((np.zeros_like(ys), ys, np.zeros_like(ys), ys), -1))
        return xs, box[:, 1]


def title(layer: LayerRouting) -> str:
    """Layer title: BRA index, model layer, map size, region size, topk."""
    g = layer.grid
    where = f"layer {layer.layer}" if layer.layer is not None else layer.name
    return f"BRA {layer.index} ({where}) · map {g.h}x{g.w} · region {g.rh}x{g.rw} · topk {layer.k}"


def _background(ax: Axes, view: RoutingView) -> None:
    """The image in original pixel coordinates, region grid on top, no ticks."""
    h0, w0 = view.transform.orig_hw
    ax.imshow(view.image, extent=(0, w0, h0, 0), interpolation="bilinear")
    xs, ys = view.edges(regions=True)
    ax.vlines(xs, ys[0], ys[-1], **GRID_STYLE)
    ax.hlines(ys, xs[0], xs[-1], **GRID_STYLE)
    ax.set_xlim(0, w0)
    ax.set_ylim(h0, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def _outline(ax: Axes, box: np.ndarray, color: str, width: float) -> None:
    """Outline an xyxy box."""
    ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, edgecolor=color, linewidth=width))


def _mark_query(ax: Axes, view: RoutingView) -> None:
    """Outline the query region and mark the query position."""
    _outline(ax, view.boxes[view.region], QUERY_COLOR, 2.5)
    ax.plot(*view.query_xy, marker="+", color=QUERY_COLOR, markersize=12, markeredgewidth=2)


def draw_routes(ax: Axes, view: RoutingView) -> None:
    """Routing map: the query region outlined, its routed regions filled and numbered by rank (1 = most affine)."""
    _background(ax, view)
    routes = view.layer.routes[view.n, view.region].tolist()
    colors = colormaps["autumn"](np.linspace(0, 1, len(routes)))
    for rank, (region, color) in enumerate(zip(routes, colors), 1):
        x0, y0, x1, y1 = view.boxes[region]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=color, alpha=OVERLAY_ALPHA, edgecolor="black"))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, str(rank), ha="center", va="center", fontsize=9, weight="bold")
    _mark_query(ax, view)
    ax.set_title(f"{title(view.layer)}\nrouting of query region {view.region}", fontsize=8)


def draw_popularity(ax: Axes, view: RoutingView) -> None:
    """Routing popularity: how many query regions route to each key region."""
    _background(ax, view)
    counts = view.layer.popularity(view.n).cpu().numpy()
    xs, ys = view.edges(regions=True)
    mesh = ax.pcolormesh(xs, ys, counts, cmap="viridis", alpha=OVERLAY_ALPHA, vmin=0, shading="flat")
    if counts.size <= MAX_LABELLED_REGIONS:
        for (i, j), c in np.ndenumerate(counts):
            ax.text((xs[j] + xs[j + 1]) / 2, (ys[i] + ys[i + 1]) / 2, str(c), ha="center", va="center", fontsize=6)
    ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.02, label="query regions routed here")
    ax.set_title(f"{title(view.layer)}\nrouting popularity", fontsize=8)


def draw_attention(ax: Axes, view: RoutingView) -> None:
    """Token attention: the query token's weights (mean over heads) on the tokens of its routed regions."""
    _background(ax, view)
    att = view.token_attention.map.mean(0).cpu().numpy()
    xs, ys = view.edges(regions=False)
    mesh = ax.pcolormesh(xs, ys, np.ma.masked_equal(att, 0), cmap="jet", alpha=OVERLAY_ALPHA, shading="flat")
    for region in view.layer.routes[view.n, view.region].tolist():
        _outline(ax, view.boxes[region], "white", 1.2)
    _mark_query(ax, view)
    ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.02, label="attention weight")
    row, col = view.cell
    ax.set_title(f"{title(view.layer)}\ntoken attention of map cell ({row}, {col})", fontsize=8)


DRAW: dict[str, Callable[[Axes, RoutingView], None]] = {
    "routes": draw_routes,
    "popularity": draw_popularity,
    "attention": draw_attention,
}


def _panel_size(view: RoutingView) -> tuple[float, float]:
    """Width and height in inches of one picture (title and colour bar included)."""
    h0, w0 = view.transform.orig_hw
    return PANEL_INCHES, PANEL_INCHES * h0 / w0 + TITLE_INCHES


def _figure(view: RoutingView, rows: int, cols: int, dpi: float) -> tuple[Figure, np.ndarray]:
    """A figure of rows x cols pictures with fixed margins (a layout engine would draw every figure twice)."""
    w, h = _panel_size(view)
    fig = Figure(figsize=(w * cols, h * rows), dpi=dpi)
    top = 1 - TITLE_INCHES / (h * rows)
    hspace = 1.6 * TITLE_INCHES / h  # between rows: a title's height, as a fraction of a picture's
    fig.subplots_adjust(left=MARGIN, right=1 - COLORBAR_LABELS, bottom=MARGIN, top=top, wspace=0.1, hspace=hspace)
    return fig, fig.subplots(rows, cols, squeeze=False)


def save_picture(view: RoutingView, kind: str, path: Path) -> Path:
    """Draw one picture of one layer into a PNG.

    Args:
        view (RoutingView): Layer, image and query.
        kind (str): One of KINDS.
        path (Path): PNG to write.

    Returns:
        (Path): path.
    """
    if kind not in DRAW:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    fig, axes = _figure(view, 1, 1, DPI)
    DRAW[kind](axes[0, 0], view)
    fig.savefig(path)
    return path


def save_sheet(views: list[RoutingView], path: Path) -> Path:
    """Draw every picture of every layer on one contact sheet: a row per layer, a column per kind.

    Args:
        views (list[RoutingView]): One view per layer, same image and query.
        path (Path): PNG to write.

    Returns:
        (Path): path.
    """
    fig, axes = _figure(views[0], len(views), len(KINDS), SHEET_DPI)
    for row, view in zip(axes, views):
        for ax, kind in zip(row, KINDS):
            DRAW[kind](ax, view)
    fig.savefig(path)
    return path
