# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Bad input end to end: broken model YAMLs, images smaller than one BRA region, truncated checkpoints."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from ultralytics import RTDETR
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw

from .conftest import HGBLOCK_YAML, NARROW_YAML
from .load_worker import decoder_queries

HGB = 5  # first HGBlock_Biformer row of the narrow YAML: [-1, 6, HGBlock_Biformer, [32, 128, 5, True, False]]
BRA = 7  # a 128 -> 128 channel row of the narrow YAML, replaced by a BRA layer for the BRA cases
BRA_ROW = [-1, 1, "BiLevelRoutingAttention_nchw", [128, 4, 7, 4]]  # channels, num_heads, n_win, topk
HEAD_REPC3 = 16  # a RepC3 row of the head: layer indices count on through the head
HGB_ARGS = "['cm', 'c2', 'k', 'lightconv', 'shortcut']"
BRA_ARGS = "['channels', 'num_heads', 'n_win', 'topk']"
NUM_QUERIES = 300
DETECTION = 6  # cx, cy, w, h, score, class index
TINY_IMGSZ = 32  # the smallest stride-aligned input: P4 map 2x2, P5 map 1x1, both smaller than the 7x7 region grid
TINY_IMAGE = 16  # px: smaller than one BRA region at the model's 640 px input (7x7 regions of about 91 px)
TRUNCATED = "is not a loadable checkpoint — the file is empty, truncated or corrupted"  # upstream 8.4.190's message


def _narrow(rows: dict[int, list] | None = None) -> dict:
    """The narrow test model's YAML dict with the rows at some layer indices replaced by ``[from, n, module, args]``."""
    cfg = yaml.safe_load(NARROW_YAML.read_text())
    layers = cfg["backbone"] + cfg["head"]
    for index, row in (rows or {}).items():
        layers[index][:] = row
    return cfg


def _write(tmp_path: Path, cfg: dict) -> Path:
    """Write a model YAML into tmp_path (as a user would) and return its path."""
    path = tmp_path / "rtdetr-bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _hgb(*args) -> dict:
    """The narrow YAML with the HGB row's args replaced."""
    return _narrow({HGB: [-1, 6, "HGBlock_Biformer", list(args)]})


def _bra(*args) -> dict:
    """The narrow YAML with row BRA a BiLevelRoutingAttention_nchw layer with these args."""
    return _narrow({BRA: [-1, 1, "BiLevelRoutingAttention_nchw", list(args)]})


def test_valid_variants_build(tmp_path: Path):
    """The unmodified narrow YAML and its BRA variant build from a file: the broken cases below differ in one row."""
    for cfg in (_narrow(), _narrow({BRA: BRA_ROW})):
        model = RTDETR(_write(tmp_path, cfg)).model
        assert len(model.model) == len(cfg["backbone"]) + len(cfg["head"])
    assert isinstance(model.model[BRA], BiLevelRoutingAttention_nchw)


