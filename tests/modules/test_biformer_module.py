# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BiFormer module contracts: parameters, gradients, dtypes, errors, old checkpoints."""

from __future__ import annotations

import copy
import importlib
import io
import types
from collections.abc import Callable

import pytest
import torch
from torch import nn
from ultralytics.nn.modules import Conv, HGBlock

import ultralytics.nn.AddModules as add_modules
from ultralytics.nn.AddModules import routed_attention

from tolerances import ATTENTION_PEAKING, BF16_RELATIVE_TOLERANCE, norm_relative_error
from ultralytics.nn.AddModules import (
    AttentionLePE,
    Biformer,
    BiLevelRoutingAttention,
    BiLevelRoutingAttention_nchw,
    HGBlock_Biformer,
    KVGather,
    TopkRouting,
    regional_routing_attention_torch,
)

DIM = 16
P5_DIM = 1024  # channels of RT-DETR-l's P5 map, where the YAMLs put BRA
BRA_P5_PARAMS = 4_208_640  # spec: BiLevelRoutingAttention_nchw(1024)
HGBLOCK_BIFORMER_PARAMS = 5_904_000  # spec: HGBlock_Biformer(512, 192, 1024, 5, 6, True, False)
FP16_TOLERANCE = 5e-3  # fp16 weights and inputs vs fp32, same measure
TUTORIAL_ATTRIBUTES = {  # what the tutorial fork's BiLevelRoutingAttention_nchw pickles besides nn.Module internals
    "dim", "num_heads", "head_dim", "scale", "lepe", "topk", "n_win", "qkv_linear", "output_linear", "attn_fn",
}  # fmt: skip
MODULE_INTERNALS = set(vars(nn.Module()))


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference relative to the reference's max magnitude."""
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def small_modules() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """One small instance of each attention module with an input shape that needs padding."""
    return {
        "nchw": (BiLevelRoutingAttention_nchw(DIM, num_heads=2, n_win=3, topk=3), (2, DIM, 10, 7)),
        "hgblock": (HGBlock_Biformer(8, 8, DIM, k=3, n=2, lightconv=True), (2, 8, 10, 7)),
        "legacy": (BiLevelRoutingAttention(DIM, n_win=3, num_heads=2, topk=3, soft_routing=True), (2, DIM, 10, 7)),
        "lepe": (AttentionLePE(DIM, num_heads=2), (2, DIM, 5, 4)),
    }


# 1. Parameter names and shapes


def test_bra_nchw_parameters():
    """Names and shapes of the spec (tutorial/original state dicts interchange); 4,208,640 parameters at dim 1024."""
    m = BiLevelRoutingAttention_nchw(P5_DIM)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "qkv_linear.weight": (3 * P5_DIM, P5_DIM, 1, 1),
        "qkv_linear.bias": (3 * P5_DIM,),
        "output_linear.weight": (P5_DIM, P5_DIM, 1, 1),
        "output_linear.bias": (P5_DIM,),
        "lepe.weight": (P5_DIM, 1, 3, 3),
        "lepe.bias": (P5_DIM,),
    }
    assert sum(p.numel() for p in m.parameters()) == BRA_P5_PARAMS
    assert m.scale == P5_DIM**-0.5
    assert "lepe.weight" not in BiLevelRoutingAttention_nchw(DIM, side_dwconv=0).state_dict()


def test_hgblock_biformer_parameters():
    """Upstream HGBlock's parameters (same names) plus a BRA on c2: 5,904,000 for the YAML's stage-3 block."""
    args = (512, 192, P5_DIM, 5, 6, True, False)
    m, upstream = HGBlock_Biformer(*args), HGBlock(*args)
    assert sum(p.numel() for p in m.parameters()) == HGBLOCK_BIFORMER_PARAMS
    expected = {k: v.shape for k, v in upstream.state_dict().items()}
    expected |= {f"cv.{k}": v.shape for k, v in BiLevelRoutingAttention_nchw(P5_DIM).state_dict().items()}
    assert {k: v.shape for k, v in m.state_dict().items()} == expected
    assert type(m.sc) is Conv and type(m.ec) is Conv and not m.add
    assert HGBlock_Biformer(16, 8, 16, 3, 2, False, True).add


