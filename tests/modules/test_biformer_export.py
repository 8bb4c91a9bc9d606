# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Export of the BiFormer modules (issue 3, point 8) and their FLOPs as Ultralytics counts them."""

from __future__ import annotations

import importlib.util
import io

import pytest
import torch
from torch import nn

from ultralytics.nn.AddModules import (
    AttentionLePE,
    BiLevelRoutingAttention,
    BiLevelRoutingAttention_nchw,
    HGBlock_Biformer,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

DIM = 16
ONNX_TOLERANCE = 1e-4  # max abs difference between onnxruntime and PyTorch
TRACE_TOLERANCE = 1e-6  # max abs difference between torch.jit.trace and eager
OPSETS = [17, 18]
TRACED_SIZE_NODES = {"aten::size", "prim::NumToTensor", "aten::Int"}  # what reading a size on a traced tensor records
pytestmark = [  # tracing freezes sizes read with int() (Ultralytics silences these globally); jit is deprecated
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1:UserWarning"),  # F.pad's symbolic, harmless
]


def export_cases() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Modules in eval mode with a fixed input shape; padded maps, small maps and several heads included."""
    return {
        "nchw-padded": (BiLevelRoutingAttention_nchw(DIM, num_heads=2), (2, DIM, 20, 15)),
        "nchw-small-topk-clamped": (BiLevelRoutingAttention_nchw(DIM, topk=30), (1, DIM, 3, 5)),
        "nchw-divisible": (BiLevelRoutingAttention_nchw(DIM, num_heads=4), (1, DIM, 14, 14)),
        "hgblock": (HGBlock_Biformer(DIM, 8, DIM, k=3, n=2, lightconv=True, shortcut=True), (1, DIM, 13, 11)),
        "legacy": (BiLevelRoutingAttention(DIM, n_win=3, num_heads=2, soft_routing=True), (1, DIM, 10, 7)),
        "lepe": (AttentionLePE(DIM, num_heads=2), (1, DIM, 5, 4)),
    }


def onnx_bytes(m: nn.Module, x: torch.Tensor, opset: int, dynamo: bool = False) -> bytes:
    """Export m at x's fixed size and return the ONNX model."""
    f = io.BytesIO()
    torch.onnx.export(m, (x,), f, opset_version=opset, dynamo=dynamo, input_names=["x"], output_names=["y"])
    return f.getvalue()


def onnxruntime_output(model: bytes, x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX model on x with onnxruntime's CPU provider."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", export_cases())
def test_onnx_export(name: str, opset: int):
    """torch.onnx.export (TorchScript exporter) at a fixed size: a static graph that onnxruntime runs to 1e-4."""
    m, shape = export_cases()[name]
    m.eval()
    x = torch.randn(shape)
    model = onnx_bytes(m, x, opset)
    proto = onnx.load_from_string(model)
    onnx.checker.check_model(proto)
    assert {o.version for o in proto.opset_import if o.domain in {"", "ai.onnx"}} == {opset}
    assert "Shape" not in {node.op_type for node in proto.graph.node}, "sizes must be constants of the export"
    with torch.no_grad():
        expected = m(x)
    assert (onnxruntime_output(model, x) - expected).abs().max() <= ONNX_TOLERANCE


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="the dynamo exporter needs onnxscript")
@pytest.mark.parametrize("name", ["nchw-padded", "hgblock"])
def test_onnx_export_dynamo(name: str):
    """The dynamo exporter (torch.onnx.export's default in this torch) also matches onnxruntime to 1e-4."""
    m, shape = export_cases()[name]
    m.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = m(x)
    assert (onnxruntime_output(onnx_bytes(m, x, OPSETS[-1], dynamo=True), x) - expected).abs().max() <= ONNX_TOLERANCE


@pytest.mark.parametrize("name", export_cases())
def test_torchscript_trace(name: str):
    """torch.jit.trace matches eager, records no size arithmetic and survives a save/load round trip."""
    m, shape = export_cases()[name]
    m.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        traced = torch.jit.trace(m, x)
        expected = m(x)
        assert (traced(x) - expected).abs().max() <= TRACE_TOLERANCE
    recorded = {node.kind() for node in traced.inlined_graph.nodes()} & TRACED_SIZE_NODES
    assert not recorded, f"size arithmetic was traced: {recorded}"
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(buffer)(x), traced(x))


def test_flops_count_attention_products():
    """ultralytics-thop (behind model.info()) counts BRA's routing and attention products, not only its convolutions."""
    thop = pytest.importorskip("thop")
    n, c, h, w, heads, topk = 2, DIM, 20, 15, 2, 4
    m = BiLevelRoutingAttention_nchw(c, num_heads=heads, topk=topk).eval()
    total = thop.profile(m, inputs=(torch.randn(n, c, h, w),), verbose=False)[0]
    convs = sum(
        thop.profile(conv, inputs=(torch.randn(n, c, h, w),), verbose=False)[0]
        for conv in (m.qkv_linear, m.lepe, m.output_linear)
    )
    rh, rw = h // m.n_win, w // m.n_win
    regions, tokens = -(-h // rh) * -(-w // rw), rh * rw
    routing = n * regions * regions * c  # affinity of the region means of q and k
    attention = n * heads * regions * tokens * topk * tokens * 2 * (c // heads)  # q.k and attn.v per routed token
    assert total == convs + routing + attention
