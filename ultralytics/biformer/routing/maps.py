# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Write the routing pictures of one recorded image: a PNG per BRA layer and kind, and a contact sheet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ultralytics.utils import LOGGER
from ultralytics.utils.files import increment_path

from .draw import KINDS, RoutingView, save_picture, save_sheet
from .geometry import ImageTransform
from .record import LayerRouting

DISPLAY_MAX_SIDE = 640  # the image is drawn at most this large: the pictures are about 500 px wide


def default_query(boxes: np.ndarray, scores: np.ndarray, orig_hw: tuple[int, int]) -> tuple[float, float]:
    """The centre of the highest-scoring detection, or the image centre when there is none.

    Args:
        boxes (np.ndarray): Detections of shape (D, 4), x1 y1 x2 y2 in original pixels.
        scores (np.ndarray): Their scores of shape (D,).
        orig_hw (tuple[int, int]): Original image size (height, width).

    Returns:
        (tuple[float, float]): Query position x y in original pixels.
    """
    if len(boxes) == 0:
        LOGGER.info("Routing maps: no detection, querying the image centre.")
        return orig_hw[1] / 2, orig_hw[0] / 2
    x0, y0, x1, y1 = np.asarray(boxes, dtype=np.float64)[int(np.argmax(scores))]
    return (x0 + x1) / 2, (y0 + y1) / 2


def routing_views(
    record: list[LayerRouting], image: np.ndarray, transform: ImageTransform, query_xy: tuple[float, float], n: int = 0
) -> list[RoutingView]:
    """One view per recorded layer of image n: what its pictures draw.

    Args:
        record (list[LayerRouting]): Layers of one recorded pass (`RoutingRecorder.record`).
        image (np.ndarray): Original image, BGR uint8 of shape (H0, W0, 3) as Ultralytics loads it.
        transform (ImageTransform): How the image became the network input.
        query_xy (tuple[float, float]): Query position x y in original pixels.
        n (int): Image of the recorded batch.

    Returns:
        (list[RoutingView]): The views, in the record's order; the image downscaled for display and RGB.
    """
    if not record:
        raise ValueError("record is empty: run the model with a RoutingRecorder active before saving routing maps")
    scale = min(DISPLAY_MAX_SIDE / max(image.shape[:2]), 1.0)
    shown = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    rgb = np.ascontiguousarray(shown[..., ::-1])
    return [RoutingView(layer, rgb, transform, tuple(map(float, query_xy)), n) for layer in record]


def write_views(views: list[RoutingView], save_dir: Path, stem: str) -> list[Path]:
    """Write the routing map, routing popularity and token attention of every view, and a contact sheet.

    Files: `save_dir/{stem}_routing/bra{index}_layer{layer}_{kind}.png` and `save_dir/{stem}_routing.png` (the folder
    and sheet take a number suffix when they exist already, e.g. for the frames of a video).

    Args:
        views (list[RoutingView]): The views of one image (`routing_views`).
        save_dir (Path): Folder to write into (created).
        stem (str): Name stem, usually the source file's.

    Returns:
        (list[Path]): The PNGs written, the contact sheet last.
    """
    folder = increment_path(Path(save_dir) / f"{stem}_routing", mkdir=True)
    paths = [
        save_picture(view, kind, folder / f"bra{view.layer.index}_layer{view.layer.layer}_{kind}.png")
        for view in views
        for kind in KINDS
    ]
    paths.append(save_sheet(views, folder.with_name(f"{folder.name}.png")))
    LOGGER.info(f"Saving {folder}... (BiFormer routing maps of {len(views)} BRA layers, sheet {paths[-1].name})")
    return paths


def save_routing_maps(
    record: list[LayerRouting],
    image: np.ndarray,
    transform: ImageTransform,
    save_dir: Path,
    stem: str,
    query_xy: tuple[float, float],
    n: int = 0,
) -> list[Path]:
    """Write the routing pictures of image n of a record: `write_views` of its `routing_views`.

    Args:
        record (list[LayerRouting]): Layers of one recorded pass (`RoutingRecorder.record`).
        image (np.ndarray): Original image, BGR uint8 of shape (H0, W0, 3) as Ultralytics loads it.
        transform (ImageTransform): How the image became the network input.
        save_dir (Path): Folder to write into (created).
        stem (str): Name stem, usually the source file's.
        query_xy (tuple[float, float]): Query position x y in original pixels.
        n (int): Image of the recorded batch.

    Returns:
        (list[Path]): The PNGs written, the contact sheet last.
    """
    return write_views(routing_views(record, image, transform, query_xy, n), save_dir, stem)
