# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`yolo predict ... visualize=True`: routing maps of every BRA layer, saved beside upstream's activation maps.

The predictor registers these callbacks (patch 0006); they act only when `visualize` is on and the model has BRA
layers, so every other prediction runs exactly as upstream's. The flow itself is `RoutingMapWriter`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .writer import RoutingMapWriter

if TYPE_CHECKING:
    from ultralytics.engine.predictor import BasePredictor

WRITER_ATTR = "biformer_routing_writer"  # the predictor attribute holding its writer


def _writer(predictor: BasePredictor) -> RoutingMapWriter:
    """The predictor's writer (visualize=True decides), created on first use."""
    if getattr(predictor, WRITER_ATTR, None) is None:
        setattr(predictor, WRITER_ATTR, RoutingMapWriter())
    return getattr(predictor, WRITER_ATTR)


def on_predict_start(predictor: BasePredictor) -> None:
    """Start recording when visualize is on and the model has BRA layers (after predict set the model up)."""
    _writer(predictor).start(predictor)


def on_predict_postprocess_end(predictor: BasePredictor) -> None:
    """Write the routing maps of every image of the batch, queried at its highest-scoring detection."""
    _writer(predictor).write(predictor)


def on_predict_end(predictor: BasePredictor) -> None:
    """Stop recording: remove the hooks."""
    _writer(predictor).stop()


callbacks = {
    "on_predict_start": on_predict_start,
    "on_predict_postprocess_end": on_predict_postprocess_end,
    "on_predict_end": on_predict_end,
}


def add_routing_callbacks(predictor: BasePredictor) -> None:
    """Register the routing-map callbacks on a predictor, once.

    Args:
        predictor (BasePredictor): Any Ultralytics predictor.
    """
    for event, func in callbacks.items():
        if func not in predictor.callbacks[event]:
            predictor.callbacks[event].append(func)
