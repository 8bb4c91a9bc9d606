# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Choosing BRA's token-attention path: the `attn_backend` switch, $BIFORMER_ATTN_BACKEND, the `auto` rule, the
refusals, and every path in PyTorch's deterministic mode. The paths' numbers are checked against the float64
reference in test_biformer_reference.py."""

from __future__ import annotations

import io
import logging
import warnings

import pytest
import torch

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules.attention_paths import (
    ATTN_BACKENDS,
    AUTO,
    ENV_VAR,
    GATHER,
    PATHS,
    PER_ROUTE,
    PER_ROUTE_MAX_TOKENS_INFERENCE,
    PER_ROUTE_MAX_TOKENS_TRAINING,
    _LOGGED,
    auto_path,
)
from ultralytics.utils import LOGGER

DIM = 16
# the autograd node each path leaves in a recorded graph: per_route's recomputing Function, gather's K/V index_select
PATH_NODES = {PER_ROUTE: "RoutedAttentionBackward", GATHER: "IndexSelectBackward0"}
CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # device objects only: nothing runs on CUDA here


def autograd_nodes(t: torch.Tensor) -> set[str]:
    """Type names of every node of t's autograd graph."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack += [n for n, _ in node.next_functions]
    return {type(node).__name__ for node in seen}


def path_run(m: BiLevelRoutingAttention_nchw, x: torch.Tensor) -> str:
    """The path a training forward of m on x ran, read from the autograd graph it recorded."""
    nodes = autograd_nodes(m(x.requires_grad_()))
    return path_of(nodes)


def path_of(nodes: set[str]) -> str:
    """The path whose autograd node is among nodes (exactly one must be)."""
    ran = [path for path, node in PATH_NODES.items() if node in nodes]
    assert len(ran) == 1, f"expected the nodes of exactly one path, got {sorted(nodes)}"
    return ran[0]


@pytest.fixture
def log_lines() -> list[str]:
    """Messages Ultralytics' LOGGER emits during the test (it does not propagate to pytest's caplog)."""
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    yield lines
    LOGGER.removeHandler(handler)


@pytest.fixture
def deterministic() -> None:
    """PyTorch's deterministic mode with errors, not warnings, for ops without a deterministic implementation."""
    previous, previous_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=False)
    yield
    torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def test_default_is_auto_and_torch_means_auto():
    """The default is "auto"; "torch", the original's only name, is stored as "auto", in the constructor and later."""
    assert BiLevelRoutingAttention_nchw(DIM).attn_backend == AUTO
    m = BiLevelRoutingAttention_nchw(DIM, attn_backend="torch")
    assert m.attn_backend == AUTO
    m.attn_backend = PER_ROUTE
    m.attn_backend = "torch"
    assert m.attn_backend == AUTO


@pytest.mark.parametrize("path", PATHS)
def test_switch_selects_the_path_run(path: str, monkeypatch: pytest.MonkeyPatch):
    """Setting `attn_backend` on a built module runs that path, whatever $BIFORMER_ATTN_BACKEND says."""
    other = next(p for p in PATHS if p != path)
    monkeypatch.setenv(ENV_VAR, other)
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2)
    m.attn_backend = path
    assert path_run(m, torch.randn(2, DIM, 20, 15)) == path


@pytest.mark.parametrize("path", PATHS)
def test_environment_overrides_auto(path: str, monkeypatch: pytest.MonkeyPatch):
    """$BIFORMER_ATTN_BACKEND decides for layers left at "auto" (the `yolo` CLI's switch)."""
    monkeypatch.setenv(ENV_VAR, path)
    assert path_run(BiLevelRoutingAttention_nchw(DIM, num_heads=2), torch.randn(2, DIM, 20, 15)) == path


def test_environment_auto_and_torch_leave_the_rule(monkeypatch: pytest.MonkeyPatch):
    """ "auto" and "torch" in the environment variable leave the choice to the rule (per_route at 20x15 on CPU)."""
    for value in (AUTO, "torch"):
        monkeypatch.setenv(ENV_VAR, value)
        assert path_run(BiLevelRoutingAttention_nchw(DIM), torch.randn(1, DIM, 20, 15)) == PER_ROUTE