@pytest.mark.parametrize(
    ("cfg", "error", "message"),
    [
        (_hgb(32, 128.0, 5, True, False), TypeError, f"layer {HGB} HGBlock_Biformer: arg 'c2' must be int, got 128.0"),
        (_hgb(32, 128, 5, "yes", False), TypeError, f"layer {HGB} HGBlock_Biformer: arg 'lightconv' must be bool"),
        (_hgb(32, 128, [5], True), TypeError, f"layer {HGB} HGBlock_Biformer: arg 'k' must be int, got [5]"),
        (_hgb(32), ValueError, f"layer {HGB} HGBlock_Biformer: takes 2 to 5 args {HGB_ARGS}, got 1: [32]"),
        (_hgb(32, 128, 5, True, False, 1), ValueError, f"layer {HGB} HGBlock_Biformer: takes 2 to 5 args"),
        (_bra(128, "four"), TypeError, f"layer {BRA} BiLevelRoutingAttention_nchw: arg 'num_heads' must be int"),
        (_bra(128, 4, 7.5), TypeError, f"layer {BRA} BiLevelRoutingAttention_nchw: arg 'n_win' must be int, got 7.5"),
        (_bra(128, True), TypeError, f"layer {BRA} BiLevelRoutingAttention_nchw: arg 'num_heads' must be int"),
        (_bra(), ValueError, f"layer {BRA} BiLevelRoutingAttention_nchw: takes 1 to 4 args {BRA_ARGS}, got 0: []"),
        (_bra(128, 4, 7, 4, 1), ValueError, f"layer {BRA} BiLevelRoutingAttention_nchw: takes 1 to 4 args"),
    ],
    ids=[
        "hgb-float-channels",
        "hgb-str-flag",
        "hgb-list-kernel",
        "hgb-too-few",
        "hgb-too-many",
        "bra-str-heads",
        "bra-float-n_win",
        "bra-bool-heads",
        "bra-none",
        "bra-too-many",
    ],
)
def test_wrong_argument_types_and_counts(tmp_path: Path, cfg: dict, error: type[Exception], message: str):
    """A wrong argument type or count in one of our layers' rows names the layer index, the layer and the argument."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        RTDETR(_write(tmp_path, cfg))


def test_bra_channel_mismatch(tmp_path: Path):
    """BRA keeps its input channels: asking for other channels names the layer, both counts and the fix."""
    message = (
        f"layer {BRA} BiLevelRoutingAttention_nchw: keeps its input channels, but the YAML asks for 256 (256 after "
        "width scaling) on an input of 128 channels; set channels to 128"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        RTDETR(_write(tmp_path, _bra(256, 4)))


WRONG_VALUES = pytest.mark.parametrize(
    ("cfg", "problem"),
    [(_bra(128, 3), "dim=128 must be divisible by num_heads=3"), (_bra(128, 4, 0), "n_win must be an integer >= 1")],
    ids=["bra-heads-not-dividing", "bra-zero-n_win"],
)


@WRONG_VALUES
def test_wrong_argument_values_name_the_problem(tmp_path: Path, cfg: dict, problem: str):
    """An argument value the layer rejects raises a ValueError naming the layer class and the problem."""
    with pytest.raises(ValueError, match=re.escape(f"BiLevelRoutingAttention_nchw: {problem}")):
        RTDETR(_write(tmp_path, cfg))


@WRONG_VALUES
def test_wrong_argument_values_name_the_layer(tmp_path: Path, cfg: dict, problem: str):
    """Like the type, count and channel errors, a rejected value names the layer index."""
    with pytest.raises(ValueError) as raised:
        RTDETR(_write(tmp_path, cfg))
    assert str(raised.value).startswith(f"layer {BRA} "), str(raised.value)


@pytest.mark.parametrize(
    ("index", "row", "message"),
    [
        (HGB, [-1, 6, "HGBlock_Biformr", [32, 128, 5, True, False]], "unknown module 'HGBlock_Biformr'"),
        (BRA, [-1, 1, "BiLevelRoutingAttention_NCHW", [128]], "unknown module 'BiLevelRoutingAttention_NCHW'"),
        (HEAD_REPC3, [-1, 3, "RepC3x", [64]], "unknown module 'RepC3x'"),
    ],
    ids=["hgb", "bra", "head"],
)
def test_misspelt_module_name(tmp_path: Path, index: int, row: list, message: str):
    """A misspelt module names its layer index (counted through the head) and suggests the intended layer."""
    intended = {HGB: "HGBlock_Biformer", BRA: "BiLevelRoutingAttention_nchw", HEAD_REPC3: "RepC3"}[index]
    with pytest.raises(ValueError, match=f"^{re.escape(f'layer {index}: {message} in the model YAML')}") as raised:
        RTDETR(_write(tmp_path, _narrow({index: row})))
    assert re.search(rf"did you mean .*\b{intended}\b", str(raised.value)), str(raised.value)


@pytest.fixture(scope="module")
def hgblock_model() -> RTDETR:
    """rtdetr-l-HGBlock_Biformer.yaml, built by bare name (random weights)."""
    torch.manual_seed(0)
    return RTDETR(HGBLOCK_YAML)


@contextlib.contextmanager
def _bra_maps(model: nn.Module) -> Iterator[list[tuple[int, int, int]]]:
    """Collect (H, W, n_win) for every BRA layer call inside the block."""
    maps = []
    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw)]
    assert layers
    handles = [m.register_forward_hook(lambda m, args, out: maps.append((*args[0].shape[2:], m.n_win))) for m in layers]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def _assert_smaller_than_region_grid(maps: list[tuple[int, int, int]]) -> None:
    """Every BRA map seen had fewer rows and columns than the layer's n_win regions per side."""
    assert maps and all(h < n_win and w < n_win for h, w, n_win in maps), maps


@pytest.mark.parametrize("shape", [(TINY_IMGSZ, TINY_IMGSZ), (TINY_IMGSZ, 2 * TINY_IMGSZ)])
def test_eval_forward_on_maps_smaller_than_a_region(hgblock_model: RTDETR, shape: tuple[int, int]):
    """At 32 px every BRA map is smaller than the region grid (n_win=7 per side), yet eval gives finite detections.

    The decoder keeps at most one query per anchor, so it returns fewer than 300 at these sizes.
    """
    model = hgblock_model.model.eval()
    with _bra_maps(model) as maps, torch.inference_mode():
        out = model(torch.rand(2, 3, *shape))[0]
    _assert_smaller_than_region_grid(maps)
    assert out.shape == (2, decoder_queries(NUM_QUERIES, *shape), DETECTION)
    assert out.shape[1] < NUM_QUERIES
    assert torch.isfinite(out).all()


def test_predict_on_image_smaller_than_a_region(hgblock_model: RTDETR):
    """Predict on a 16x16 image: BRA sees maps smaller than its region grid; one result, boxes inside the image."""
    image = np.random.default_rng(0).integers(0, 256, (TINY_IMAGE, TINY_IMAGE, 3), dtype=np.uint8)
    with _bra_maps(hgblock_model.model) as maps:
        (result,) = hgblock_model.predict(image, imgsz=TINY_IMGSZ, conf=0.0, verbose=False)
    _assert_smaller_than_region_grid(maps)
    assert result.orig_shape == (TINY_IMAGE, TINY_IMAGE)
    boxes = result.boxes.xyxy
    assert len(boxes) > 0 and torch.isfinite(boxes).all()
    assert boxes.min() >= 0 and boxes.max() <= TINY_IMAGE


@pytest.fixture(scope="module")
def narrow_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the narrow model, saved the Ultralytics way."""
    path = tmp_path_factory.mktemp("ckpt") / "narrow.pt"
    RTDETR(NARROW_YAML).save(path)
    return path


def test_whole_checkpoint_loads(narrow_checkpoint: Path):
    """The checkpoint the truncated files are cut from loads in full."""
    assert RTDETR(narrow_checkpoint).model.yaml["nc"] == yaml.safe_load(NARROW_YAML.read_text())["nc"]


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99], ids=["empty", "half", "last-percent-missing"])
def test_truncated_checkpoint(tmp_path: Path, narrow_checkpoint: Path, keep: float):
    """A truncated or empty .pt gets upstream's error naming the file and saying it is truncated or corrupted."""
    data = narrow_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TypeError, match=re.escape(f"{path} {TRUNCATED}")):
        RTDETR(path)
