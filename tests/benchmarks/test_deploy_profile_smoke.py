# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Smoke test of benchmarks/deploy_profile.py: node attribution by module scope; one profile of the narrow models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from deploy_profile import attribute, layer_scopes, profile  # noqa: E402
from model_bench import build_models  # noqa: E402
from plan import BRA, FLOOR  # noqa: E402

NARROW_BRA = ROOT / "tests/integration/assets/rtdetr-narrow-HGBlock_Biformer.yaml"


def test_attribute_splits_layers_from_the_rest():
    """Nodes under a layer scope count as the layer's, by op type; everything else is the rest."""
    durations = {"/model.5/cv/MatMul|MatMul": 2.0, "/model.5/cv/Softmax|Softmax": 1.0, "/model.5/cvx/Conv|Conv": 4.0,
                 "/model.50/cv/MatMul|MatMul": 8.0, "/model.6/cv/MatMul_1|MatMul": 0.5}  # fmt: skip
    split = attribute(durations, ("/model.5/cv/", "/model.6/cv/"))
    assert split == {"total_ms": 15.5, "layers_ms": 3.5, "rest_ms": 12.0, "layers_by_op": {"MatMul": 2.5, "Softmax": 1}}
    assert list(split["layers_by_op"]) == ["MatMul", "Softmax"]  # largest first


def test_layer_scopes_name_the_exported_nodes():
    """The scopes of the narrow BRA model and of its floor model are the BRA layers' paths in ONNX's naming."""
    models = build_models(torch.device("cpu"), str(NARROW_BRA), str(NARROW_BRA))
    paths = [name for name, m in models[BRA].named_modules() if type(m).__name__ == "BiLevelRoutingAttention_nchw"]
    expected = tuple("/" + name.replace(".cv", "/cv").replace(".m.", "/m.") + "/" for name in paths)
    assert paths and layer_scopes(models[BRA]) == layer_scopes(models[FLOOR]) == expected


@pytest.mark.slow
def test_profile_attributes_time_to_the_layers(tmp_path: Path):
    """A profile of the narrow models at 64 px finds time in the BRA layers (routing and attention ops) and in their
    floor replacements (no routing or attention op)."""
    rows = {row["model"]: row for row in profile([64], 1, tmp_path, str(NARROW_BRA), str(NARROW_BRA))}
    assert rows.keys() == {BRA, FLOOR}
    for row in rows.values():
        assert 0 < row["layers_ms"] < row["total_ms"]
        assert row["rest_ms"] == pytest.approx(row["total_ms"] - row["layers_ms"], abs=0.02)
    assert {"TopK", "MatMul", "Conv"} <= rows[BRA]["layers_by_op"].keys()
    floor_ops = rows[FLOOR]["layers_by_op"].keys()
    assert "Conv" in floor_ops and not {"TopK", "MatMul", "Softmax"} & floor_ops