def inference_path(m: BiLevelRoutingAttention_nchw, x: torch.Tensor) -> str:
    """The path a no-grad forward of m on x ran, read from the profiler: the gather path calls fused SDPA, the
    per-route path never does."""
    with torch.no_grad(), torch.profiler.profile() as prof:
        m(x)
    ops = {e.key for e in prof.key_averages()}
    return GATHER if "aten::scaled_dot_product_attention" in ops else PER_ROUTE


@pytest.mark.parametrize(
    "limit, run",
    [(PER_ROUTE_MAX_TOKENS_INFERENCE, inference_path), (PER_ROUTE_MAX_TOKENS_TRAINING, path_run)],
    ids=["inference", "training"],
)
def test_auto_on_cpu_follows_region_size(limit: int, run, monkeypatch: pytest.MonkeyPatch):
    """On CPU, `auto` runs per_route up to the limit of tokens per region (inference's or training's) and gather
    above, at the boundary."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    m = BiLevelRoutingAttention_nchw(DIM, n_win=1, topk=1)  # one region: the map's size is the region's
    side = 8 if limit == 64 else 12
    assert side * side == limit
    assert run(m, torch.randn(1, DIM, side, side)) == PER_ROUTE
    assert run(m, torch.randn(1, DIM, side, side + 1)) == GATHER


INFERENCE, TRAINING = PER_ROUTE_MAX_TOKENS_INFERENCE, PER_ROUTE_MAX_TOKENS_TRAINING


@pytest.mark.parametrize(
    "args, expected",
    [
        ((CPU, 25, False, False, False), PER_ROUTE),
        ((CPU, INFERENCE, False, False, False), PER_ROUTE),
        ((CPU, INFERENCE + 1, False, False, False), GATHER),
        ((CPU, INFERENCE + 1, False, False, True), PER_ROUTE),  # 80x80 training: per_route, a quarter less memory
        ((CPU, TRAINING, False, False, True), PER_ROUTE),
        ((CPU, TRAINING + 1, False, False, True), GATHER),
        ((CPU, 10_000, True, False, False), PER_ROUTE),  # the weights returned: no gathered copy
        ((CPU, 25, False, True, False), GATHER),  # dynamic trace
        ((CUDA, 25, False, False, True), GATHER),
        ((CUDA, 25, True, False, False), PER_ROUTE),
        ((CUDA, 25, True, True, False), GATHER),
    ],
    ids=[
        "cpu-small",
        "cpu-inference-limit",
        "cpu-inference-large",
        "cpu-training-80x80",
        "cpu-training-limit",
        "cpu-training-large",
        "cpu-weights",
        "cpu-dynamic",
        "cuda",
        "cuda-weights",
        "cuda-weights-dynamic",
    ],
)
def test_auto_rule(args: tuple, expected: str):
    """The documented `auto` rule (docs/gpu.md): device, region size, need_weights, tracing and training."""
    choice = auto_path(*args)
    assert choice.path == expected and choice.reason


@pytest.mark.parametrize("value", ["cuda", "fused", "", None, 1])
def test_bad_backend_refused(value: object):
    """Unknown names are refused in the constructor and the setter, naming the module, the argument and the values."""
    fragments = ["BiLevelRoutingAttention_nchw", "attn_backend", str(ATTN_BACKENDS), repr(value)]
    with pytest.raises(ValueError) as error:
        BiLevelRoutingAttention_nchw(DIM, attn_backend=value)
    assert all(f in str(error.value) for f in fragments), error.value
    m = BiLevelRoutingAttention_nchw(DIM, attn_backend=PER_ROUTE)
    with pytest.raises(ValueError) as error:
        m.attn_backend = value
    assert all(f in str(error.value) for f in fragments), error.value
    assert m.attn_backend == PER_ROUTE


def test_bad_environment_refused(monkeypatch: pytest.MonkeyPatch):
    """An unknown name in $BIFORMER_ATTN_BACKEND fails the first forward, naming the variable and the values."""
    monkeypatch.setenv(ENV_VAR, "flash")
    with pytest.raises(ValueError, match=rf"\${ENV_VAR} must be one of .*'gather'.*got 'flash'"):
        BiLevelRoutingAttention_nchw(DIM)(torch.randn(1, DIM, 7, 7))


def traced_dynamic(m: BiLevelRoutingAttention_nchw) -> torch.jit.ScriptModule:
    """Trace m with symbolic sizes, as Ultralytics' exporter does for `dynamic=True` (tracer warnings silenced)."""
    m.dynamic = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(m.eval(), torch.randn(1, DIM, 20, 15))