def test_legacy_parameters():
    """Legacy BRA and AttentionLePE keep the original BiFormer parameter names and shapes."""
    m = BiLevelRoutingAttention(DIM, qk_dim=8, param_routing=True, diff_routing=True, soft_routing=True)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {
        "lepe.weight": (DIM, 1, 3, 3),
        "lepe.bias": (DIM,),
        "router.emb.weight": (8, 8),
        "router.emb.bias": (8,),
        "qkv.qkv.weight": (2 * 8 + DIM, DIM),
        "qkv.qkv.bias": (2 * 8 + DIM,),
        "wo.weight": (DIM, DIM),
        "wo.bias": (DIM,),
    }
    assert set(BiLevelRoutingAttention(DIM, param_attention="qkv").state_dict()) == {
        "lepe.weight", "lepe.bias", "qkv.qkv.weight", "qkv.qkv.bias",
    }  # fmt: skip
    assert {k: tuple(v.shape) for k, v in AttentionLePE(DIM).state_dict().items()} == {
        "qkv.weight": (3 * DIM, DIM),
        "proj.weight": (DIM, DIM),
        "proj.bias": (DIM,),
        "lepe.weight": (DIM, 1, 5, 5),
        "lepe.bias": (DIM,),
    }


def test_public_names():
    """The package re-exports exactly Biformer.__all__, which shadows no upstream name (Conv stays upstream's)."""
    assert tuple(add_modules.__all__) == tuple(Biformer.__all__)
    assert all(getattr(add_modules, name) is getattr(Biformer, name) for name in Biformer.__all__)
    import ultralytics.nn.modules as upstream

    assert not set(Biformer.__all__) & set(upstream.__all__)
    assert Biformer.Conv is Conv


# 4. Gradients


