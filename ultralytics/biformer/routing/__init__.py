# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing maps: what BiFormer's Bi-Level Routing Attention routes, recorded from any model and drawn on the image.

`RoutingRecorder` records every BRA layer's region grid, affinities, routed regions and (on request) a token's
attention row; `RoutingMapWriter` is the one flow that draws them for each image a predictor sees: `routing_maps` and
`python -m ultralytics.biformer.routing` run it with a query of their choice, `yolo predict ... visualize=True` beside
upstream's activation maps. Names load on
first use, so that the predictor can register the callbacks without importing matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "ImageTransform": "geometry",
    "LayerRouting": "record",
    "RoutingMapWriter": "writer",
    "RoutingRecorder": "record",
    "TokenAttention": "record",
    "default_query": "maps",
    "routing_maps": "predict",
    "save_routing_maps": "maps",
}

__all__ = tuple(_SOURCES)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