def test_dynamic_trace_refuses_per_route():
    """per_route cannot serve a dynamic trace (the route count is symbolic): requested there, it fails clearly."""
    with pytest.raises(ValueError, match=r"BiLevelRoutingAttention_nchw: attn_backend 'per_route' cannot run in a dyn"):
        traced_dynamic(BiLevelRoutingAttention_nchw(DIM, attn_backend=PER_ROUTE))


def test_environment_per_route_gives_way_in_dynamic_trace(monkeypatch: pytest.MonkeyPatch, log_lines: list[str]):
    """The variable only changes what `auto` means: its per_route yields to gather in a dynamic trace (an export
    after training with it set still works), and the log says so; outside the trace it runs per_route."""
    monkeypatch.setenv(ENV_VAR, PER_ROUTE)
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2)
    traced = traced_dynamic(m)
    x = torch.randn(2, DIM, 13, 9)
    assert torch.allclose(traced(x), m(x), atol=1e-6)
    assert any(f"{GATHER} attention (${ENV_VAR}={PER_ROUTE} cannot serve a dynamic trace" in line for line in log_lines)
    assert path_run(m, x) == PER_ROUTE


@pytest.mark.parametrize("backend", [AUTO, GATHER])
def test_dynamic_trace_runs_gather(backend: str, log_lines: list[str]):
    """`auto` and gather trace a dynamic graph that serves other sizes, and the log names the gather path."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2, attn_backend=backend)
    traced = traced_dynamic(m)
    x = torch.randn(2, DIM, 13, 9)
    assert torch.allclose(traced(x), m(x), atol=1e-6)
    assert any(f"{GATHER} attention" in line for line in log_lines)


def test_path_logged_once_per_layer_and_path(log_lines: list[str], monkeypatch: pytest.MonkeyPatch):
    """Each layer logs the path it runs, with the reason, once per path; another layer logs its own."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    first, second = BiLevelRoutingAttention_nchw(DIM), BiLevelRoutingAttention_nchw(DIM)
    x = torch.randn(1, DIM, 14, 14)
    for _ in range(3):
        first(x)
    first.attn_backend = GATHER
    first(x)
    first(x)
    second(x)
    paths = [line for line in log_lines if "attention (" in line]
    auto = f"BiLevelRoutingAttention_nchw(dim={DIM}, heads=1): {PER_ROUTE} attention (cpu training, 4 <= {TRAINING} "
    assert paths == [
        auto + "tokens per region)",
        f"BiLevelRoutingAttention_nchw(dim={DIM}, heads=1): {GATHER} attention (requested)",
        auto + "tokens per region)",
    ]


def test_backend_survives_checkpoints(log_lines: list[str]):
    """The requested path is saved with the pickled module and restored; what was logged is not: the loaded layer
    logs its path again."""
    m = BiLevelRoutingAttention_nchw(DIM, attn_backend=GATHER)
    x = torch.randn(1, DIM, 7, 7)
    m(x)
    assert m in _LOGGED and len(log_lines) == 1
    buffer = io.BytesIO()
    torch.save(m, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.attn_backend == GATHER
    loaded(x)
    assert len(log_lines) == 2 and log_lines[0] == log_lines[1]


@pytest.mark.parametrize("path", PATHS)
def test_deterministic_mode_forward_backward(path: str, deterministic: None):
    """Every path runs forward and backward under torch.use_deterministic_algorithms(True, warn_only=False) on CPU,
    padded map included, and two runs give bit-identical outputs and gradients."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2, attn_backend=path)
    x = torch.randn(2, DIM, 20, 15)
    runs = []
    for _ in range(2):
        xi = x.clone().requires_grad_()
        out = m(xi)
        grads = torch.autograd.grad(out.square().sum(), [xi, *m.parameters()])
        runs.append((out.detach(), *grads))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
