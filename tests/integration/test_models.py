# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The two fork models: sizes, GFLOPs, predict/eval at several sizes, batching, fusing, checkpoints."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import thop
import torch
from torch import nn
from ultralytics.utils import ASSETS

from ultralytics import RTDETR
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw, HGBlock_Biformer

from detections import assert_same_detections
from references import bra_nchw_reference

from .conftest import run_yolo

PARAMS = {  # spec §5: total parameters (nc=1) and those of the layers BiFormer changes
    "rtdetr-l-Biformer.yaml": (51_089_347, {9: 25_251_840}),
    "rtdetr-l-HGBlock_Biformer.yaml": (45_434_051, {5: 5_904_000, 6: 6_264_448, 7: 6_264_448}),
}
NUM_QUERIES = 300  # RT-DETR decoder queries
DETECTION = 6  # cx, cy, w, h, score, class index (RTDETRDecoder.postprocess)
GFLOPS_TOLERANCE = 0.02  # printed figure vs a direct count at the full input size
BUS = ASSETS / "bus.jpg"


def _yaml_name(model: RTDETR) -> str:
    """The YAML file name a model was built from."""
    return Path(model.model.yaml["yaml_file"]).name


def _eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eval forward of a detection model; returns the (B, 300, 4+nc) decoder output."""
    with torch.inference_mode():
        out = model(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def test_parameter_counts(variant_model: RTDETR):
    """Exactly the published parameter counts, in total and for the layers BiFormer replaces."""
    total, layers = PARAMS[_yaml_name(variant_model)]
    assert sum(p.numel() for p in variant_model.model.parameters()) == total
    for index, count in layers.items():
        assert variant_model.model.model[index].np == count, f"layer {index}"


def _attention_macs(model: nn.Module, imgsz: int) -> tuple[float, float]:
    """Count MACs at imgsz directly with thop, and the region-attention products every BRA layer should add."""
    expected = []

    def record(module: BiLevelRoutingAttention_nchw, args: tuple, output: torch.Tensor) -> None:
        _, c, h, w = args[0].shape
        rh, rw = max(h // module.n_win, 1), max(w // module.n_win, 1)
        regions = -(-h // rh) * -(-w // rw)
        keys = min(module.topk, regions) * rh * rw
        expected.append(2 * h * w * keys * c + regions * regions * c)  # q.k and attn.v, plus routing affinity

    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw)]
    handles = [m.register_forward_hook(record) for m in layers]
    try:
        direct = thop.profile(model, inputs=[torch.empty(1, 3, imgsz, imgsz)], verbose=False)[0]
    finally:
        for handle in handles:
            handle.remove()
    return direct, sum(expected)


def test_gflops_count_attention_products(variant_model: RTDETR):
    """model.info() at 640 agrees with a direct count, and that count includes BRA's attention products."""
    model = copy.deepcopy(variant_model.model)
    printed = model.info(imgsz=640)[-1]
    direct_macs, attention_macs = _attention_macs(model, 640)
    assert printed == pytest.approx(direct_macs * 2 / 1e9, rel=GFLOPS_TOLERANCE)
    functional = sys.modules["thop.profile"].functional_hooks
    saved = dict(functional)
    functional.clear()  # what a counter that ignores matmul/SDPA products would report
    try:
        modules_only = thop.profile(model, inputs=[torch.empty(1, 3, 640, 640)], verbose=False)[0]
    finally:
        functional.update(saved)
    assert direct_macs - modules_only == pytest.approx(attention_macs, rel=0.05)
    assert attention_macs > 0


@contextlib.contextmanager
def reference_attention(model: nn.Module):
    """Run every BRA layer of model as the plain float64 dense reference (tests/references.py) instead."""
    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw)]
    for layer in layers:
        layer.forward = lambda x, layer=layer: bra_nchw_reference(layer, x).out.to(x.dtype)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


