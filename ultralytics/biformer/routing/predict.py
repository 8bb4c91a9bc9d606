# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing maps from Python: predict with a recorder active and write the pictures of every image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultralytics.engine.model import Model
from ultralytics.engine.predictor import BasePredictor

from .geometry import ImageTransform
from .maps import default_query, save_routing_maps
from .record import RoutingRecorder


def routing_maps(
    model: Model,
    source: Any,
    query: tuple[float, float] | None = None,
    save_dir: str | Path | None = None,
    **predict_args: Any,
) -> list[Path]:
    """Predict on a source and write the routing pictures of every BRA layer for each image.

    Args:
        model (Model): An Ultralytics model with BRA layers, e.g. `RTDETR("best.pt")` or `RTDETR("rtdetr-l-Biformer.yaml")`.
        source (Any): Anything `model.predict` accepts; images are predicted one at a time.
        query (tuple[float, float], optional): Query position x y in original-image pixels; defaults to the centre of
            each image's highest-scoring detection (the image centre when there is none).
        save_dir (str | Path, optional): Folder for the pictures; defaults to the predictor's save_dir.
        **predict_args (Any): Further `model.predict` arguments (imgsz, conf, device, ...).

    Returns:
        (list[Path]): The PNGs written: per image, a PNG per layer and kind, then the contact sheet.

    Examples:
        >>> from ultralytics import RTDETR
        >>> from ultralytics.utils import ASSETS
        >>> paths = routing_maps(RTDETR("rtdetr-l-Biformer.yaml"), ASSETS / "bus.jpg", imgsz=160, save_dir="runs/routing")
        >>> [p.name for p in paths][-1]
        'bus_routing.png'
    """
    recorders = []

    def start(predictor: BasePredictor) -> None:
        """Hook the predictor's copy of the model once it is set up."""
        recorders.append(RoutingRecorder(predictor.model).start())

    model.add_callback("on_predict_start", start)
    paths = []
    try:
        for result in model.predict(source, stream=True, **{"verbose": False, **predict_args, "batch": 1}):
            recorder = recorders[-1]
            stretch = getattr(model.predictor, "scale_fill", False)
            transform = ImageTransform.from_shapes(result.orig_shape, recorder.input_hw, stretch=stretch)
            boxes = result.boxes
            xy = query or default_query(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), result.orig_shape)
            out = Path(save_dir) if save_dir is not None else model.predictor.save_dir
            paths += save_routing_maps(recorder.record, result.orig_img, transform, out, Path(result.path).stem, xy)
    finally:
        model.callbacks["on_predict_start"].remove(start)
        for recorder in recorders:
            recorder.stop()
    return paths
