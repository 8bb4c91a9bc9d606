# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The one routing-map flow: every image of a batch, training batches, stretched placement, the queries it uses."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from ultralytics import RTDETR
from ultralytics.biformer.routing import RoutingRecorder
from ultralytics.biformer.routing import maps as routing_maps_module
from ultralytics.biformer.routing.__main__ import main
from ultralytics.biformer.routing.callbacks import WRITER_ATTR
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.tasks import RTDETRDetectionModel
from ultralytics.utils import ASSETS

from .conftest import BRA_LAYERS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from model_bench import training_batch  # noqa: E402

NARROW = ROOT / "tests" / "integration" / "assets" / "rtdetr-narrow-HGBlock_Biformer.yaml"
NARROW_LAYERS = [5, 6, 7]
YOLO_CLI = Path(sys.executable).with_name("yolo")
IMGSZ = 160
BUS = ASSETS / "bus.jpg"  # 810 x 1080 (w x h): RT-DETR stretches it onto its square input


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three differently shaped images cut from bus.jpg."""
    folder = tmp_path_factory.mktemp("images")
    bus = cv2.imread(str(BUS))
    for name, image in (("a", bus), ("b", bus[:, :400]), ("c", bus[300:700])):
        cv2.imwrite(str(folder / f"{name}.jpg"), image)
    return folder


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """The views the flow draws, one list per image, in order (a spy on `maps.routing_views`)."""
    views = []
    real = routing_maps_module.routing_views

    def spy(*args, **kwargs):
        views.append(real(*args, **kwargs))
        return views[-1]

    monkeypatch.setattr(routing_maps_module, "routing_views", spy)
    return views


def _narrow() -> RTDETR:
    """The narrow BRA model, seeded weights."""
    torch.manual_seed(0)
    return RTDETR(str(NARROW))


@pytest.mark.slow
def test_yolo_predict_visualize_at_batch_2_writes_every_image(images: Path, tmp_path: Path):
    """`yolo predict ... visualize=True batch=2` on three images: every image gets its routing maps beside upstream's
    activation map (the second image of a batch crashed when drawing the first re-ran the layer)."""
    args = [f"model={NARROW}", f"source={images}", f"imgsz={IMGSZ}", "visualize=True", "save=False", "conf=0.99"]
    result = subprocess.run(
        [str(YOLO_CLI), "predict", *args, "batch=2", f"project={tmp_path}", "name=p"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    out = tmp_path / "p"
    for stem in "abc":
        assert (out / f"{stem}_cam.jpg").is_file() and (out / f"{stem}_routing.png").is_file()
        assert len(list((out / f"{stem}_routing").glob("*.png"))) == 3 * len(NARROW_LAYERS)


@pytest.mark.slow
def test_batch_of_3_draws_each_images_own_routes(images: Path, tmp_path: Path, drawn: list[list]):
    """At batch 3, image k's pictures show the routes the layers computed for image k: those of predicting it alone."""
    model = _narrow()
    model.predict(images, imgsz=IMGSZ, batch=3, visualize=True, conf=0.99, project=str(tmp_path), name="b3")
    batched = list(drawn)
    assert [v[0].n for v in batched] == [0, 1, 2] and all(len(v) == len(NARROW_LAYERS) for v in batched)
    assert len(getattr(model.predictor, WRITER_ATTR).paths) == 3 * (3 * len(NARROW_LAYERS) + 1)
    for k, stem in enumerate("abc"):
        model.predict(images / f"{stem}.jpg", imgsz=IMGSZ, visualize=True, conf=0.99, project=str(tmp_path), name=stem)
        alone = drawn[-1]
        for view, single in zip(batched[k], alone, strict=True):
            assert torch.equal(view.layer.routes[k], single.layer.routes[0])
            assert view.layer.routes.shape[0] == 3  # the batch's record, not overwritten by a batch-1 pass


def test_drawing_attention_leaves_the_record_alone():
    """A token's attention row runs the layer on one image; the recorder's batch record stays as it was, whether it
    records a model or a bare layer (then the layer is also the recorder's root)."""
    model = _narrow().model.eval()
    bra = next(m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw))
    gen = torch.Generator().manual_seed(0)
    cases = (model, torch.rand(2, 3, 96, 96, generator=gen)), (bra, torch.rand(2, bra.dim, 6, 6, generator=gen))
    for root, x in cases:
        with RoutingRecorder(root) as rec, torch.no_grad():
            root(x)
            record = list(rec.record)
            for layer in record:
                layer.attention((0, 0), n=1)
        assert len(record) >= 1 and rec.record == record and all(layer.routes.shape[0] == 2 for layer in rec.record)