@pytest.mark.parametrize("imgsz", [160, 320, 640])
def test_predict_bus_matches_reference_attention(variant_model: RTDETR, imgsz: int):
    """Predict on the bundled bus.jpg at several sizes (RT-DETR stretches it to a square: BRA maps from 5x5 to 40x40):
    the boxes and scores equal those of the same model running the float64 reference attention, in image pixels."""
    variant_model.predictor = None  # the predictor runs its own copy of the model: build it after each swap
    (result,) = variant_model.predict(BUS, imgsz=imgsz, conf=0.0, verbose=False)
    with reference_attention(variant_model.model):
        variant_model.predictor = None
        (expected,) = variant_model.predict(BUS, imgsz=imgsz, conf=0.0, verbose=False)
    variant_model.predictor = None
    assert result.orig_shape == (1080, 810) and len(result.boxes) == NUM_QUERIES
    order, expected_order = result.boxes.conf.argsort(), expected.boxes.conf.argsort()
    torch.testing.assert_close(result.boxes.conf[order], expected.boxes.conf[expected_order], rtol=0, atol=1e-4)
    top = expected_order[-10:]  # the clearly ranked detections: same boxes (pixels of the 1080x810 image)
    torch.testing.assert_close(result.boxes.xyxy[order[-10:]], expected.boxes.xyxy[top], rtol=0, atol=0.05)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (416, 352)])
def test_rect_eval_matches_reference_attention(variant_model: RTDETR, shape: tuple[int, int]):
    """Non-square eval inputs (rect validation batches) give the detections of the reference attention (as a set: with
    random weights, near-equal query scores may swap places under fp32 vs float64 rounding)."""
    torch.manual_seed(3)
    x = torch.rand(1, 3, *shape)
    out = _eval(variant_model.model, x)
    with reference_attention(variant_model.model):
        expected = _eval(variant_model.model, x)
    assert out.shape == (1, NUM_QUERIES, DETECTION)
    assert_same_detections(out.numpy(), expected.numpy(), atol=1e-4)


def test_batch_of_two_matches_single_images(hgblock_model: RTDETR):
    """Batching changes nothing per image."""
    torch.manual_seed(1)
    images = torch.rand(2, 3, 320, 320)
    batched = _eval(hgblock_model.model, images)
    for i in range(2):
        torch.testing.assert_close(
            batched[i : i + 1], _eval(hgblock_model.model, images[i : i + 1]), rtol=1e-4, atol=1e-4
        )


def test_fuse_leaves_no_batchnorm_in_hgblock_biformer(hgblock_model: RTDETR):
    """fuse() folds every BatchNorm of HGBlock_Biformer into its convs without changing the output."""
    model = copy.deepcopy(hgblock_model.model)
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(4))
    before = _eval(model, x)
    model.fuse(verbose=False)
    blocks = [m for m in model.modules() if isinstance(m, HGBlock_Biformer)]
    assert len(blocks) == 3
    assert not [m for block in blocks for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    assert_same_detections(_eval(model, x).numpy(), before.numpy(), atol=1e-3)  # folding BN reorders rounding


def _half_rounded(model: nn.Module) -> nn.Module:
    """A copy with weights rounded through fp16, as Ultralytics stores them in checkpoints."""
    return copy.deepcopy(model).half().float()


def test_checkpoint_reloads_and_predicts_the_same(hgblock_model: RTDETR, checkpoint: Path, tmp_path: Path):
    """A saved checkpoint reloads (also with ULTRALYTICS_SAFE_LOAD=1) and computes what the saved model computes."""
    torch.manual_seed(2)
    x = torch.rand(1, 3, 160, 160)
    expected = _eval(_half_rounded(hgblock_model.model).eval(), x)
    reloaded = RTDETR(checkpoint)
    torch.testing.assert_close(_eval(reloaded.model.eval(), x), expected, rtol=1e-5, atol=1e-5)

    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch; from ultralytics import RTDETR; from ultralytics.utils import SAFE_LOAD; assert SAFE_LOAD; "
        "m = RTDETR(sys.argv[1]).model.eval(); x = torch.load(sys.argv[2]); "
        "torch.save(m(x)[0].detach(), sys.argv[3])"
    )
    env = {**os.environ, "ULTRALYTICS_SAFE_LOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(checkpoint), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml"])
def test_yolo_cli_builds_by_bare_name(variant: str, tmp_path: Path):
    """`yolo detect predict model=<bare yaml name>` routes to RT-DETR, builds the model and predicts."""
    output = run_yolo("detect", "predict", f"model={variant}", f"source={BUS}", "imgsz=160", "save=False", cwd=tmp_path)
    assert f"{Path(variant).stem} summary" in output  # built from the fork's YAML
    assert "image 1/1" in output and "bus.jpg" in output