def gradcheck_module(m: nn.Module, x: torch.Tensor) -> bool:
    """Gradcheck a float64 module with respect to its input and every parameter."""
    names, params = zip(*m.named_parameters(), strict=True)

    def run(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(m, dict(zip(names, values, strict=True)), (x,))

    inputs = (x.requires_grad_(), *(p.detach().clone().requires_grad_() for p in params))
    return torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("size", [(4, 4), (5, 3)])
def test_gradcheck_bra_nchw(size: tuple[int, int]):
    """Float64 gradcheck of BRA_nchw (with and without padding) in its input and parameters."""
    m = BiLevelRoutingAttention_nchw(4, num_heads=2, n_win=2, topk=2).double()
    assert gradcheck_module(m, torch.randn(2, 4, *size, dtype=torch.float64))


@pytest.mark.parametrize(
    "options", [dict(), dict(soft_routing=True, diff_routing=True, param_routing=True)], ids=["plain", "soft-diff"]
)
def test_gradcheck_bra_legacy(options: dict):
    """Float64 gradcheck of the legacy BRA (padded input) in its input and parameters."""
    m = BiLevelRoutingAttention(4, n_win=2, num_heads=2, topk=2, **options).double()
    assert gradcheck_module(m, torch.randn(1, 4, 5, 3, dtype=torch.float64))


def test_gradcheck_regional_routing_attention():
    """Float64 gradcheck of the token-to-token function with padding and a different key region size."""
    q = torch.randn(1, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    graph = torch.tensor([[2, 0], [1, 3], [3, 2], [0, 1], [1, 0], [2, 3]]).view(1, 1, 6, 2).expand(1, 2, 6, 2)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return regional_routing_attention_torch(q, k, v, 0.5, graph, region_size=(2, 2), kv_region_size=(2, 2))[0]

    assert torch.autograd.gradcheck(run, (q, k, v))


def routed_inputs(masked: bool) -> tuple[torch.Tensor, ...]:
    """Float64 q, k, v of `routed_attention.RoutedAttention` (B'=2, Rq=Rk=3, Tq=Tk=2, d=3, dv=2), routes, optional mask.

    Returns:
        (tuple[torch.Tensor, ...]): q, k, v requiring grad; index (topk=2, B'*Rq) into the B'*Rk key regions, with a
            region routed twice; mask (B', Rq, 1, topk*Tk) with one allowed key per row at least, or None.
    """
    q = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([[0, 2, 1, 5, 3, 4], [1, 2, 0, 3, 4, 3]])
    mask = torch.rand(2, 3, 1, 4) > 0.5 if masked else None
    if mask is not None:
        mask[..., 0] = True
    return q, k, v, index, mask


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_gradcheck_routed_attention_function(masked: bool):
    """Float64 gradcheck of the recomputing autograd Function of the per-route path, with and without a key mask."""
    q, k, v, index, mask = routed_inputs(masked)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return routed_attention.RoutedAttention.apply(q, k, v, index, 0.7, mask)

    assert torch.autograd.gradcheck(run, (q, k, v))


def routed_reference(q, k, v, index, scale, mask) -> torch.Tensor:
    """Float64 loop over query regions: attention to the concatenated tokens of the regions `index` routes it to."""
    b, rq, tq, _ = q.shape
    keys, values = k.flatten(0, 1), v.flatten(0, 1)  # (B'*Rk, Tk, d): the flat regions index points into
    rows = []
    for row in range(b * rq):
        kr = torch.cat([keys[i] for i in index[:, row].tolist()])  # (topk*Tk, d)
        vr = torch.cat([values[i] for i in index[:, row].tolist()])
        logits = scale * q.flatten(0, 1)[row] @ kr.T
        if mask is not None:
            logits = logits.masked_fill(~mask.flatten(0, 1)[row], float("-inf"))
        rows.append(logits.softmax(-1) @ vr)
    return torch.stack(rows).view(b, rq, tq, -1)


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_routed_attention_function_matches_reference(masked: bool):
    """The Function's output and gradients equal a float64 loop reference's (autograd of the reference)."""
    q, k, v, index, mask = routed_inputs(masked)
    out = routed_attention.RoutedAttention.apply(q, k, v, index, 0.7, mask)
    ref = routed_reference(q, k, v, index, 0.7, mask)
    assert (out - ref).abs().max() <= 1e-12
    weights = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), weights)
    ref_grads = torch.autograd.grad(ref, (q, k, v), weights)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert ref_grad.abs().max() > 1e-3  # every input gets a gradient worth comparing
        assert (grad - ref_grad).abs().max() <= 1e-12


