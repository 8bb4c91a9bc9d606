# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The routing-map flow: record a predictor's model while it predicts and write every result's pictures.

Matplotlib is imported only when pictures are drawn, so that every predictor can register the callbacks. One flow
for both entry points: `yolo predict ... visualize=True` (the predictor's callbacks, `callbacks.py`) and
`routing_maps` / `python -m ultralytics.biformer.routing` (`predict.py`), which differ only in the query and the
output folder they give.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ultralytics.utils import LOGGER

from .geometry import ImageTransform
from .record import RoutingRecorder, bra_layers

if TYPE_CHECKING:
    from ultralytics.engine.predictor import BasePredictor

PREFIX = "Routing maps: "


class RoutingMapWriter:
    """Predictor callbacks that write the routing pictures of every image a predictor sees.

    `start` (on_predict_start) hooks the predictor's model when it has BRA layers and routing maps are wanted,
    `write` (on_predict_postprocess_end) writes the pictures of each image of the batch, `stop` (on_predict_end)
    removes the hooks.

    Attributes:
        query (tuple[float, float] | None): Query position x y in original pixels for every image; None: the centre
            of each image's highest-scoring detection (the image centre without one).
        save_dir (Path | None): Output folder; None: the predictor's save_dir.
        always (bool): Write for every prediction; False: only when the predictor runs with visualize=True.
        recorder (RoutingRecorder | None): The active recorder, between start and stop.
        paths (list[Path]): Every PNG written since the last start, per image its pictures then its contact sheet.
    """

    def __init__(
        self, query: tuple[float, float] | None = None, save_dir: str | Path | None = None, always: bool = False
    ):
        """Set the query and the output folder.

        Args:
            query (tuple[float, float], optional): Query position x y in original pixels.
            save_dir (str | Path, optional): Output folder.
            always (bool): Write for every prediction, not only with visualize=True.
        """
        self.query = query
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.always = always
        self.recorder: RoutingRecorder | None = None
        self.paths: list[Path] = []
        self._warned = False

    def start(self, predictor: BasePredictor) -> None:
        """Start recording the predictor's model (set up by now) if it has BRA layers and maps are wanted."""
        self.stop()
        self.paths, self._warned = [], False
        if (self.always or predictor.args.visualize) and bra_layers(predictor.model):
            self.recorder = RoutingRecorder(predictor.model).start()

    def write(self, predictor: BasePredictor) -> None:
        """Write the routing pictures of every image of the batch just predicted."""
        if self.recorder is None:
            return
        if not self.recorder.record:
            if not self._warned:
                LOGGER.warning(f"{PREFIX}no BRA layer recorded its routing (compiled code runs no routing hooks): none")
                self._warned = True
            return
        from .maps import default_query, routing_views, write_views  # matplotlib only when pictures are drawn

        save_dir = self.save_dir or Path(predictor.save_dir)
        self.views = []
        for n, result in enumerate(predictor.results):
            transform = ImageTransform.from_shapes(result.orig_shape, self.recorder.input_hw, predictor.scale_fill)
            boxes = result.boxes
            xy = self.query or default_query(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), result.orig_shape)
            views = routing_views(self.recorder.record, result.orig_img, transform, xy, n)
            self.paths += write_views(views, save_dir, Path(result.path).stem)

    def stop(self, predictor: BasePredictor | None = None) -> None:
        """Stop recording: remove the hooks."""
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder = None
