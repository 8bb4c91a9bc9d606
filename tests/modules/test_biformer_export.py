# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Export of the BiFormer modules (ONNX, TorchScript, static and dynamic) and their FLOPs as Ultralytics counts them."""

from __future__ import annotations

import io
from typing import Callable
from unittest import mock

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ultralytics.nn.AddModules import (
    AttentionLePE,
    BiLevelRoutingAttention,
    BiLevelRoutingAttention_nchw,
    HGBlock_Biformer,
)
from ultralytics.nn.AddModules import bra_nchw
from ultralytics.nn.AddModules.attention_paths import GATHER, PATHS, PER_ROUTE, choose_path
from ultralytics.nn.AddModules.regions import MAX_DIMS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

DIM = 16
ONNX_TOLERANCE = 1e-4  # max abs difference between onnxruntime and PyTorch
TRACE_TOLERANCE = 1e-6  # max abs difference between torch.jit.trace and eager
OPSETS = [17, 18]
DYNAMIC_CASES = ("nchw-padded", "nchw-divisible", "hgblock")  # the layers of the model YAMLs
# (batch, H, W) a dynamic export must serve: the traced one, non-multiples of the region size, maps smaller than n_win,
# a 1x1 map and one with fewer regions than topk (topk clamped at run time, as in eager)
DYNAMIC_SIZES = [(1, 20, 15), (2, 13, 9), (3, 41, 30), (1, 3, 5), (2, 1, 1), (1, 1, 3), (4, 14, 14)]
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
        "legacy-pooled-kv": (
            BiLevelRoutingAttention(DIM, n_win=2, num_heads=2, kv_downsample_mode="avgpool", kv_downsample_ratio=2),
            (1, DIM, 8, 8),
        ),
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


def slim_op_types(model: bytes) -> set[str]:
    """Op types of an ONNX model after onnxslim (which Ultralytics' export runs), i.e. after constant folding."""
    onnxslim = pytest.importorskip("onnxslim")
    return {node.op_type for node in onnxslim.slim(onnx.load_from_string(model)).graph.node}


def set_dynamic(m: nn.Module) -> nn.Module:
    """Mark every BRA_nchw in m for symbolic tracing, as Ultralytics' exporter does for `dynamic=True`."""
    for layer in m.modules():
        if isinstance(layer, BiLevelRoutingAttention_nchw):
            layer.dynamic = True
    return m


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
    assert "Shape" not in slim_op_types(model), "sizes must be constants of a static export"
    with torch.no_grad():
        expected = m(x)
    assert (onnxruntime_output(model, x) - expected).abs().max() <= ONNX_TOLERANCE


@pytest.mark.parametrize("name", DYNAMIC_CASES)
def test_onnx_export_dynamic(name: str):
    """With `dynamic` set, one ONNX graph (dynamic batch, height, width) matches eager at every size, tiny maps too."""
    m, shape = export_cases()[name]
    m = set_dynamic(m.eval())
    f = io.BytesIO()
    axes = {"x": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(m, (torch.randn(shape),), f, opset_version=OPSETS[-1], dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes=axes)  # fmt: skip
    assert "Shape" in slim_op_types(f.getvalue()), "a dynamic export computes sizes from its input"
    for size in DYNAMIC_SIZES:
        x = torch.randn(size[0], shape[1], *size[1:])
        with torch.no_grad():
            expected = m(x)
        assert (onnxruntime_output(f.getvalue(), x) - expected).abs().max() <= ONNX_TOLERANCE, f"input {size}"


@pytest.mark.parametrize("name", export_cases())
def test_torchscript_trace(name: str):
    """torch.jit.trace matches eager and survives a save/load round trip; every module's trace runs any batch (as
    upstream's RT-DETR TorchScript does), BRA traces freeze H and W."""
    m, shape = export_cases()[name]
    m.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        traced = torch.jit.trace(m, x)
        assert (traced(x) - m(x)).abs().max() <= TRACE_TOLERANCE
        other_batch = torch.randn(shape[0] + 2, *shape[1:])
        assert (traced(other_batch) - m(other_batch)).abs().max() <= TRACE_TOLERANCE
        if name in DYNAMIC_CASES:
            with pytest.raises(RuntimeError):  # the map size is a constant of a static trace
                traced(torch.randn(*shape[:2], shape[2] + 7, shape[3] + 5))
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(buffer)(x), traced(x))


