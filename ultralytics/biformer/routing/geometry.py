# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Where BRA regions and tokens lie in pixels: on the network input, and on the original image (letterbox undone).

Only the pixel mapping lives here. The region layout in map cells (which cells form a region, a cell's region and
token) is `ultralytics.nn.AddModules.regions`', the module's own; this file scales it to pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ultralytics.nn.AddModules.regions import RegionGrid, region_cells, region_grid

LETTERBOX_ROUND_BIAS = 0.1  # LetterBox puts the odd padding pixel bottom/right: round(pad / 2 - 0.1) on top/left


@dataclass(frozen=True)
class ImageTransform:
    """How a predictor turned the original image into the network input: scale each axis, then pad top/left.

    Attributes:
        orig_hw (tuple[int, int]): Original image size (height, width).
        input_hw (tuple[int, int]): Network input size (height, width).
        gain (tuple[float, float]): Input pixels per original pixel (y, x).
        pad (tuple[float, float]): Padding added above and left of the resized image (top, left), in input pixels.

    Examples:
        >>> t = ImageTransform.from_shapes((1080, 810), (640, 640), stretch=False)
        >>> t.pad, t.to_original(np.array([[80.0, 0.0, 560.0, 640.0]])).round().tolist()
        ((0.0, 80.0), [[0.0, 0.0, 810.0, 1080.0]])
    """

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    gain: tuple[float, float]
    pad: tuple[float, float]

    @classmethod
    def from_shapes(cls, orig_hw: tuple[int, int], input_hw: tuple[int, int], stretch: bool) -> ImageTransform:
        """Infer the transform from the two sizes, as Ultralytics' LetterBox resizes and pads.

        Args:
            orig_hw (tuple[int, int]): Original image size (height, width).
            input_hw (tuple[int, int]): Network input size (height, width).
            stretch (bool): The image was stretched to the input size (LetterBox `scale_fill`, as RT-DETR predicts);
                otherwise it was resized keeping its aspect ratio and padded equally on both sides (centred letterbox,
                including `rect` inputs trimmed to a stride multiple).

        Returns:
            (ImageTransform): The transform.
        """
        (h0, w0), (h, w) = orig_hw, input_hw
        if stretch:
            return cls((h0, w0), (h, w), (h / h0, w / w0), (0.0, 0.0))
        r = min(h / h0, w / w0)
        new_h, new_w = max(round(h0 * r), 1), max(round(w0 * r), 1)
        top = round((h - new_h) / 2 - LETTERBOX_ROUND_BIAS)
        left = round((w - new_w) / 2 - LETTERBOX_ROUND_BIAS)
        return cls((h0, w0), (h, w), (new_h / h0, new_w / w0), (float(top), float(left)))

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from input pixels to original pixels, clipped to the original image.

        Args:
            boxes (np.ndarray): Boxes of shape (..., 4), x1 y1 x2 y2 in input pixels.

        Returns:
            (np.ndarray): Boxes of the same shape in original pixels; a box wholly in the padding has zero width or height.
        """
        (gy, gx), (top, left), (h0, w0) = self.gain, self.pad, self.orig_hw
        out = np.asarray(boxes, dtype=np.float64).copy()
        out[..., [0, 2]] = ((out[..., [0, 2]] - left) / gx).clip(0, w0)
        out[..., [1, 3]] = ((out[..., [1, 3]] - top) / gy).clip(0, h0)
        return out

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Map points from original pixels to input pixels.

        Args:
            xy (np.ndarray): Points of shape (..., 2), x y in original pixels.

        Returns:
            (np.ndarray): Points of the same shape in input pixels.
        """
        (gy, gx), (top, left) = self.gain, self.pad
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack((xy[..., 0] * gx + left, xy[..., 1] * gy + top), -1)


def cell_size(grid: RegionGrid, input_hw: tuple[int, int]) -> tuple[float, float]:
    """Input pixels per map cell (y, x): the layer's stride, exact whenever the input is a multiple of it.

    Args:
        grid (RegionGrid): Region grid of the layer's (h, w) map.
        input_hw (tuple[int, int]): Network input size (height, width).

    Returns:
        (tuple[float, float]): Cell height and width in input pixels.
    """
    return input_hw[0] / grid.h, input_hw[1] / grid.w


def region_boxes(grid: RegionGrid, input_hw: tuple[int, int]) -> np.ndarray:
    """Input-pixel boxes of every region, row-major; a partial last row/column covers only the real map cells.

    Args:
        grid (RegionGrid): Region grid of the layer's (h, w) map.
        input_hw (tuple[int, int]): Network input size (height, width).

    Returns:
        (np.ndarray): Boxes of shape (nh*nw, 4), x1 y1 x2 y2 in input pixels.
    """
    sy, sx = cell_size(grid, input_hw)
    row0, col0, row1, col1 = region_cells(grid).T
    return np.stack((col0 * sx, row0 * sy, col1 * sx, row1 * sy), -1).astype(np.float64)


def cell_edges(grid: RegionGrid, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel edges of the map cells (tokens): the region edges of a grid of 1x1-token regions.

    Returns:
        (tuple[np.ndarray, np.ndarray]): x edges of shape (w + 1,) and y edges of shape (h + 1,).
    """
    return region_edges(region_grid(grid.h, grid.w, 1, 1), input_hw)


def region_edges(grid: RegionGrid, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel edges of the regions, the last ones at the map's real border.

    Args:
        grid (RegionGrid): Region grid of the layer's (h, w) map.
        input_hw (tuple[int, int]): Network input size (height, width).

    Returns:
        (tuple[np.ndarray, np.ndarray]): x edges of shape (nw + 1,) and y edges of shape (nh + 1,).
    """
    sy, sx = cell_size(grid, input_hw)
    cells = region_cells(grid)  # the first row of regions gives the column edges, the first column the row edges
    xs = np.append(cells[: grid.nw, 1], cells[grid.nw - 1, 3]) * sx
    ys = np.append(cells[:: grid.nw, 0], cells[-1, 2]) * sy
    return xs.astype(np.float64), ys.astype(np.float64)


def query_cell(grid: RegionGrid, input_hw: tuple[int, int], xy: tuple[float, float]) -> tuple[int, int]:
    """The map cell (row, col) holding an input-pixel point, clamped to the map.

    Args:
        grid (RegionGrid): Region grid of the layer's (h, w) map.
        input_hw (tuple[int, int]): Network input size (height, width).
        xy (tuple[float, float]): Point x y in input pixels.

    Returns:
        (tuple[int, int]): Row and column of the cell.
    """
    sy, sx = cell_size(grid, input_hw)
    row = min(max(math.floor(xy[1] / sy), 0), grid.h - 1)
    col = min(max(math.floor(xy[0] / sx), 0), grid.w - 1)
    return row, col
