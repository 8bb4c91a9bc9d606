# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Numerics of the BiFormer modules against plain float64 references: each fast path against an obviously correct one.

The references are deliberately naive: `bra_nchw_reference` (tests/references.py) runs dense attention over every token
pair of the map with a boolean mask built from the routed regions; `bra_legacy_reference` loops over regions; none
shares code with the module under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ultralytics.nn.AddModules import AttentionLePE, BiLevelRoutingAttention, BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules import routed_attention
from ultralytics.nn.AddModules.attention_paths import PATHS

from references import bra_nchw_reference, region_layout
from tolerances import (
    ATTENTION_PEAKING,
    AUTOCAST_BRA_ARGS,
    AUTOCAST_MAP,
    BF16_RELATIVE_TOLERANCE,
    FP32_ABS_TOLERANCE,
    norm_relative_error,
)

DIM = 16  # channels of the modules under test; divisible by every head count used
SIZES = [(1, 1), (3, 5), (7, 7), (13, 13), (20, 20), (20, 15), (15, 20), (40, 40), (41, 37)]
TOLERANCE = {torch.float64: 1e-6, torch.float32: FP32_ABS_TOLERANCE}  # max abs error against the float64 reference
TOPK_MORE = "more"  # a topk parameter meaning "one more than the number of regions"
GRAD_SIGNAL = 1e-2  # a compared gradient must reach this magnitude, far above TOLERANCE, to mean something
TUTORIAL_PADDING_ERROR = 1e-2  # the tutorial's unmasked padding moves outputs by at least this much at 20x15


