# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Region and token rectangles map back to the pixels they came from: letterbox, stretch, padded partial regions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ultralytics.biformer.routing.geometry import ImageTransform, query_cell, region_boxes, region_edges
from ultralytics.data.augment import LetterBox
from ultralytics.nn.AddModules.regions import bra_grid, cell_region

PAD = 114  # LetterBox's padding value


def coordinate_image(h0: int, w0: int) -> np.ndarray:
    """A float image whose pixels hold their own x, y and a marker that padding cannot have."""
    y, x = np.mgrid[:h0, :w0].astype(np.float32)
    return np.stack((x, y, np.full_like(x, -1.0)), -1)


@pytest.mark.parametrize(
    "orig_hw, new_shape, stretch",
    [
        ((100, 200), 160, False),
        ((96, 200), 160, False),  # 83 px of padding: the odd pixel goes to the bottom
        ((333, 171), (224, 160), False),
        ((1080, 810), 320, False),
        ((100, 200), 160, True),
    ],
)
def test_transform_inverts_letterbox(orig_hw: tuple[int, int], new_shape, stretch: bool):
    """Every input pixel that LetterBox filled from the original maps back onto the original pixel it came from."""
    lb = LetterBox(new_shape, auto=False, scale_fill=stretch, interpolation=cv2.INTER_NEAREST, padding_value=PAD)
    out = lb(image=coordinate_image(*orig_hw))
    t = ImageTransform.from_shapes(orig_hw, out.shape[:2], stretch=stretch)
    real = out[..., 2] == -1
    rows, cols = np.nonzero(real)
    # the resized image occupies exactly the rectangle the transform says, the rest is padding
    (top, left), (gy, gx) = t.pad, t.gain
    assert (rows.min(), cols.min()) == (top, left)
    assert (rows.max() + 1, cols.max() + 1) == (top + round(orig_hw[0] * gy), left + round(orig_hw[1] * gx))
    assert t.to_original(np.array([left, top, cols.max() + 1, rows.max() + 1])).tolist() == [0, 0, orig_hw[1], orig_hw[0]]
    # each input pixel centre maps into the original pixel whose value it holds (nearest-neighbour resize)
    centres = t.to_original(np.stack((cols + 0.5, rows + 0.5, cols + 0.5, rows + 0.5), -1))[:, :2]
    src = out[rows, cols, :2]
    assert np.abs(centres - (src + 0.5)).max() <= 0.5 / min(gx, gy) + 0.5
    # and to_input is the inverse of to_original inside the image
    xy = np.array([[0.0, 0.0], [orig_hw[1] / 3, orig_hw[0] / 2]])
    back = t.to_original(np.concatenate((t.to_input(xy), t.to_input(xy)), -1))[:, :2]
    np.testing.assert_allclose(back, xy, atol=1e-9)


def test_partial_regions_on_stretched_input():
    """A 20x15 map (stride 16 of a 320x240 input) in regions of 2x2: the last column of regions is 1 cell wide."""
    grid = bra_grid(20, 15, 7)
    assert tuple(grid) == (20, 15, 2, 2, 10, 8)
    boxes = region_boxes(grid, (320, 240))
    assert boxes.shape == (80, 4)
    assert boxes[7].tolist() == [224, 0, 240, 32]  # row 0, column 7: map columns [14, 15)
    assert boxes[79].tolist() == [224, 288, 240, 320]  # last region: map rows [18, 20), column 14
    # the regions tile the real map exactly once
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()
    assert area == 320 * 240
    # RT-DETR stretches a 480x300 (h, w) image to 320x240: gains 2/3 (y) and 0.8 (x)
    t = ImageTransform.from_shapes((480, 300), (320, 240), stretch=True)
    np.testing.assert_allclose(t.to_original(boxes[79]), [280, 432, 300, 480])
    np.testing.assert_allclose(t.to_original(boxes[0]), [0, 0, 40, 48])


def test_partial_regions_on_letterboxed_non_square_image():
    """A 100x200 image letterboxed to 160x160 (40 px bands top and bottom), a 10x10 map in regions of 3x3."""
    t = ImageTransform.from_shapes((100, 200), (160, 160), stretch=False)
    assert t.pad == (40.0, 0.0) and t.gain == (0.8, 0.8)
    grid = bra_grid(10, 10, 3)
    assert tuple(grid) == (10, 10, 3, 3, 4, 4)  # last row/column of regions: 1 cell
    xs, ys = region_edges(grid, (160, 160))
    assert ys.tolist() == [0, 48, 96, 144, 160]
    inputs = region_boxes(grid, (160, 160))
    assert inputs[15].tolist() == [144, 144, 160, 160]  # the partial corner region: one 16x16 cell
    assert ((inputs[:, 2] - inputs[:, 0]) * (inputs[:, 3] - inputs[:, 1])).sum() == 160 * 160
    boxes = t.to_original(region_boxes(grid, (160, 160)))
    np.testing.assert_allclose(boxes[0], [0, 0, 60, 10])  # mostly padding: clipped to the image top
    np.testing.assert_allclose(boxes[5], [60, 10, 120, 70])  # row 1, column 1: input y [48, 96) -> (48-40)/0.8
    np.testing.assert_allclose(boxes[15], [180, 100, 200, 100])  # last region: wholly padding, zero height


def test_query_cell_and_token():
    """A query pixel lands in the right map cell, region and token (row-major regions and tokens)."""
    grid = bra_grid(5, 7, 2)
    assert tuple(grid) == (5, 7, 2, 3, 3, 3)
    t = ImageTransform.from_shapes((50, 140), (80, 112), stretch=True)  # stride 16: a 5x7 map
    xy = t.to_input(np.array([139.0, 49.0]))  # bottom-right original pixel
    assert query_cell(grid, (80, 112), tuple(xy)) == (4, 6)
    assert cell_region(grid, (4, 6)) == (8, 0)  # region row 2, column 2; first token of the partial region
    assert cell_region(grid, (3, 4)) == (4, 4)  # region (1, 1), token (1, 1) -> 1 * 3 + 1
    assert query_cell(grid, (80, 112), (-5.0, 500.0)) == (4, 0)  # clamped to the map
    wide = bra_grid(5, 10, 2)
    assert (wide.nh, wide.nw) == (3, 2)
    assert cell_region(wide, (4, 9)) == (5, 4)  # region row 2, column 1 of 2; token (0, 4) of a 2x5 region