@pytest.mark.parametrize("name", DYNAMIC_CASES)
def test_torchscript_trace_dynamic(name: str):
    """With `dynamic` set, one TorchScript trace matches eager at every batch and map size."""
    m, shape = export_cases()[name]
    m = set_dynamic(m.eval())
    with torch.no_grad():
        traced = torch.jit.trace(m, torch.randn(shape))
        for size in DYNAMIC_SIZES:
            x = torch.randn(size[0], shape[1], *size[1:])
            assert (traced(x) - m(x)).abs().max() <= TRACE_TOLERANCE, f"input {size}"


def paths_traced(m: nn.Module, trace: Callable[[nn.Module], object]) -> tuple[object, set[str]]:
    """Run trace(m) and return its result and the attention paths m's BRA layers chose while it ran."""
    chosen = set()

    def spy(*args, **kwargs):
        choice = choose_path(*args, **kwargs)
        chosen.add(choice.path)
        return choice

    with mock.patch.object(bra_nchw, "choose_path", spy):
        return trace(m), chosen


def with_path(m: nn.Module, path: str) -> nn.Module:
    """Set every BRA_nchw layer of m to one attention path."""
    for layer in m.modules():
        if isinstance(layer, BiLevelRoutingAttention_nchw):
            layer.attn_backend = path
    return m


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", DYNAMIC_CASES)
def test_static_export_every_path(name: str, path: str):
    """Both attention paths serve a static export and match the other path's eager output: gather (every routed K/V
    region gathered, one fused SDPA call: what a GPU trace or a large map runs) and per_route (what small CPU maps
    run), as ONNX through onnxruntime and as a TorchScript trace. A dynamic trace takes gather only
    (test_attention_paths.py checks the refusal of per_route there)."""
    m, shape = export_cases()[name]
    m.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = with_path(m, next(p for p in PATHS if p != path))(x)
        with_path(m, path)
        model, onnx_paths = paths_traced(m, lambda m: onnx_bytes(m, x, OPSETS[-1]))
        traced, trace_paths = paths_traced(m, lambda m: torch.jit.trace(m, x))
        assert onnx_paths == trace_paths == {path}
        assert (traced(x) - expected).abs().max() <= ONNX_TOLERANCE
    assert (onnxruntime_output(model, x) - expected).abs().max() <= ONNX_TOLERANCE


class HighestRank(TorchFunctionMode):
    """Records the highest rank of any tensor a torch function returns while the mode is active (views included)."""

    def __init__(self):
        """Start at rank 0."""
        super().__init__()
        self.rank, self.func = 0, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        """Run func and keep the rank of its tensor outputs.

        Args:
            func (Callable): The torch function or tensor method called.
            types (tuple): The tensor types taking part (unused).
            args (tuple): Its positional arguments.
            kwargs (dict | None): Its keyword arguments.

        Returns:
            (Any): What func returned.
        """
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() > self.rank:
                self.rank, self.func = t.dim(), func
        return out


RANK_CASES = [(name, False, GATHER) for name in export_cases()] + [
    (name, dynamic, path) for name in DYNAMIC_CASES for dynamic, path in ((False, PER_ROUTE), (True, GATHER))
]


@pytest.mark.parametrize("name, dynamic, path", RANK_CASES)
def test_tensor_rank_at_most_max_dims(name: str, dynamic: bool, path: str):
    """No module makes a tensor of more than MAX_DIMS dimensions while torch.jit.trace traces it (XNNPACK, ExecuTorch's
    CPU delegate, refuses the whole program at load time): both attention paths of a static trace, and for the model
    YAMLs' layers the dynamic trace (symbolic sizes, always padded, gather path)."""
    m, shape = export_cases()[name]
    m = with_path(set_dynamic(m.eval()) if dynamic else m.eval(), path)
    with torch.no_grad(), HighestRank() as ranks:
        _, chosen = paths_traced(m, lambda m: torch.jit.trace(m, torch.randn(shape)))
    assert chosen <= {path}
    assert 4 <= ranks.rank <= MAX_DIMS, f"{name}: a {ranks.rank}-d tensor from {ranks.func}"


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