def test_only_passes_of_the_model_replace_the_record():
    """A layer called on its own after a pass (or after a pass that raised) is not a pass: the record stays; after
    stop, no hook records anything."""
    model = _narrow().model.eval()
    bra = next(m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw))
    gen = torch.Generator().manual_seed(0)
    alone = torch.rand(1, bra.dim, 6, 6, generator=gen)
    with RoutingRecorder(model) as rec, torch.no_grad():
        model(torch.rand(2, 3, 96, 96, generator=gen))
        record = list(rec.record)
        bra(alone)
        assert rec.record == record
        with pytest.raises(RuntimeError):
            model(torch.rand(2, 5, 96, 96, generator=gen))  # 5 channels: the first convolution raises
        assert rec.record == []  # that pass began, and recorded nothing before it raised
        bra(alone)
        assert rec.record == []  # and it ended: a lone layer call after it is no part of it
        model(torch.rand(2, 3, 96, 96, generator=gen))
        record = list(rec.record)
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64, generator=gen))
    assert rec.record == record and len(record) == len(NARROW_LAYERS) and rec.input_hw == (96, 96)


@pytest.mark.parametrize("yaml", ["rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml"])
def test_recorder_follows_a_training_batch_dict(yaml: str):
    """In training mode the model takes a batch dict (its loss); the recorder reads the image size from `img`."""
    torch.manual_seed(0)
    model = RTDETRDetectionModel(yaml, nc=1, verbose=False).train()
    model.nc = 1  # set by the trainer in real training; the loss reads it
    batch = training_batch(2, 64, torch.device("cpu"))
    with RoutingRecorder(model) as rec:
        loss, _ = model(batch)
    assert torch.isfinite(loss).all() and rec.input_hw == (64, 64)
    assert [r.layer for r in rec.record] == BRA_LAYERS[yaml]
    assert all(r.routes.shape[0] == 2 for r in rec.record)


def test_stretched_input_places_regions_by_axis(tmp_path: Path, drawn: list[list]):
    """RT-DETR stretches bus.jpg (810 x 1080) onto 160 x 160: the flow maps back with a gain per axis, no padding."""
    model = _narrow()
    model.predict(BUS, imgsz=IMGSZ, visualize=True, conf=0.99, project=str(tmp_path), name="p")
    (views,) = drawn
    for view in views:
        assert view.transform.gain == pytest.approx((IMGSZ / 1080, IMGSZ / 810)) and view.transform.pad == (0, 0)
        assert view.boxes[-1, 2:].tolist() == pytest.approx([810, 1080])  # the last region ends at the corner


def test_default_query_is_the_centre_of_the_top_detection(tmp_path: Path, drawn: list[list]):
    """With detections (conf=0), each image is queried at the centre of its highest-scoring box."""
    model = _narrow()
    (result,) = model.predict(BUS, imgsz=IMGSZ, visualize=True, conf=0.0, project=str(tmp_path), name="p")
    boxes = result.boxes
    assert len(boxes) > 10
    x0, y0, x1, y1 = boxes.xyxy[boxes.conf.argmax()].tolist()
    (views,) = drawn
    assert all(view.query_xy == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2)) for view in views)


def test_module_command_queries_the_given_pixel(tmp_path: Path, drawn: list[list]):
    """`--query 800 1070` queries that original pixel in every layer: on each map, the cell holding it."""
    torch.manual_seed(0)
    main([str(NARROW), str(BUS), "--imgsz", str(IMGSZ), "--query", "800", "1070", "--save-dir", str(tmp_path)])
    (views,) = drawn
    assert [v.layer.layer for v in views] == NARROW_LAYERS
    for view in views:
        g = view.layer.grid
        expected = (math.floor(1070 / 1080 * g.h), math.floor(800 / 810 * g.w))  # stretched: fraction of each side
        assert view.query_xy == (800.0, 1070.0) and view.cell == expected