def bra_legacy_reference(m: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """Float64 legacy BRA, one query region at a time: zero-pad, route region means, attend to routed regions.

    Args:
        m (BiLevelRoutingAttention): Module whose weights and settings are used.
        x (torch.Tensor): Input of shape (N, C, H, W).

    Returns:
        (torch.Tensor): Output of shape (N, C, H, W).
    """
    m, x = copy.deepcopy(m).double(), x.double()
    n, c, h, w = x.shape
    j, qk, heads = m.n_win, m.qk_dim, m.num_heads
    hp, wp = (math.ceil(h / j) * j, math.ceil(w / j) * j) if m.auto_pad else (h, w)
    x = F.pad(x, (0, wp - w, 0, hp - h)).permute(0, 2, 3, 1)  # zero-padded input, NHWC
    q, k, v = F.linear(x, m.qkv.qkv.weight, m.qkv.qkv.bias).split([qk, qk, c], dim=-1)
    rh, rw = hp // j, wp // j
    blocks = [(slice(a * rh, (a + 1) * rh), slice(b * rw, (b + 1) * rw)) for a in range(j) for b in range(j)]

    def down(t: torch.Tensor) -> torch.Tensor:
        """Down-sample one region (rh, rw, ch) by the module's kv_downsample_mode to tokens (t, ch)."""
        t, mode, ratio = t.permute(2, 0, 1)[None], m.kv_downsample_mode, m.kv_downsample_ratio
        if mode in {"avgpool", "maxpool"} and ratio > 1:
            t = (F.avg_pool2d if mode == "avgpool" else F.max_pool2d)(t, ratio)
        elif mode.startswith("ada_"):
            t = (F.adaptive_avg_pool2d if mode == "ada_avgpool" else F.adaptive_max_pool2d)(t, m.kv_per_win)
        return t[0].flatten(1).T

    def embed(t: torch.Tensor) -> torch.Tensor:
        """The router's embedding: its Linear with param_routing, else identity."""
        return F.linear(t, m.router.emb.weight, m.router.emb.bias) if m.param_routing else t

    out = torch.zeros(n, hp, wp, c, dtype=x.dtype)
    for b in range(n):
        q_win = embed(torch.stack([q[b, r, s].mean((0, 1)) for r, s in blocks]))
        k_win = embed(torch.stack([k[b, r, s].mean((0, 1)) for r, s in blocks]))
        top, index = (m.scale * q_win @ k_win.T).topk(min(m.topk, j * j), dim=-1)
        weight = top.softmax(dim=-1) if m.soft_routing else torch.ones_like(top)
        keys, values = [down(k[b, r, s]) for r, s in blocks], [down(v[b, r, s]) for r, s in blocks]
        for region, (r, s) in enumerate(blocks):
            kr = torch.cat([keys[i] * weight[region, t] for t, i in enumerate(index[region].tolist())])
            vr = torch.cat([values[i] * weight[region, t] for t, i in enumerate(index[region].tolist())])
            qr = q[b, r, s].reshape(rh * rw, qk)
            for head in range(heads):
                cq, cv = (
                    slice(head * qk // heads, (head + 1) * qk // heads),
                    slice(head * c // heads, (head + 1) * c // heads),
                )
                weights = (m.scale * qr[:, cq] @ kr[:, cq].T).softmax(dim=-1)
                out[b, r, s, cv] = (weights @ vr[:, cv]).view(rh, rw, -1)
    if m.lepe is not None:
        v_map = v.permute(0, 3, 1, 2)
        out = out + F.conv2d(v_map, m.lepe.weight, m.lepe.bias, padding=m.lepe.padding, groups=c).permute(0, 2, 3, 1)
    if m.param_attention == "qkvo":
        out = F.linear(out, m.wo.weight, m.wo.bias)
    return out[:, :h, :w].permute(0, 3, 1, 2)


def attention_lepe_reference(m: AttentionLePE, x: torch.Tensor) -> torch.Tensor:
    """Float64 dense multi-head self-attention over all tokens plus the depth-wise convolution of the input."""
    m, x = copy.deepcopy(m).double(), x.double()
    n, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    q, k, v = F.linear(tokens, m.qkv.weight, m.qkv.bias).view(n, h * w, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4)
    weights = (m.scale * q @ k.transpose(-1, -2)).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(n, h * w, c)
    if m.lepe is not None:
        out = out + F.conv2d(x, m.lepe.weight, m.lepe.bias, padding=m.lepe.padding, groups=c).flatten(2).transpose(1, 2)
    return F.linear(out, m.proj.weight, m.proj.bias).transpose(1, 2).reshape(n, c, h, w)


def assert_matches(module: torch.nn.Module, x: torch.Tensor, expected: torch.Tensor) -> None:
    """Run module in float64 and float32 and compare with the float64 reference at TOLERANCE."""
    for dtype, tolerance in TOLERANCE.items():
        out = copy.deepcopy(module).to(dtype)(x.to(dtype))
        assert out.dtype == dtype and out.shape == expected.shape
        error = (out.double() - expected).abs().max().item()
        assert error <= tolerance, f"{dtype}: max abs error {error:.3g} > {tolerance}"


@pytest.mark.parametrize("num_heads", [1, 8, DIM])
@pytest.mark.parametrize("topk", [1, 4, TOPK_MORE])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_bra_nchw_matches_dense_reference(size: tuple[int, int], batch: int, topk: int | str, num_heads: int):
    """BRA_nchw equals dense routed attention (padding masked) within 1e-6 in float64 and 1e-4 in float32."""
    if topk == TOPK_MORE:
        lay = region_layout(*size, n_win=7)
        topk = lay.nh * lay.nw + 1
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=num_heads, topk=topk).eval()
    x = torch.randn(batch, DIM, *size)
    assert_matches(m, x, bra_nchw_reference(m, x).out)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("num_heads", [1, 4])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_bra_nchw_attention_paths_match_reference(size: tuple[int, int], num_heads: int, path: str):
    """Every attention path, chosen with `attn_backend`, matches the float64 reference: output, input gradient and
    every parameter's gradient, each well above the tolerance so that the comparison means something."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=num_heads, topk=4, attn_backend=path).double()
    x = torch.randn(2, DIM, *size, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, DIM, *size, dtype=torch.float64)
    out = m(x)
    ref = bra_nchw_reference(m, x).out
    assert (out - ref).abs().max() <= TOLERANCE[torch.float64]
    params = [p for _, p in sorted(m.named_parameters())]
    grads = torch.autograd.grad(out, [x, *params], grad)
    ref_grads = torch.autograd.grad(ref, [x, *params], grad, allow_unused=True)
    for name, g, g_ref in zip(["input", *sorted(dict(m.named_parameters()))], grads, ref_grads, strict=True):
        assert g_ref.abs().max() > GRAD_SIGNAL, f"{name}: reference gradient too small to compare"
        assert (g - g_ref).abs().max() <= TOLERANCE[torch.float64], name


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size", [(20, 15), (40, 40)], ids=["20x15", "40x40"])
def test_bra_nchw_attention_paths_fp32(size: tuple[int, int], path: str):
    """Every attention path in float32 (the gather path's fused SDPA included) stays within 1e-4 of the reference."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=4, topk=4, attn_backend=path).eval()
    x = torch.randn(2, DIM, *size)
    error = (m(x).double() - bra_nchw_reference(m, x).out).abs().max().item()
    assert error <= TOLERANCE[torch.float32], f"{path}: max abs error {error:.3g}"


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_bra_nchw_attention_matrix(size: tuple[int, int]):
    """The returned attention equals the dense reference's entries, sums to 1 and is exactly 0 on padded keys."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2, topk=4).double().eval()
    x = torch.randn(2, DIM, *size, dtype=torch.float64)
    out, attn = m(x, ret_attn_mask=True)
    ref = bra_nchw_reference(m, x, return_attention=True)
    assert (out - ref.out).abs().max() <= TOLERANCE[torch.float64]

    h, w = size
    lay = region_layout(h, w, m.n_win)
    hp, wp, regions, tokens = lay.nh * lay.rh, lay.nw * lay.rw, lay.nh * lay.nw, lay.rh * lay.rw
    # padded-map token index of every (region, position-in-region) slot, region-major
    slot = torch.arange(hp * wp).view(lay.nh, lay.rh, lay.nw, lay.rw).permute(0, 2, 1, 3).reshape(regions, tokens)
    valid = ((torch.arange(hp) < h)[:, None] & (torch.arange(wp) < w)[None, :]).flatten()
    key_slot = slot[ref.routed].flatten(2)  # (N, R, k*T) tokens of the routed regions, in routing order
    dense = ref.attn[:, :, slot]  # (N, heads, R, T, P): dense rows of every query slot
    expected = dense.gather(-1, key_slot[:, None, :, None, :].expand(-1, m.num_heads, -1, tokens, -1))
    assert attn.shape == expected.shape
    query_valid = valid[slot]  # (R, T)
    assert (attn - expected)[:, :, query_valid].abs().max() <= TOLERANCE[torch.float64]
    assert torch.allclose(attn.sum(-1), torch.ones((), dtype=attn.dtype))
    padded_keys = ~valid[key_slot][:, None, :, None, :].expand_as(attn)
    assert padded_keys.any() == (hp * wp != h * w)
    assert (attn[padded_keys] == 0).all()


@pytest.mark.parametrize("size", [(7, 7), (14, 14), (21, 14), (20, 15)])
def test_bra_nchw_tutorial_math_without_padding(size: tuple[int, int]):
    """On sizes that tile into whole regions the output equals the tutorial's math; with padding it must differ."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2).double().eval()
    x = torch.randn(2, DIM, *size, dtype=torch.float64)
    lay = region_layout(*size, n_win=m.n_win)
    padded = (lay.nh * lay.rh, lay.nw * lay.rw) != size
    error = (m(x) - bra_nchw_reference(m, x, mask_padding=False).out).abs().max().item()
    if padded:
        assert error > TUTORIAL_PADDING_ERROR, "zero-padded keys should have moved the tutorial's output"
    else:
        assert error <= TOLERANCE[torch.float64]


LEGACY_CASES = {
    "pad-9x11": dict(size=(9, 11), n_win=3),
    "pad-1x1": dict(size=(1, 1), n_win=7),
    "pad-5x3-1head": dict(size=(5, 3), n_win=2, num_heads=1),
    "nopad-12x12": dict(size=(12, 12), n_win=3, auto_pad=False),
    "avgpool": dict(size=(10, 13), n_win=3, kv_downsample_mode="avgpool", kv_downsample_ratio=2),
    "maxpool": dict(size=(10, 13), n_win=3, kv_downsample_mode="maxpool", kv_downsample_ratio=2),
    "avgpool-ratio1": dict(size=(6, 6), n_win=3, kv_downsample_mode="avgpool", kv_downsample_ratio=1),
    "ada_avgpool": dict(size=(10, 13), n_win=3, kv_downsample_mode="ada_avgpool", kv_per_win=2),
    "ada_maxpool": dict(size=(12, 12), n_win=2, kv_downsample_mode="ada_maxpool", kv_per_win=3, auto_pad=False),
    "soft": dict(size=(9, 9), n_win=3, soft_routing=True),
    "soft-diff-param": dict(size=(8, 7), n_win=2, soft_routing=True, diff_routing=True, param_routing=True),
    "qkv": dict(size=(9, 9), n_win=3, param_attention="qkv"),
    "qk_dim": dict(size=(9, 9), n_win=3, qk_dim=8, qk_scale=0.3),
    "topk-more": dict(size=(6, 6), n_win=2, topk=5),
    "no-lepe": dict(size=(6, 6), n_win=3, side_dwconv=0),
}


@pytest.mark.parametrize("case", LEGACY_CASES.values(), ids=LEGACY_CASES.keys())
def test_bra_legacy_matches_reference(case: dict):
    """The legacy BRA equals the region-by-region reference in every implemented configuration."""
    case = dict(case)
    size, options = case.pop("size"), {"num_heads": 4, "topk": 3, **case}
    m = BiLevelRoutingAttention(DIM, **options).eval()
    x = torch.randn(2, DIM, *size)
    assert_matches(m, x, bra_legacy_reference(m, x))


@pytest.mark.parametrize(
    "options",
    [dict(num_heads=1), dict(num_heads=4, qkv_bias=True, qk_scale=0.2), dict(num_heads=8, side_dwconv=0)],
)
@pytest.mark.parametrize("size", [(1, 1), (5, 7)])
def test_attention_lepe_matches_reference(size: tuple[int, int], options: dict):
    """AttentionLePE equals plain dense multi-head attention plus the depth-wise convolution of the input."""
    m = AttentionLePE(DIM, **options).eval()
    x = torch.randn(2, DIM, *size)
    assert_matches(m, x, attention_lepe_reference(m, x))


N_WIN_SIZES = [(1, 1), (3, 5), (13, 13), (20, 15), (41, 37)]


@pytest.mark.parametrize("n_win", [1, 2, 3, 7, 8])
@pytest.mark.parametrize("size", N_WIN_SIZES, ids=[f"{h}x{w}" for h, w in N_WIN_SIZES])
def test_bra_nchw_n_win_matches_dense_reference(size: tuple[int, int], n_win: int):
    """Every region count per side (1: one global region; 8: more than the tutorial's 7) matches the reference."""
    m = BiLevelRoutingAttention_nchw(DIM, num_heads=2, n_win=n_win, topk=3).eval()
    x = torch.randn(2, DIM, *size)
    assert_matches(m, x, bra_nchw_reference(m, x).out)


def regional_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, graph: torch.Tensor, q_size: tuple, kv_size: tuple
) -> torch.Tensor:
    """Float64 token loop of regional routing attention: each query token attends to the real tokens of its routed
    key regions (regions row-major, the last row/column partial).

    Args:
        q (torch.Tensor): Queries (B, C, Hq, Wq).
        k (torch.Tensor): Keys (B, C, Hk, Wk).
        v (torch.Tensor): Values (B, Cv, Hk, Wk).
        scale (float): Multiplier of q.k.
        graph (torch.Tensor): Routed key regions (B, heads, Rq, topk).
        q_size (tuple): Query region size (rh, rw).
        kv_size (tuple): Key region size (rh, rw).

    Returns:
        (torch.Tensor): Output (B, Cv, Hq, Wq).
    """
    n, c, hq, wq = q.shape
    _, cv, hk, wk = v.shape
    heads = graph.shape[1]
    nw_q, nw_k = math.ceil(wq / q_size[1]), math.ceil(wk / kv_size[1])
    out = torch.zeros(n, cv, hq, wq, dtype=torch.float64)
    for b, head, y, x in torch.cartesian_prod(*(torch.arange(s) for s in (n, heads, hq, wq))).tolist():
        region = (y // q_size[0]) * nw_q + x // q_size[1]
        routed = set(graph[b, head, region].tolist())
        keys = [(ky, kx) for ky in range(hk) for kx in range(wk) if (ky // kv_size[0]) * nw_k + kx // kv_size[1] in routed]
        cq, cvh = slice(head * c // heads, (head + 1) * c // heads), slice(head * cv // heads, (head + 1) * cv // heads)
        logits = torch.stack([scale * q[b, cq, y, x].double() @ k[b, cq, ky, kx].double() for ky, kx in keys])
        values = torch.stack([v[b, cvh, ky, kx].double() for ky, kx in keys])
        out[b, cvh, y, x] = logits.softmax(0) @ values
    return out


def test_regional_routing_attention_different_kv_regions():
    """Query and key maps of different sizes and region sizes, both padded, match the token-loop reference."""
    torch.manual_seed(0)
    q = torch.randn(2, 4, 5, 3, dtype=torch.float64)  # (2, 2) regions: 3 x 2 = 6 query regions, partial ones
    k = torch.randn(2, 4, 7, 4, dtype=torch.float64)  # (3, 2) regions: 3 x 2 = 6 key regions, the last row partial
    v = torch.randn(2, 6, 7, 4, dtype=torch.float64)
    graph = torch.stack([torch.randperm(6)[:2] for _ in range(2 * 2 * 6)]).view(2, 2, 6, 2)
    out, _ = routed_attention.regional_routing_attention_torch(q, k, v, 0.5, graph, (2, 2), kv_region_size=(3, 2))
    expected = regional_attention_reference(q, k, v, 0.5, graph, (2, 2), (3, 2))
    assert (out - expected).abs().max() <= TOLERANCE[torch.float64]


def bf16_modules() -> dict[str, tuple[torch.nn.Module, object]]:
    """Both BRA classes in float32 with their float64 references."""
    return {
        "nchw": (BiLevelRoutingAttention_nchw(DIM, **AUTOCAST_BRA_ARGS), lambda m, x: bra_nchw_reference(m, x).out),
        "legacy": (BiLevelRoutingAttention(DIM, n_win=3, num_heads=2, topk=3, soft_routing=True), bra_legacy_reference),
    }


@pytest.mark.parametrize(
    "name, path", [("nchw", path) for path in PATHS] + [("legacy", None)], ids=[*PATHS, "legacy"]
)
def test_bf16_autocast_matches_reference(name: str, path: str | None):
    """Under bf16 autocast on CPU, output and input gradient of every attention path (the gather one with fused SDPA
    is what GPUs run) and of the legacy module stay within BF16_RELATIVE_TOLERANCE of the float64 reference."""
    torch.manual_seed(0)
    m, reference = bf16_modules()[name]
    if path is not None:
        m.attn_backend = path
    x = (ATTENTION_PEAKING * torch.randn(2, DIM, *AUTOCAST_MAP)).requires_grad_()
    weights = torch.randn(2, DIM, *AUTOCAST_MAP, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16
    (grad,) = torch.autograd.grad(out.double(), x, weights)
    x64 = x.detach().double().requires_grad_()
    ref = reference(m, x64)
    (ref_grad,) = torch.autograd.grad(ref, x64, weights)
    assert norm_relative_error(out, ref) <= BF16_RELATIVE_TOLERANCE
    assert norm_relative_error(grad, ref_grad) <= BF16_RELATIVE_TOLERANCE
