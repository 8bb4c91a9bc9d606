# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing maps from Python: predict with a recorder active and write the pictures of every image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultralytics.engine.model import Model

from .writer import RoutingMapWriter


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
        source (Any): Anything `model.predict` accepts, at any batch size.
        query (tuple[float, float], optional): Query position x y in original-image pixels; defaults to the centre of
            each image's highest-scoring detection (the image centre when there is none).
        save_dir (str | Path, optional): Folder for the pictures; defaults to the predictor's save_dir.
        **predict_args (Any): Further `model.predict` arguments (imgsz, conf, device, batch, ...).

    Returns:
        (list[Path]): The PNGs written: per image, a PNG per layer and kind, then the contact sheet.

    Examples:
        >>> from ultralytics import RTDETR
        >>> from ultralytics.utils import ASSETS
        >>> paths = routing_maps(RTDETR("rtdetr-l-Biformer.yaml"), ASSETS / "bus.jpg", imgsz=160, save_dir="runs/routing")
        >>> [p.name for p in paths][-1]
        'bus_routing.png'
    """
    writer = RoutingMapWriter(query, save_dir, always=True)
    events = {"on_predict_start": writer.start, "on_predict_postprocess_end": writer.write}
    events["on_predict_end"] = writer.stop
    for event, func in events.items():
        model.add_callback(event, func)
    try:
        for _ in model.predict(source, stream=True, **{"verbose": False, **predict_args}):
            pass
    finally:
        for event, func in events.items():
            model.callbacks[event].remove(func)
        writer.stop()
    return writer.paths
