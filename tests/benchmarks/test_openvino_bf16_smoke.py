# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Smoke test of benchmarks/openvino_bf16.py on the narrow BiFormer model (random weights) at 64 px, one image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import openvino_bf16  # noqa: E402

from ultralytics import RTDETR  # noqa: E402

NARROW_BRA = ROOT / "tests/integration/assets/rtdetr-narrow-HGBlock_Biformer.yaml"
IMGSZ = 64
F32_TOL = 1e-4  # OpenVINO pinned to f32 against fp32 PyTorch, relative score error
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The narrow model with seeded random weights, saved as a checkpoint."""
    path = tmp_path_factory.mktemp("openvino-bf16") / "narrow.pt"
    RTDETR(str(NARROW_BRA)).save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one of Ultralytics' sample images."""
    from ultralytics.utils import ASSETS

    folder = tmp_path_factory.mktemp("images")
    (folder / "bus.jpg").write_bytes((ASSETS / "bus.jpg").read_bytes())
    return folder


@pytest.fixture(scope="module")
def measured(checkpoint: Path, images: Path) -> dict:
    """`measure` on the narrow checkpoint."""
    return openvino_bf16.measure(checkpoint, openvino_bf16.load_images(images), IMGSZ)


def test_both_exports_compute_the_model(measured: dict):
    """The marked and the unmarked export both match PyTorch at f32 and read the same number of routes."""
    assert measured["bra_layers"] == 3
    marked, unmarked = measured["marked"], measured["unmarked"]
    for export in (marked, unmarked):
        assert export["f32_score_error_max"] <= F32_TOL, export
        assert 0 <= export["routes_changed"] <= export["routes"]
    assert marked["routes"] == unmarked["routes"] > 0


def test_default_precision_is_what_it_reports(measured: dict):
    """Where OpenVINO's default is f32, the "bf16" run is that f32 run: same errors, no changed route."""
    import openvino

    if openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name() == "bf16":
        assert measured["marked"]["bf16_score_error_max"] > measured["marked"]["f32_score_error_max"]
    else:
        for export in (measured["marked"], measured["unmarked"]):
            assert export["bf16_score_error_max"] == export["f32_score_error_max"]
            assert export["routes_changed"] == 0


def test_cli_writes_json_or_says_why_not(checkpoint: Path, images: Path, tmp_path: Path):
    """On a bf16 CPU the command writes its JSON; elsewhere it stops and names the CPU's precision."""
    import openvino

    out = tmp_path / "bf16.json"
    argv = [str(checkpoint), "--images", str(images), "--imgsz", str(IMGSZ), "--out", str(out)]
    precision = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    if precision != "bf16":
        with pytest.raises(SystemExit, match=f"OpenVINO infers in {precision} on this CPU"):
            openvino_bf16.main(argv)
        return
    openvino_bf16.main(argv)
    data = json.loads(out.read_text())
    assert data["images"] == 1 and data["imgsz"] == IMGSZ and len(data["models"]) == 1
    assert {"marked", "unmarked"} <= data["models"][0].keys()
