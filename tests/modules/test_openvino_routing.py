# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BRA routing marked to stay f32 in OpenVINO graphs (`openvino_routing`), on a small model converted here.

The marks are checked on every machine (the converted model, the saved IR); that OpenVINO's CPU plugin honours them
only where it infers in bf16 by default (AVX512-BF16 or AMX), elsewhere that test skips and says why.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules.openvino_routing import PRECISE, keep_routing_fp32, routing_nodes
from ultralytics.utils import LOGGER

from openvino_ir import NOT_ROUTING_TYPES, ROUTING_TYPES, compiled_precisions, marked_layers

ov = pytest.importorskip("openvino")

SIZE = (1, 3, 20, 15)  # map 20x15, n_win 7: 10x8 regions of 2x2 tokens, the last column partial (padding masked)
pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # torch.jit.trace is deprecated; Ultralytics still traces
]


class Wrapper(nn.Module):
    """An outer module, as Ultralytics' NMSModel wraps a model: node scopes gain a prefix."""

    def __init__(self, model: nn.Module):
        """Hold the model."""
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model."""
        return self.model(x)


def small_model(layers: int = 2) -> nn.Module:
    """A 1x1 convolution then `layers` BRA layers of 16 channels, 2 heads, n_win 7, top 3 (eval mode)."""
    torch.manual_seed(0)
    bras = [BiLevelRoutingAttention_nchw(16, num_heads=2, n_win=7, topk=3) for _ in range(layers)]
    return nn.Sequential(nn.Conv2d(3, 16, 1), *bras).eval()


def convert(model: nn.Module, dynamic: bool = False):
    """Convert model to OpenVINO as Ultralytics' torch2openvino does (a trace; BRA dynamic when asked)."""
    for m in model.modules():
        if isinstance(m, BiLevelRoutingAttention_nchw):
            m.dynamic = dynamic
    x = torch.rand(SIZE)
    trace = torch.jit.trace(model, x, check_trace=False)
    return ov.convert_model(trace, input=None if dynamic else [SIZE], example_input=x)


def marked(ov_model) -> dict[str, str]:
    """Name to type of the nodes of a converted model that carry the precise mark."""
    return {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops() if PRECISE in op.get_rt_info()}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_marks_each_layers_routing_and_nothing_else(dynamic: bool):
    """Each BRA layer's sums, means, affinity matmul and top-k are marked; no projection, attention or layout node."""
    ov_model = convert(small_model(), dynamic)
    count = keep_routing_fp32(ov_model, small_model())
    nodes = marked(ov_model)
    assert count == len(nodes) > 0
    types = set(nodes.values())
    assert ROUTING_TYPES <= types and not types & NOT_ROUTING_TYPES, types
    assert sorted(t for t in nodes.values() if t in {"TopK", "MatMul"}) == ["MatMul", "MatMul", "TopK", "TopK"]
    assert {name.split("/")[0] for name in nodes} == {"__module.1", "__module.2"}  # the two BRA layers' own code


def test_finds_layers_behind_a_wrapper():
    """Scopes are matched as suffixes: a wrapped model (NMSModel) marks the same nodes."""
    model = small_model()
    ov_model = convert(Wrapper(model))
    keep_routing_fp32(ov_model, model)
    assert {name.split("/")[0] for name in marked(ov_model)} == {"__module.model.1", "__module.model.2"}


def test_model_without_bra_is_unchanged():
    """Nothing is marked in a model without BRA layers."""
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU()).eval()
    ov_model = convert(model)
    assert keep_routing_fp32(ov_model, model) == 0 and marked(ov_model) == {}


def test_warns_when_no_routing_node_is_found():
    """A model with BRA layers whose converted graph has no node of theirs (other names): 0 marks and a warning."""
    plain = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU()).eval()
    with mock.patch.object(LOGGER, "warning") as warning:
        assert keep_routing_fp32(convert(plain), small_model()) == 0
    assert "no routing node found" in warning.call_args.args[0]


def test_saved_ir_keeps_the_marks(tmp_path: Path):
    """ov.save_model writes the marks into the IR (as DisablePrecisionConversion), on exactly the marked nodes."""
    model = small_model()
    ov_model = convert(model)
    keep_routing_fp32(ov_model, model)
    expected = set(marked(ov_model))
    ov.save_model(ov_model, tmp_path / "m.xml", compress_to_fp16=False)
    saved = set(marked_layers(tmp_path / "m.xml"))
    assert saved == expected
    reloaded = ov.Core().read_model(tmp_path / "m.xml")
    assert {op.get_friendly_name() for op in routing_nodes(reloaded, model)} == expected  # same nodes found again


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_bf16_runtime_runs_routing_in_f32(tmp_path: Path, dynamic: bool):
    """Where OpenVINO infers in bf16, the nodes compiled from marked IR layers run in f32 and the projections in bf16,
    and the output stays within 5 % of the f32 runtime's."""
    core = ov.Core()
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    if precision != "bf16":
        pytest.skip(f"OpenVINO infers in {precision} by default on this CPU (bf16 needs AVX512-BF16 or AMX)")
    model = small_model()
    ov_model = convert(model, dynamic)
    keep_routing_fp32(ov_model, model)
    ov.save_model(ov_model, tmp_path / "m.xml", compress_to_fp16=False)
    names = set(marked(ov_model))
    compiled = core.compile_model(tmp_path / "m.xml", "CPU")
    seen = compiled_precisions(compiled, names)
    assert "bf16" in seen["convolution"] and "f32" in seen["marked"] and seen["marked"] <= {"f32", "i32", "i64"}, seen
    x = np.random.default_rng(0).random(SIZE, dtype=np.float32)
    f32 = core.compile_model(tmp_path / "m.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert np.abs(compiled(x)[0] - f32(x)[0]).max() < 0.05 * np.abs(f32(x)[0]).max()