def test_bra_nchw_training_keeps_no_gathered_kv():
    """With a gradient recorded, BRA_nchw on the per-route path saves for backward only what it must: no per-route
    gathered K or V (the memory the recomputing Function saves), so the bytes saved stay within one K of an exact
    budget; without a gradient (inference, FLOPs counting, export) nothing is saved."""
    n, heads, side, topk = 2, 2, 20, 4
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=heads, n_win=7, topk=topk, attn_backend="per_route")
    regions, tokens, fp32, int64 = 10 * 10, 2 * 2, 4, 8
    k_bytes = n * DIM * side * side * fp32  # the size of K, of V, of the input and of the output projection's input
    budget = (
        k_bytes  # x, for the qkv projection's weight gradient
        + 3 * k_bytes  # the qkv projection's output (v for the LCE convolution is a view of it)
        + 3 * k_bytes  # q, k, v in one region-major copy
        + k_bytes  # the output projection's input
        + n * heads * regions * tokens * topk * tokens * fp32  # attention probabilities
        + topk * n * heads * regions * int64  # the routes
        + sum(p.numel() for p in m.parameters()) * fp32  # weights (an upper bound: biases are not saved)
    )
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(n, DIM, side, side, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(x).sum().backward()
    saved = sum(storages.values())
    assert budget - k_bytes < saved <= budget, f"saved {saved} bytes, budget {budget}, one K is {k_bytes}"
    storages.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.no_grad():
        m(x)
    assert not storages


def input_gradient(m: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Gradient of (m(x) * weights).sum() with respect to x."""
    x = x.detach().clone().requires_grad_()
    (m(x) * weights).sum().backward()
    return x.grad


def test_routing_receives_no_gradient_legacy():
    """With soft routing, gradients equal those of the same forward with the router's outputs held constant."""
    x = torch.randn(2, DIM, 9, 9, dtype=torch.float64)
    weights = torch.randn(2, DIM, 9, 9, dtype=torch.float64)
    for diff_routing in (False, True):
        m = BiLevelRoutingAttention(DIM, n_win=3, num_heads=2, soft_routing=True, diff_routing=diff_routing).double()
        frozen = copy.deepcopy(m)
        frozen.router.forward = lambda q, k, route=frozen.router.forward: tuple(t.detach() for t in route(q, k))
        same = torch.equal(input_gradient(m, x, weights), input_gradient(frozen, x, weights))
        assert same != diff_routing  # only differentiable routing passes gradient (the control proves we would see it)


def test_bra_nchw_is_token_attention_over_its_routes():
    """BRA_nchw's output and input gradient equal regional_routing_attention_torch's with the module's routed regions
    given as constants (routing is a hard top-k: no gradient reaches q and k through it)."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2, n_win=3).double()
    x = torch.randn(2, DIM, 10, 7, dtype=torch.float64)
    weights = torch.randn(2, DIM, 10, 7, dtype=torch.float64)
    routed = []
    m.register_routing_hook(lambda module, routing: routed.append(routing.routes))
    out = m(x)
    assert len(routed) == 1

    def constant_routing(x: torch.Tensor) -> torch.Tensor:
        """The module's forward with the recorded routed regions in place of routing."""
        q, k, v = m.qkv_linear(x).chunk(3, dim=1)
        graph = routed[0][:, None].expand(-1, m.num_heads, -1, -1).clone()  # a constant: no autograd history
        region_size = (x.shape[2] // m.n_win, x.shape[3] // m.n_win)
        attended = regional_routing_attention_torch(q, k, v, m.scale, graph, region_size)[0]
        return m.output_linear(attended + m.lepe(v))

    assert torch.allclose(out, constant_routing(x), rtol=0, atol=1e-12)
    assert torch.allclose(
        input_gradient(m, x, weights), input_gradient(constant_routing, x, weights), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("name", small_modules())
def test_every_parameter_receives_gradient(name: str):
    """A backward pass reaches every parameter with a non-zero gradient."""
    options = {"legacy": dict(diff_routing=True, param_routing=True)}.get(name)
    m, shape = small_modules()[name]
    if options:
        m = BiLevelRoutingAttention(DIM, n_win=3, num_heads=2, topk=3, soft_routing=True, **options)
    (m(torch.randn(shape)) * torch.randn(shape[0], DIM, *shape[2:])).sum().backward()
    missing = [k for k, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"no gradient: {missing}"


# 5. Dtypes


def cpu_half_support() -> str | None:
    """Return why CPU half precision cannot run the modules' ops, or None when it can."""
    try:
        x = torch.randn(1, 4, 5, 5, dtype=torch.half)
        torch.nn.functional.conv2d(x, torch.randn(4, 1, 3, 3, dtype=torch.half), groups=4)
        q = torch.randn(2, 3, 4, dtype=torch.half)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(2, 1, 3, dtype=torch.bool))
    except RuntimeError as e:
        return f"CPU half precision unsupported by this torch build: {e}"
    return None


def pin_routing(m: nn.Module) -> nn.Module:
    """Make every router in m (BRA_nchw._route, TopkRouting) reuse what it returned on its first call.

    Routing ranks region affinities in fp32, but from q and k computed in the running precision, and hard top-k
    selection may flip a near tie between precisions. Comparing precisions under the same routing measures the
    arithmetic alone.
    """
    routers = [(b, "_route") for b in m.modules() if isinstance(b, BiLevelRoutingAttention_nchw)]
    routers += [(r, "forward") for r in m.modules() if isinstance(r, TopkRouting)]
    for owner, attribute in routers:
        setattr(owner, attribute, replaying(getattr(owner, attribute)))
    return m


def replaying(call: Callable) -> Callable:
    """Wrap call so that every call returns what the first one returned."""
    first: list = []

    def replay(*args: torch.Tensor) -> object:
        """Return the first call's result, computing it on the first call."""
        if not first:
            first.append(call(*args))
        return first[0]

    return replay


@pytest.mark.parametrize("name", small_modules())
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_bf16_autocast_cpu(name: str, train: bool):
    """bf16 autocast on CPU with float weights: output and (training) parameter gradients near fp32's, norm-wise."""
    m, shape = small_modules()[name]
    m = pin_routing(m.train(train))
    x = ATTENTION_PEAKING * torch.randn(shape)
    weights = torch.randn(shape[0], DIM, *shape[2:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    ref = m(x)
    assert out.dtype == torch.bfloat16
    assert norm_relative_error(out, ref) <= BF16_RELATIVE_TOLERANCE
    if train:  # the attention layers' own parameters (HGBlock's convolutions and BatchNorm are upstream's)
        named = [(k, p) for k, p in m.named_parameters() if not k.startswith(("m.", "sc.", "ec."))]
        params = [p for _, p in named]
        grads = torch.autograd.grad((out.float() * weights).sum(), params)
        ref_grads = torch.autograd.grad((ref * weights).sum(), params)
        for (key, _), grad, ref_grad in zip(named, grads, ref_grads, strict=True):
            assert grad.dtype == torch.float32, key
            assert norm_relative_error(grad, ref_grad) <= BF16_RELATIVE_TOLERANCE, key


def test_routing_stays_fp32_under_bf16_autocast():
    """Under bf16 autocast, both routers rank region affinities computed in fp32 (no bf16 near-tie flips)."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2, n_win=3)
    x = torch.randn(2, DIM, 10, 7)
    router = TopkRouting(DIM, topk=3)
    region_q, region_k = torch.randn(2, 9, DIM), torch.randn(2, 9, DIM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.qkv_linear(x).dtype == torch.bfloat16  # the projections do run in bf16
        routings = []
        handle = m.register_routing_hook(lambda module, routing: routings.append(routing))
        m(x)
        handle.remove()
        assert routings[0].affinity.dtype == torch.float32
        weights, _ = router(region_q.bfloat16(), region_k.bfloat16())
    assert weights.dtype == torch.float32


def test_bf16_autocast_attention_matrix():
    """The attention-matrix path (ret_attn_mask) also runs under bf16 autocast and matches fp32, norm-wise."""
    m = pin_routing(BiLevelRoutingAttention_nchw(DIM, num_heads=2, n_win=3).eval())
    x = torch.randn(2, DIM, 10, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, attn = m(x, ret_attn_mask=True)
    ref, ref_attn = m(x, ret_attn_mask=True)
    assert norm_relative_error(out, ref) <= BF16_RELATIVE_TOLERANCE
    assert norm_relative_error(attn, ref_attn) <= BF16_RELATIVE_TOLERANCE


def test_bf16_autocast_input_gradient_bra_nchw():
    """Under bf16 autocast the recomputing backward gives the fp32 input gradient within BF16_RELATIVE_TOLERANCE."""
    m = pin_routing(BiLevelRoutingAttention_nchw(DIM, num_heads=2, n_win=3, topk=3))
    x = ATTENTION_PEAKING * torch.randn(2, DIM, 10, 7)
    weights = torch.randn(2, DIM, 10, 7)
    ref = input_gradient(m, x, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grad = input_gradient(m, x, weights)
    assert grad.dtype == torch.float32
    assert norm_relative_error(grad, ref) <= BF16_RELATIVE_TOLERANCE


@pytest.mark.parametrize("name", small_modules())
def test_half_cpu(name: str):
    """Half weights with half inputs (Ultralytics' half validation) run on CPU where supported."""
    if reason := cpu_half_support():
        pytest.skip(reason)
    m, shape = small_modules()[name]
    m = pin_routing(m.eval())
    x = torch.randn(shape)
    out = m.half()(x.half())
    assert out.dtype == torch.half
    ref = m.float()(x)
    assert relative_error(out, ref) <= FP16_TOLERANCE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", small_modules())
def test_cuda_half_and_autocast(name: str, dtype: torch.dtype):
    """On CUDA: autocast with float weights and half/bf16 weights with matching inputs, both near fp32."""
    m, shape = small_modules()[name]
    m = pin_routing(m.cuda().eval())
    x = torch.randn(shape, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = m(x)
    ref = m(x)
    assert out.dtype == dtype and norm_relative_error(out, ref) <= BF16_RELATIVE_TOLERANCE
    out = m.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and norm_relative_error(out, ref) <= BF16_RELATIVE_TOLERANCE


# 6. Argument errors

DIVISORS_30 = "[1, 2, 3, 5, 6, 10, 15, 30]"  # the allowed num_heads for dim=30
KV_MODES = "'identity', 'avgpool', 'maxpool', 'ada_avgpool', 'ada_maxpool'"
BRA, LEGACY = BiLevelRoutingAttention_nchw, BiLevelRoutingAttention


def rrsda(size: tuple[int, int], query_regions: int, **kwargs) -> None:
    """Call regional_routing_attention_torch on (1, 4, *size) maps with 2x2 regions and an all-zero region graph."""
    graph = torch.zeros(1, 1, query_regions, 1, dtype=torch.long)
    regional_routing_attention_torch(*[torch.randn(1, 4, *size)] * 3, 1.0, graph, (2, 2), **kwargs)


ERRORS = [  # (what raises, fragments its message must contain)
    pytest.param(lambda: BRA(30, num_heads=8), [BRA.__name__, "num_heads", DIVISORS_30], id="dim-heads"),
    pytest.param(lambda: LEGACY(30, num_heads=8), [LEGACY.__name__, "num_heads", DIVISORS_30], id="legacy-dim-heads"),
    pytest.param(lambda: LEGACY(16, num_heads=4, qk_dim=6), ["qk_dim=6", "num_heads", "[1, 2, 3, 6]"], id="qk_dim"),
    pytest.param(lambda: AttentionLePE(10, num_heads=4), ["AttentionLePE", "num_heads", "[1, 2, 5, 10]"], id="lepe"),
    pytest.param(lambda: BRA(16, n_win=0), [BRA.__name__, "n_win", ">= 1"], id="n_win"),
    pytest.param(lambda: LEGACY(16, n_win=0), [LEGACY.__name__, "n_win", ">= 1"], id="legacy-n_win"),
    pytest.param(lambda: BRA(16, topk=0), ["topk", ">= 1"], id="topk"),
    pytest.param(lambda: LEGACY(16, topk=0), ["topk", ">= 1"], id="legacy-topk"),
    pytest.param(lambda: TopkRouting(16, topk=0), ["TopkRouting", "topk", ">= 1"], id="router-topk"),
    pytest.param(lambda: BRA(16, side_dwconv=2), ["side_dwconv", "0", "odd"], id="side_dwconv"),
    pytest.param(
        lambda: BRA(16, attn_backend="cuda"),
        [BRA.__name__, "attn_backend", "('auto', 'gather', 'per_route', 'torch')", "'cuda'"],
        id="attn_backend",
    ),
    pytest.param(
        lambda: LEGACY(16, kv_downsample_mode="bilinear"),
        ["kv_downsample_mode", "'bilinear'", KV_MODES],
        id="kv_downsample_mode",
    ),
    pytest.param(
        lambda: LEGACY(16, kv_downsample_mode="fracpool"),
        ["kv_downsample_mode='fracpool'", "not implemented", KV_MODES],
        id="fracpool",
    ),
    pytest.param(
        lambda: LEGACY(16, kv_downsample_mode="conv"), ["kv_downsample_mode='conv'", "not implemented"], id="conv"
    ),
    pytest.param(
        lambda: LEGACY(16, kv_downsample_mode="ada_avgpool", kv_per_win=0), ["kv_per_win", ">= 1"], id="kv_per_win"
    ),
    pytest.param(
        lambda: LEGACY(16, kv_downsample_mode="avgpool", kv_downsample_ratio=0),
        ["kv_downsample_ratio", ">= 1"],
        id="kv_downsample_ratio",
    ),
    pytest.param(
        lambda: LEGACY(16, param_attention="qkvr"),
        ["param_attention", "'qkvr'", "('qkvo', 'qkv')"],
        id="param_attention",
    ),
    pytest.param(
        lambda: LEGACY(16, param_routing=True), ["param_routing=True", "diff_routing=True"], id="param_routing"
    ),
    pytest.param(
        lambda: LEGACY(16, diff_routing=True),
        ["diff_routing=True", "soft_routing", "not implemented"],
        id="hard-routing",
    ),
    pytest.param(lambda: KVGather("weighted"), ["KVGather", "mul_weight", "('none', 'soft', 'hard')"], id="kv_gather"),
    pytest.param(
        lambda: KVGather("hard"), ["KVGather", "mul_weight='hard'", "not implemented", "'soft'"], id="kv_gather-hard"
    ),
    pytest.param(
        lambda: BRA(16)(torch.randn(16, 7, 7)), [BRA.__name__, "4D", "(N, C, H, W)", "(16, 7, 7)"], id="input-3d"
    ),
    pytest.param(
        lambda: BRA(16)(torch.randn(1, 8, 7, 7)), [BRA.__name__, "16 input channels", "got 8"], id="input-channels"
    ),
    pytest.param(lambda: LEGACY(16)(torch.randn(16, 7, 7)), [LEGACY.__name__, "4D"], id="legacy-input-3d"),
    pytest.param(
        lambda: LEGACY(16)(torch.randn(1, 8, 7, 7)), ["16 input channels", "got 8"], id="legacy-input-channels"
    ),
    pytest.param(
        lambda: AttentionLePE(16)(torch.randn(1, 8, 7, 7)), ["AttentionLePE", "16 input channels"], id="lepe-channels"
    ),
    pytest.param(
        lambda: LEGACY(16, n_win=3, auto_pad=False)(torch.randn(1, 16, 7, 9)),
        ["7x9", "n_win=3", "auto_pad=True"],
        id="legacy-no-auto_pad",
    ),
    pytest.param(
        lambda: LEGACY(16, n_win=7, kv_downsample_mode="avgpool")(torch.randn(1, 16, 20, 20)),
        ["kv_downsample_ratio=4", "3x3"],
        id="legacy-pool-region",
    ),
    pytest.param(
        lambda: rrsda((5, 4), 6, auto_pad=False),
        ["regional_routing_attention_torch", "auto_pad=True"],
        id="rrsda-auto_pad",
    ),
    pytest.param(lambda: rrsda((4, 4), 3), ["region_graph has 3 query regions", "gives 4"], id="rrsda-graph"),
]


@pytest.mark.parametrize("make, fragments", ERRORS)
def test_argument_errors(make: Callable[[], object], fragments: list[str]):
    """Bad arguments raise ValueError (NotImplementedError for known, unimplemented options) naming them."""
    with pytest.raises((ValueError, NotImplementedError)) as info:
        make()
    missing = [f for f in fragments if f not in str(info.value)]
    assert not missing, f"{str(info.value)!r} lacks {missing}"


# 7. Old checkpoints


def tutorial_pickle(m: nn.Module) -> bytes:
    """Pickle m (legacy torch.save format) the way the tutorial fork did.

    Every BiLevelRoutingAttention_nchw carries `attn_fn`, a reference to regional_routing_attention_torch, and no
    attention path, and upstream's Conv is written as `ultralytics.nn.AddModules.Biformer.Conv` (the tutorial's own
    copy of it).
    """
    m = copy.deepcopy(m)
    for module in m.modules():
        if isinstance(module, BiLevelRoutingAttention_nchw):
            module.__dict__["attn_fn"] = regional_routing_attention_torch
            del module.__dict__["_attn_backend"]
    buffer = io.BytesIO()
    torch.save(m, buffer, _use_new_zipfile_serialization=False)  # protocol 2: globals are plain "module\nname\n" text
    upstream, tutorial = b"cultralytics.nn.modules.conv\nConv\n", b"cultralytics.nn.AddModules.Biformer\nConv\n"
    data = buffer.getvalue()
    return data.replace(upstream, tutorial) if upstream in data else data


def load(data: bytes) -> nn.Module:
    """Unpickle a whole-module checkpoint."""
    return torch.load(io.BytesIO(data), weights_only=False)


def test_tutorial_attributes():
    """Our BRA_nchw carries exactly the tutorial's attributes, minus attn_fn and plus the attention path (which
    their pickles lack: they load as "auto"), so its forward runs on their pickles."""
    m = BiLevelRoutingAttention_nchw(DIM)
    assert (set(vars(m)) - MODULE_INTERNALS) | set(m._modules) == TUTORIAL_ATTRIBUTES - {"attn_fn"} | {"_attn_backend"}


@pytest.mark.parametrize("size", [(14, 14), (7, 21)])
def test_tutorial_pickle_bra_nchw(size: tuple[int, int]):
    """A tutorial-pickled BRA_nchw (with attn_fn) loads, drops attn_fn, gives the same outputs and re-pickles clean."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2).eval()
    data = tutorial_pickle(m)
    assert b"regional_routing_attention_torch" in data
    assert b"_attn_backend" not in data
    loaded = load(data)
    assert type(loaded) is BiLevelRoutingAttention_nchw and "attn_fn" not in vars(loaded)
    assert loaded.attn_backend == "auto"
    x = torch.randn(2, DIM, *size)
    assert torch.equal(loaded(x), m(x))
    assert b"regional_routing_attention_torch" not in saved_bytes(loaded)


def saved_bytes(m: nn.Module) -> bytes:
    """Pickle m with torch.save, unchanged."""
    buffer = io.BytesIO()
    torch.save(m, buffer)
    return buffer.getvalue()


def test_tutorial_pickle_hgblock_biformer():
    """A tutorial-pickled HGBlock_Biformer, sc/ec as ultralytics.nn.AddModules.Biformer.Conv, loads and matches."""
    m = HGBlock_Biformer(8, 8, DIM, k=3, n=2, lightconv=True).eval()
    data = tutorial_pickle(m)
    assert b"ultralytics.nn.AddModules.Biformer\nConv\n" in data and b"modules.conv\nConv\n" not in data
    loaded = load(data)
    assert type(loaded.sc) is Conv and type(loaded.ec) is Conv and "attn_fn" not in vars(loaded.cv)
    x = torch.randn(2, 8, 14, 14)
    assert torch.equal(loaded(x), m(x))


@pytest.mark.parametrize("name", small_modules())
def test_checkpoints_pickle_no_functions(name: str):
    """Our modules pickle only classes, so restricted (weights_only) loading accepts them once they are allowed."""
    m, shape = small_modules()[name]
    m.eval()
    buffer = io.BytesIO(saved_bytes(m))
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(buffer)
    objects = [getattr(importlib.import_module(g.rpartition(".")[0]), g.rpartition(".")[2]) for g in unsafe]
    functions = [
        g
        for g, o in zip(unsafe, objects, strict=True)
        if isinstance(o, (types.FunctionType, types.BuiltinFunctionType))
    ]
    assert not functions
    buffer.seek(0)
    with torch.serialization.safe_globals(objects):
        loaded = torch.load(buffer, weights_only=True)
    x = torch.randn(shape)
    assert torch.equal(loaded(x), m(x))
