# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`yolo predict ... visualize=True`: routing maps of every BRA layer, saved beside upstream's activation maps.

The predictor registers these callbacks (patch 0006); they act only when `visualize` is on and the model has BRA
layers, so every other prediction runs exactly as upstream's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .geometry import ImageTransform
from .record import RoutingRecorder, bra_layers

if TYPE_CHECKING:
    from ultralytics.engine.predictor import BasePredictor

RECORDER_ATTR = "biformer_routing_recorder"  # the predictor attribute holding the active recorder


def on_predict_start(predictor: BasePredictor) -> None:
    """Start recording when visualize is on and the model has BRA layers (after predict set the model up)."""
    on_predict_end(predictor)
    if predictor.args.visualize and bra_layers(predictor.model):
        setattr(predictor, RECORDER_ATTR, RoutingRecorder(predictor.model).start())


def on_predict_postprocess_end(predictor: BasePredictor) -> None:
    """Write the routing maps of every image of the batch, queried at its highest-scoring detection."""
    recorder = getattr(predictor, RECORDER_ATTR, None)
    if recorder is None or not recorder.record:
        return
    from .maps import default_query, save_routing_maps  # matplotlib is imported only when pictures are drawn

    stretch = getattr(predictor, "scale_fill", False)
    for n, result in enumerate(predictor.results):
        transform = ImageTransform.from_shapes(result.orig_shape, recorder.input_hw, stretch=stretch)
        xy = default_query(result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy(), result.orig_shape)
        stem = Path(predictor.batch[0][n]).stem
        save_routing_maps(recorder.record, result.orig_img, transform, predictor.save_dir, stem, xy, n)


def on_predict_end(predictor: BasePredictor) -> None:
    """Stop recording: remove the hooks."""
    recorder = getattr(predictor, RECORDER_ATTR, None)
    if recorder is not None:
        recorder.stop()
        setattr(predictor, RECORDER_ATTR, None)


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
