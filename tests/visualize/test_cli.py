# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`yolo predict ... visualize=True` writes routing maps for every BRA layer; the pictures are drawn, not blank."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ultralytics import YOLO
from ultralytics.biformer.routing.__main__ import main
from ultralytics.biformer.routing.callbacks import WRITER_ATTR, on_predict_start
from ultralytics.biformer.routing.draw import KINDS
from ultralytics.biformer.routing.maps import default_query
from ultralytics.utils import ASSETS

from .conftest import BRA_LAYERS, VARIANTS

BUS = ASSETS / "bus.jpg"
YOLO_CLI = Path(sys.executable).with_name("yolo")
MIN_STD = 20  # grey-level spread of a drawn picture (a blank one has 0)
MIN_COLOURS = 500
# conf=0.99: random weights detect nothing, so upstream's LayerCAM explains one prediction (not 16) and the routing
# query falls back to the image centre; test_default_query covers the detection-centred query
CLI_ARGS = ("imgsz=160", "visualize=True", "save=False", "conf=0.99")


def expected_names(variant: str) -> set[str]:
    """The PNG names of one image's routing folder."""
    return {f"bra{i}_layer{layer}_{kind}.png" for i, layer in enumerate(BRA_LAYERS[variant]) for kind in KINDS}


def assert_drawn(path: Path) -> np.ndarray:
    """The PNG decodes, has a drawn spread of grey levels and many colours; returns it (BGR)."""
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 200, path
    assert image.std() > MIN_STD, (path, image.std())
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > MIN_COLOURS, path
    return image


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_yolo_predict_visualize_writes_routing_maps(variant: str, tmp_path: Path):
    """Both YAMLs: one PNG per BRA layer and kind plus a contact sheet, beside upstream's activation map."""
    result = subprocess.run(
        [str(YOLO_CLI), "predict", f"model={variant}", f"source={BUS}", *CLI_ARGS, f"project={tmp_path}", "name=predict"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    out = tmp_path / "predict"
    assert (out / "bus_cam.jpg").is_file()  # upstream's activation map still written
    assert {p.name for p in (out / "bus_routing").iterdir()} == expected_names(variant)
    assert f"BiFormer routing maps of {len(BRA_LAYERS[variant])} BRA layers" in output
    sheet = assert_drawn(out / "bus_routing.png")
    routes = assert_drawn(out / "bus_routing" / "bra0_layer{}_routes.png".format(BRA_LAYERS[variant][0]))
    attention = assert_drawn(out / "bus_routing" / "bra0_layer{}_attention.png".format(BRA_LAYERS[variant][0]))
    assert routes.shape == attention.shape and np.abs(routes.astype(int) - attention).mean() > 5  # different pictures
    assert sheet.shape[0] > routes.shape[0] * len(BRA_LAYERS[variant]) * 0.4  # a row per layer


def test_module_command_with_pixel_query(tmp_path: Path):
    """`python -m ultralytics.biformer.routing MODEL SOURCE --query X Y` writes the maps for that query."""
    torch.manual_seed(0)
    narrow = Path(__file__).parents[1] / "integration" / "assets" / "rtdetr-narrow-HGBlock_Biformer.yaml"
    args = ["--imgsz", "160", "--query", "800", "1070", "--save-dir", str(tmp_path)]
    paths = main([str(narrow), str(BUS), *args])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        *(f"bus_routing/bra{i}_layer{layer}_{kind}.png" for i, layer in enumerate([5, 6, 7]) for kind in KINDS),
        "bus_routing.png",
    ]
    assert_drawn(paths[0])


def test_models_without_bra_layers_predict_as_upstream(tmp_path: Path):
    """visualize=True on a model without BRA layers writes upstream's activation map and no routing maps."""
    model = YOLO("yolo26n.yaml")
    model.predict(BUS, imgsz=96, visualize=True, project=str(tmp_path), name="p", verbose=False)
    files = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*"))
    assert files == ["bus_cam.jpg"]
    assert on_predict_start in model.predictor.callbacks["on_predict_start"]  # registered, but idle without BRA
    assert getattr(model.predictor, WRITER_ATTR).paths == []  # its writer ran and drew nothing


def test_default_query():
    """The default query is the centre of the highest-scoring box, or the image centre without boxes."""
    boxes = np.array([[0, 0, 10, 10], [100, 40, 300, 80], [5, 5, 7, 9]], dtype=np.float32)
    assert default_query(boxes, np.array([0.3, 0.9, 0.5]), (480, 640)) == (200, 60)
    assert default_query(np.zeros((0, 4)), np.zeros(0), (480, 640)) == (320, 240)
