# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BiFormer modules: Bi-Level Routing Attention (BRA) and the blocks built on it.

Paper: "BiFormer: Vision Transformer with Bi-Level Routing Attention", Zhu et al., CVPR 2023 (arXiv 2303.08810).
Class, attribute and parameter names follow the original BiFormer code and the tutorial fork, so that state dicts and
pickled checkpoints interchange; the implementation is this fork's own (see docs/biformer.md for every difference).

Sizes are read once per call as Python ints (`_static_shape`), so tracing (TorchScript, ONNX) freezes them into
constants instead of recording size arithmetic on tensors: exports are valid for the input size they were traced at.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Conv is imported for checkpoints: the tutorial fork pickles HGBlock_Biformer.sc/ec as this module's Conv
from ultralytics.nn.modules import Conv, HGBlock  # noqa: F401

__all__ = (
    "AttentionLePE",
    "BiLevelRoutingAttention",
    "BiLevelRoutingAttention_nchw",
    "HGBlock_Biformer",
    "KVGather",
    "QKVLinear",
    "TopkRouting",
    "regional_routing_attention_torch",
)

ATTN_BACKENDS = ("torch",)
PARAM_ATTENTION_MODES = ("qkvo", "qkv")
KV_DOWNSAMPLE_MODES = ("identity", "avgpool", "maxpool", "ada_avgpool", "ada_maxpool")
KV_DOWNSAMPLE_UNIMPLEMENTED = ("fracpool", "conv")
KV_GATHER_MODES = ("none", "soft", "hard")
QKV = 3  # q, k and v: the chunks of a joint projection
ROUTING_MIN_DTYPE = torch.float32  # region affinities are ranked in at least fp32 (no fp16 overflow, stable topk)
# devices where routed attention runs as matmul + softmax, route by route, instead of fused SDPA over gathered K/V: on
# CPU the region matrices are tiny (25 x 100 at 40x40) and SDPA's backward zero-fills and transposes topk-times-K-sized
# gradients (docs/biformer.md, "Fast path", has the measurements)
UNFUSED_ATTENTION_DEVICES = ("cpu",)


class _Grid(NamedTuple):
    """Region grid over an (h, w) map: region size (rh, rw), regions per side (nh, nw), padded size (hp, wp)."""

    h: int
    w: int
    rh: int
    rw: int
    nh: int
    nw: int

    @property
    def hp(self) -> int:
        """Padded height, a multiple of rh."""
        return self.nh * self.rh

    @property
    def wp(self) -> int:
        """Padded width, a multiple of rw."""
        return self.nw * self.rw

    @property
    def regions(self) -> int:
        """Number of regions."""
        return self.nh * self.nw

    @property
    def tokens(self) -> int:
        """Tokens per region, padding included."""
        return self.rh * self.rw

    @property
    def padded(self) -> bool:
        """Whether the map must be padded bottom/right to tile into whole regions."""
        return self.hp != self.h or self.wp != self.w


class RegionRouting(NamedTuple):
    """What BRA's routing decided for one input: the grid, every region-pair affinity and the routed regions."""

    grid: _Grid
    affinity: torch.Tensor  # (N, R, R), at least fp32: query region along dim 1, key region along dim 2
    index: torch.Tensor  # (N, R, k) long: routed key regions of each query region, most affine first


def _grid(h: int, w: int, rh: int, rw: int) -> _Grid:
    """Tile an (h, w) map into regions of (rh, rw), the last row/column of regions possibly partial."""
    return _Grid(h, w, rh, rw, math.ceil(h / rh), math.ceil(w / rw))


def _static_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Return the shape of x as Python ints; under tracing this freezes the sizes as constants of the trace."""
    return tuple(int(s) for s in x.shape)


def _check(ok: bool, module: str, message: str, error: type[Exception] = ValueError) -> None:
    """Raise `error` with a message that names the module when `ok` is False."""
    if not ok:
        raise error(f"{module}: {message}")


def _check_min(module: str, name: str, value: int, minimum: int = 1) -> None:
    """Check that an integer argument is at least `minimum`."""
    _check(
        isinstance(value, int) and value >= minimum, module, f"{name} must be an integer >= {minimum}, got {value!r}"
    )


def _check_heads(module: str, name: str, dim: int, num_heads: int) -> None:
    """Check that `dim` splits evenly into `num_heads` heads, listing the head counts that would."""
    _check_min(module, "num_heads", num_heads)
    allowed = [d for d in range(1, dim + 1) if dim % d == 0]
    _check(dim % num_heads == 0, module, f"{name}={dim} must be divisible by num_heads={num_heads}; allowed: {allowed}")


def _check_side_dwconv(module: str, side_dwconv: int) -> None:
    """Check the LCE kernel size: 0 disables it, otherwise it must be odd so the output keeps the input size."""
    ok = isinstance(side_dwconv, int) and (side_dwconv == 0 or (side_dwconv > 0 and side_dwconv % 2 == 1))
    _check(ok, module, f"side_dwconv must be 0 (no LCE term) or an odd kernel size >= 1, got {side_dwconv!r}")


def _check_input(x: torch.Tensor, dim: int, module: str) -> tuple[int, int, int, int]:
    """Check that x is (N, C, H, W) with C == dim and return its shape as Python ints."""
    _check(x.dim() == 4, module, f"expected a 4D input of shape (N, C, H, W), got shape {tuple(x.shape)}")
    shape = _static_shape(x)
    _check(shape[1] == dim, module, f"expected {dim} input channels (dim={dim}), got {shape[1]} (shape {shape})")
    return shape


def _dwconv(dim: int, kernel: int) -> nn.Conv2d | None:
    """Depth-wise convolution for the local context enhancement (LCE/LePE) term, or None when kernel is 0."""
    return nn.Conv2d(dim, dim, kernel, stride=1, padding=kernel // 2, groups=dim) if kernel > 0 else None


def _routing_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype routing computes in for inputs like x: x's own dtype, raised to at least ROUTING_MIN_DTYPE."""
    return torch.promote_types(x.dtype, ROUTING_MIN_DTYPE)


def _autocast_off(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Context that disables autocast on x's device, so that routing runs in `_routing_dtype`."""
    device = x.device.type
    return (
        torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else contextlib.nullcontext()
    )


def _to_regions(x: torch.Tensor, grid: _Grid, num_heads: int) -> torch.Tensor:
    """Zero-pad a map bottom/right to whole regions and lay it out region-major per head.

    Args:
        x (torch.Tensor): Map of shape (B, C, H, W), C divisible by num_heads.
        grid (_Grid): Region grid of the map.
        num_heads (int): Number of heads.

    Returns:
        (torch.Tensor): Shape (B*num_heads, R, rh*rw, C/num_heads); padded positions hold zeros.
    """
    if grid.padded:
        x = F.pad(x, (0, grid.wp - grid.w, 0, grid.hp - grid.h))
    b, c = _static_shape(x)[:2]
    x = x.reshape(b * num_heads, c // num_heads, grid.nh, grid.rh, grid.nw, grid.rw)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b * num_heads, grid.regions, grid.tokens, c // num_heads)


def _from_regions(x: torch.Tensor, grid: _Grid, batch: int) -> torch.Tensor:
    """Inverse of `_to_regions`: (B*heads, R, rh*rw, d) to (B, heads*d, H, W), padding cropped."""
    bh, _, _, d = _static_shape(x)
    x = x.reshape(batch, bh // batch, grid.nh, grid.nw, grid.rh, grid.rw, d).permute(0, 1, 6, 2, 4, 3, 5)
    x = x.reshape(batch, bh // batch * d, grid.hp, grid.wp)
    return x[:, :, : grid.h, : grid.w] if grid.padded else x


def _qkv_to_regions(qkv: torch.Tensor, grid: _Grid, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay out q, k and v region-major per head with one copy of the whole projection (`_to_regions` of each).

    Args:
        qkv (torch.Tensor): Projection of shape (B, 3*C, H, W): q, k, v stacked along channels, C divisible by
            num_heads.
        grid (_Grid): Region grid of the map.
        num_heads (int): Number of heads.

    Returns:
        (tuple[torch.Tensor, torch.Tensor, torch.Tensor]): q, k, v, each contiguous of shape
            (B*num_heads, R, rh*rw, C/num_heads); padded positions hold zeros.
    """
    if grid.padded:
        qkv = F.pad(qkv, (0, grid.wp - grid.w, 0, grid.hp - grid.h))
    b, c3 = _static_shape(qkv)[:2]
    d = c3 // (QKV * num_heads)
    regions = qkv.reshape(b, QKV, num_heads, d, grid.nh, grid.rh, grid.nw, grid.rw).permute(1, 0, 2, 4, 6, 5, 7, 3)
    return regions.reshape(QKV, b * num_heads, grid.regions, grid.tokens, d).unbind(0)


def _region_counts(grid: _Grid, like: torch.Tensor) -> torch.Tensor:
    """Number of real (unpadded) tokens in each region, shape (R,), with like's dtype and device."""
    rows = (grid.h - torch.arange(grid.nh).type_as(like) * grid.rh).clamp(max=grid.rh)
    cols = (grid.w - torch.arange(grid.nw).type_as(like) * grid.rw).clamp(max=grid.rw)
    return (rows[:, None] * cols[None, :]).reshape(grid.regions)


def _region_valid(grid: _Grid, like: torch.Tensor) -> torch.Tensor:
    """Boolean (R, rh*rw) map of which region positions are real tokens; like gives the device."""
    rows = torch.arange(grid.hp).type_as(like).view(grid.nh, grid.rh) < grid.h
    cols = torch.arange(grid.wp).type_as(like).view(grid.nw, grid.rw) < grid.w
    return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(grid.regions, grid.tokens)


def _gather_regions(x: torch.Tensor, index: torch.Tensor, regions: int) -> torch.Tensor:
    """Select routed regions without expanding x per query region (backward is an index-add into x's size).

    Args:
        x (torch.Tensor): Region-major tensor of shape (B, R, ...), R == regions.
        index (torch.Tensor): Long indices into R of shape (B, ...).
        regions (int): Number of regions R.

    Returns:
        (torch.Tensor): Shape (index.numel(), ...): x[b, index[b, ...]] in index order.
    """
    offsets = torch.arange(_static_shape(index)[0]).type_as(index) * regions
    flat = index + offsets.view(-1, *([1] * (index.dim() - 1)))
    return x.reshape(-1, *_static_shape(x)[2:]).index_select(0, flat.reshape(-1))


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None, need_weights: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over the last two dims, returning the attention matrix when asked.

    Runs fused `F.scaled_dot_product_attention` except where `_fused_attention` says the plain matmul/softmax path is
    faster or the attention matrix is needed; both compute the same products (and the FLOPs counter counts both).

    Args:
        q (torch.Tensor): Queries of shape (..., L, d).
        k (torch.Tensor): Keys of shape (..., S, d).
        v (torch.Tensor): Values of shape (..., S, dv).
        scale (float): Multiplier of q.k before the softmax.
        mask (torch.Tensor | None): Boolean mask broadcastable to (..., L, S), True where a key may be attended.
        need_weights (bool): Return the attention matrix.

    Returns:
        out (torch.Tensor): Attention output of shape (..., L, dv).
        attn (torch.Tensor | None): Attention matrix of shape (..., L, S), or None.
    """
    if _fused_attention(q, need_weights):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale), None
    return _attend_unfused(q, k, v, scale, mask, need_weights)


def _fused_attention(q: torch.Tensor, need_weights: bool) -> bool:
    """Whether `_attend` runs fused SDPA for q: not when the weights are needed, nor on UNFUSED_ATTENTION_DEVICES."""
    return not need_weights and q.device.type not in UNFUSED_ATTENTION_DEVICES


def _attend_unfused(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None, need_weights: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The matmul/softmax path of `_attend`, same arguments and returns; scale and mask go in place into the logits."""
    logits = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
    if mask is not None:
        logits = logits.masked_fill_(~mask, float("-inf"))
    attn = logits.softmax(dim=-1)
    return attn @ v, attn if need_weights else None


def _region_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    region_graph: torch.Tensor,
    scale: float,
    kv_grid: _Grid,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-to-token attention from each query region to the tokens of its routed key regions.

    Args:
        q (torch.Tensor): Region-major queries of shape (B*heads, Rq, Tq, d).
        k (torch.Tensor): Region-major keys of shape (B*heads, Rk, Tk, d).
        v (torch.Tensor): Region-major values of shape (B*heads, Rk, Tk, dv).
        region_graph (torch.Tensor): Routed key regions, long, of shape (B, heads, Rq, topk).
        scale (float): Multiplier of q.k before the softmax.
        kv_grid (_Grid): Region grid of the key/value map; its padded positions are masked out.
        need_weights (bool): Also return the attention matrix.

    Returns:
        out (torch.Tensor): Shape (B*heads, Rq, Tq, dv).
        attn (torch.Tensor | None): Shape (B, heads, Rq, Tq, topk*Tk), or None.
    """
    b, heads, rq, topk = _static_shape(region_graph)
    tq, tk = _static_shape(q)[2], kv_grid.tokens
    graph = region_graph.reshape(b * heads, rq, topk)
    mask = None
    if kv_grid.padded:  # padded keys take no weight; padded query rows are cropped by the caller
        valid = _region_valid(kv_grid, region_graph)
        mask = valid.index_select(0, region_graph.reshape(-1)).view(b * heads, rq, 1, topk * tk)
    if _fused_attention(q, need_weights):
        k_sel = _gather_regions(k, graph, kv_grid.regions).view(b * heads, rq, topk * tk, -1)
        v_sel = _gather_regions(v, graph, kv_grid.regions).view(b * heads, rq, topk * tk, -1)
        out, attn = _attend(q, k_sel, v_sel, scale, mask, need_weights)
    else:
        out, attn = _attend_per_route(q, k, v, graph, scale, mask, need_weights)
    return out, None if attn is None else attn.view(b, heads, rq, tq, topk * tk)


def _attend_per_route(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    graph: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Routed attention computed one route at a time: the matmul/softmax path of `_region_attention`.

    Gathering the j-th routed region of every query region at once gives K- and V-sized tensors instead of topk-times
    larger ones; the logits of all routes are concatenated for one softmax, and the outputs of the routes summed.
    Same products as gathering everything first (and counted the same), but no allocation larger than K, which on
    CPU avoids the page faults of fresh large buffers (glibc serves allocations over 32 MiB by mmap). When a gradient
    is recorded (and not traced), `_RoutedAttention` runs the same products but keeps only the attention matrix for
    backward and gathers K and V again there, instead of autograd keeping every route's gathered K and V.

    Args:
        q (torch.Tensor): Region-major queries of shape (B', Rq, Tq, d).
        k (torch.Tensor): Region-major keys of shape (B', Rk, Tk, d).
        v (torch.Tensor): Region-major values of shape (B', Rk, Tk, dv).
        graph (torch.Tensor): Routed key regions, long, of shape (B', Rq, topk).
        scale (float): Multiplier of q.k before the softmax.
        mask (torch.Tensor | None): Boolean mask of shape (B', Rq, 1, topk*Tk), True where a key may be attended.
        need_weights (bool): Also return the attention matrix.

    Returns:
        out (torch.Tensor): Shape (B', Rq, Tq, dv).
        attn (torch.Tensor | None): Shape (B', Rq, Tq, topk*Tk), or None.
    """
    bh, rk = _static_shape(k)[:2]
    offsets = torch.arange(bh).type_as(graph).view(bh, 1, 1) * rk
    index = (graph + offsets).permute(2, 0, 1).reshape(_static_shape(graph)[-1], -1)  # (topk, B'*Rq): flat regions
    recorded = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if recorded and not need_weights and not torch.jit.is_tracing():
        return _RoutedAttention.apply(q, k, v, index, scale, mask), None
    out, attn = _routed_products(q, k, v, index, scale, mask)
    return out, attn if need_weights else None


def _routed_products(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor, scale: float, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The products of `_attend_per_route`, route by route, with the routes given as flat region indices.

    Args:
        q (torch.Tensor): Region-major queries of shape (B', Rq, Tq, d).
        k (torch.Tensor): Region-major keys of shape (B', Rk, Tk, d).
        v (torch.Tensor): Region-major values of shape (B', Rk, Tk, dv).
        index (torch.Tensor): Long indices of shape (topk, B'*Rq) into the B'*Rk flattened key regions.
        scale (float): Multiplier of q.k before the softmax.
        mask (torch.Tensor | None): Boolean mask of shape (B', Rq, 1, topk*Tk), True where a key may be attended.

    Returns:
        out (torch.Tensor): Shape (B', Rq, Tq, dv).
        attn (torch.Tensor): Shape (B', Rq, Tq, topk*Tk).
    """
    bh, rk, tk = _static_shape(k)[:3]
    topk = _static_shape(index)[0]
    kf, vf = k.reshape(bh * rk, tk, -1), v.reshape(bh * rk, tk, -1)
    shape = _static_shape(q)
    qf = q.reshape(-1, *shape[2:])
    logits = torch.cat([torch.matmul(qf, kf.index_select(0, i).transpose(-2, -1)) for i in index.unbind(0)], -1)
    logits = logits.view(*shape[:3], -1).mul_(scale)
    if mask is not None:
        logits = logits.masked_fill_(~mask, float("-inf"))
    attn = logits.softmax(dim=-1)
    parts = attn.view(-1, shape[2], topk, tk).unbind(2)
    out = None
    for a, i in zip(parts, index.unbind(0)):
        o = a @ vf.index_select(0, i)
        out = o if out is None else out.add_(o)
    return out.view(*shape[:3], -1), attn


class _RoutedAttention(torch.autograd.Function):
    """`_routed_products` whose backward gathers each route's K and V again instead of keeping them.

    Autograd of the plain products keeps every route's gathered K and V (topk times K and V: 50 MiB at
    (1, 1024, 40, 40)); this keeps q, k, v (alive anyway: views of one region-major copy), the routes and the
    attention matrix (Tq x topk*Tk per query region, small) and recomputes the gathers route by route in backward, so
    no backward temporary is larger than K either. Forward is `_routed_products` itself, outputs bit-identical.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        index: torch.Tensor,
        scale: float,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Routed attention output of shape (B', Rq, Tq, dv); arguments as in `_routed_products`."""
        out, attn = _routed_products(q, k, v, index, scale, mask)
        ctx.save_for_backward(q, k, v, index, attn)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Gradients of q, k and v (each of its input's shape); none for index, scale and mask.

        With attn = softmax(s) and s = scale * q.k: dv_j = attn_j^T dout and dattn_j = dout v_j^T per route j,
        ds = attn * (dattn - sum(attn * dattn)) over all routes of a row, dq = scale * sum_j ds_j k_j and
        dk_j = scale * ds_j^T q, where k_j, v_j are the j-th routed regions (index-added back into dk, dv).
        """
        q, k, v, index, attn = ctx.saved_tensors
        bh, rk, tk = _static_shape(k)[:3]
        shape = _static_shape(q)
        kf, vf = k.reshape(bh * rk, tk, -1), v.reshape(bh * rk, tk, -1)
        qf = q.reshape(-1, *shape[2:])
        dout = grad_out.reshape(-1, shape[2], _static_shape(grad_out)[-1]).to(v.dtype)
        routes = index.unbind(0)
        probs = attn.view(-1, shape[2], len(routes), tk).permute(2, 0, 1, 3)  # (topk, B'*Rq, Tq, Tk) view
        dvf = torch.zeros_like(vf)
        dprobs = dout.new_empty(_static_shape(probs))  # each route's slice contiguous: written in place
        for j, i in enumerate(routes):
            torch.bmm(dout, vf.index_select(0, i).transpose(-2, -1), out=dprobs[j])
            dvf.index_add_(0, i, torch.bmm(probs[j].to(v.dtype).transpose(-2, -1), dout))
        ds = dprobs.to(attn.dtype)
        ds = ds.sub_((ds * probs).sum((0, 3), keepdim=True)).mul_(probs).mul_(ctx.scale).to(q.dtype)
        dkf = torch.zeros_like(kf)
        dqf = None
        for s, i in zip(ds.unbind(0), routes):
            dqf = torch.bmm(s, kf.index_select(0, i)) if dqf is None else dqf.baddbmm_(s, kf.index_select(0, i))
            dkf.index_add_(0, i, torch.bmm(s.transpose(-2, -1), qf))
        return dqf.view(shape), dkf.view(_static_shape(k)), dvf.view(_static_shape(v)), None, None, None


def regional_routing_attention_torch(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    region_graph: torch.Tensor,
    region_size: tuple[int, int],
    kv_region_size: tuple[int, int] | None = None,
    auto_pad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regional routing scaled dot-product attention: the token-to-token step of BRA as a function.

    Each map is tiled into regions (the last row/column partial when the size is not a multiple); every query token
    attends to all tokens of the key regions that `region_graph` routes its region to. Positions added by padding
    are masked out of the softmax. The number of heads is region_graph's second dimension.

    Args:
        query (torch.Tensor): Queries of shape (B, C, Hq, Wq).
        key (torch.Tensor): Keys of shape (B, C, Hk, Wk).
        value (torch.Tensor): Values of shape (B, Cv, Hk, Wk).
        scale (float): Multiplier of q.k before the softmax.
        region_graph (torch.Tensor): Long indices of shape (B, heads, Rq, topk) into the key regions.
        region_size (tuple[int, int]): Query region size (rh, rw).
        kv_region_size (tuple[int, int], optional): Key/value region size; defaults to region_size.
        auto_pad (bool): Pad maps whose size is not a multiple of the region size; if False such sizes are an error.

    Returns:
        output (torch.Tensor): Shape (B, Cv, Hq, Wq).
        attn (torch.Tensor): Shape (B, heads, Rq, rh*rw, topk*kv_rh*kv_rw); zero at padded key positions.

    Examples:
        >>> q = k = v = torch.randn(1, 8, 4, 4)
        >>> graph = torch.tensor([[0, 1], [1, 0], [2, 3], [3, 2]]).view(1, 1, 4, 2)
        >>> out, attn = regional_routing_attention_torch(q, k, v, 8**-0.5, graph, region_size=(2, 2))
        >>> out.shape, attn.shape
        (torch.Size([1, 8, 4, 4]), torch.Size([1, 1, 4, 4, 8]))
    """
    name = "regional_routing_attention_torch"
    kv_region_size = kv_region_size or region_size
    _check(region_graph.dim() == 4, name, f"region_graph must be (B, heads, Rq, topk), got {tuple(region_graph.shape)}")
    b, heads, rq, _ = _static_shape(region_graph)
    for arg, t in (("query", query), ("key", key), ("value", value)):
        _check(t.dim() == 4, name, f"{arg} must be (B, C, H, W), got shape {tuple(t.shape)}")
        _check(_static_shape(t)[1] % heads == 0, name, f"{arg} channels must be divisible by heads={heads}")
    q_grid = _grid(*_static_shape(query)[2:], *region_size)
    kv_grid = _grid(*_static_shape(key)[2:], *kv_region_size)
    for arg, grid in (("region_size", q_grid), ("kv_region_size", kv_grid)):
        _check(
            auto_pad or not grid.padded, name, f"map {grid.h}x{grid.w} is not a multiple of {arg}; use auto_pad=True"
        )
    _check(rq == q_grid.regions, name, f"region_graph has {rq} query regions, region_size gives {q_grid.regions}")
    q = _to_regions(query, q_grid, heads)
    k = _to_regions(key, kv_grid, heads)
    v = _to_regions(value, kv_grid, heads)
    out, attn = _region_attention(q, k, v, region_graph, scale, kv_grid, need_weights=True)
    return _from_regions(out, q_grid, b), attn


class BiLevelRoutingAttention_nchw(nn.Module):
    """Bi-Level Routing Attention on NCHW maps (BiFormer's `nchwBRA`): region routing, then token attention.

    The map is cut into regions of size (H // n_win, W // n_win) (at least 1), the last row/column partial when the
    size is not a multiple. Each query region keeps the `topk` key regions (clamped to the region count) whose mean key
    has the largest dot product with its mean query; its tokens then attend to every real token of those regions.

    Attributes:
        dim (int): Channels of input and output.
        num_heads (int): Number of attention heads.
        head_dim (int): Channels per head.
        scale (float): Multiplier of q.k, `qk_scale or dim**-0.5` (dim, not head_dim, as in the trained weights).
        topk (int): Routed key regions per query region.
        n_win (int): Regions per side of a map whose size is a multiple of n_win.
        qkv_linear (nn.Conv2d): 1x1 convolution producing q, k, v.
        output_linear (nn.Conv2d): 1x1 output projection.
        lepe (nn.Conv2d | None): Depth-wise convolution on v added to the attention output (LCE), or None.

    Examples:
        >>> m = BiLevelRoutingAttention_nchw(64, num_heads=4, n_win=7, topk=4)
        >>> m(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        n_win: int = 7,
        qk_scale: float | None = None,
        topk: int = 4,
        side_dwconv: int = 3,
        auto_pad: bool = False,
        attn_backend: str = "torch",
    ):
        """Initialize the module.

        Args:
            dim (int): Channels of input and output.
            num_heads (int): Number of attention heads, a divisor of dim.
            n_win (int): Regions per side of a map whose size is a multiple of n_win, >= 1.
            qk_scale (float, optional): Multiplier of q.k; defaults to dim**-0.5.
            topk (int): Routed key regions per query region, >= 1; clamped to the number of regions.
            side_dwconv (int): Kernel size of the LCE depth-wise convolution on v; 0 disables it.
            auto_pad (bool): Accepted for signature compatibility; every map size is handled (padding is masked).
            attn_backend (str): Attention implementation; only "torch" exists.
        """
        super().__init__()
        name = type(self).__name__
        _check_heads(name, "dim", dim, num_heads)
        _check_min(name, "n_win", n_win)
        _check_min(name, "topk", topk)
        _check_side_dwconv(name, side_dwconv)
        _check(
            attn_backend in ATTN_BACKENDS, name, f"attn_backend must be one of {ATTN_BACKENDS}, got {attn_backend!r}"
        )
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or dim**-0.5
        self.lepe = _dwconv(dim, side_dwconv)
        self.topk = topk
        self.n_win = n_win
        self.qkv_linear = nn.Conv2d(dim, 3 * dim, kernel_size=1)
        self.output_linear = nn.Conv2d(dim, dim, kernel_size=1)

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled module; tutorial checkpoints carry a function as `attn_fn`, which is dropped here."""
        super().__setstate__({k: v for k, v in state.items() if k != "attn_fn"})

    def affinity(self, q: torch.Tensor, k: torch.Tensor, grid: _Grid, batch: int) -> torch.Tensor:
        """Mean-query x mean-key affinity of every pair of regions (no gradient, at least fp32).

        Args:
            q (torch.Tensor): Region-major queries of shape (B*heads, R, rh*rw, head_dim), zeros at padding.
            k (torch.Tensor): Region-major keys of the same shape.
            grid (_Grid): Region grid of the map.
            batch (int): Batch size B.

        Returns:
            (torch.Tensor): Affinity of shape (B, R, R), query regions along dim 1.
        """
        with torch.no_grad(), _autocast_off(q):
            dtype = _routing_dtype(q)
            count = _region_counts(grid, q.new_empty((), dtype=dtype))[:, None]  # padding is zero: sum / real count
            q_mean = (q.sum(2, dtype=dtype) / count).view(batch, self.num_heads, grid.regions, self.head_dim)
            k_mean = (k.sum(2, dtype=dtype) / count).view(batch, self.num_heads, grid.regions, self.head_dim)
            return torch.einsum("bhrd,bhsd->brs", q_mean, k_mean)  # (B, R, R), summed over heads and channels

    def route(self, q: torch.Tensor, k: torch.Tensor, grid: _Grid, batch: int) -> torch.Tensor:
        """Routed key regions of each query region: the topk of `affinity`, most affine first, shape (B, R, k)."""
        return self.affinity(q, k, grid, batch).topk(min(self.topk, grid.regions), dim=-1).indices

    def region_grid(self, h: int, w: int) -> _Grid:
        """The region grid forward uses for an (h, w) map: regions of (h // n_win, w // n_win), at least 1 pixel."""
        return _grid(h, w, max(h // self.n_win, 1), max(w // self.n_win, 1))

    def route_regions(self, x: torch.Tensor) -> RegionRouting:
        """The region routing forward computes for x, with the affinities it ranks (for inspection, not on forward's path).

        Args:
            x (torch.Tensor): Input of shape (N, C, H, W), C == dim.

        Returns:
            (RegionRouting): The grid, the (N, R, R) affinities and the (N, R, k) routed regions, k = min(topk, R).
        """
        n, _, h, w = _check_input(x, self.dim, type(self).__name__)
        grid = self.region_grid(h, w)
        with torch.no_grad():
            q_r, k_r, _ = _qkv_to_regions(self.qkv_linear(x), grid, self.num_heads)
            affinity = self.affinity(q_r, k_r, grid, n)
        return RegionRouting(grid, affinity, affinity.topk(min(self.topk, grid.regions), dim=-1).indices)

    def forward(self, x: torch.Tensor, ret_attn_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Apply bi-level routing attention.

        Args:
            x (torch.Tensor): Input of shape (N, C, H, W), C == dim, H, W >= 1.
            ret_attn_mask (bool): Also return the attention matrix.

        Returns:
            out (torch.Tensor): Output of shape (N, C, H, W).
            attn (torch.Tensor): With ret_attn_mask, attention of shape (N, num_heads, R, rh*rw, topk*rh*rw), zero at
                padded key positions, where R is the number of regions and topk is clamped to R.
        """
        n, _, h, w = _check_input(x, self.dim, type(self).__name__)
        grid = self.region_grid(h, w)
        qkv = self.qkv_linear(x)
        q_r, k_r, v_r = _qkv_to_regions(qkv, grid, self.num_heads)
        graph = self.route(q_r, k_r, grid, n).unsqueeze(1).expand(-1, self.num_heads, -1, -1)
        out, attn = _region_attention(q_r, k_r, v_r, graph, self.scale, grid, need_weights=ret_attn_mask)
        out = _from_regions(out, grid, n)
        if self.lepe is not None:
            out = out + self.lepe(qkv[:, 2 * self.dim :])
        out = self.output_linear(out)
        return (out, attn) if ret_attn_mask else out


class HGBlock_Biformer(HGBlock):
    """Upstream's HGBlock (PP-HGNetV2) with bi-level routing attention on its output.

    Attributes:
        m (nn.ModuleList): n `LightConv` (lightconv) or `Conv` blocks of cm channels.
        sc (Conv): 1x1 squeeze convolution to c2 // 2 channels.
        ec (Conv): 1x1 excitation convolution to c2 channels.
        cv (BiLevelRoutingAttention_nchw): Attention on the c2-channel output.
        add (bool): Whether the input is added to the output (shortcut and c1 == c2).

    Examples:
        >>> m = HGBlock_Biformer(16, 8, 32, k=3, n=2)
        >>> m(torch.randn(1, 16, 10, 10)).shape
        torch.Size([1, 32, 10, 10])
    """

    def __init__(
        self,
        c1: int,
        cm: int,
        c2: int,
        k: int = 3,
        n: int = 6,
        lightconv: bool = False,
        shortcut: bool = False,
        act: nn.Module | None = None,
    ):
        """Initialize the block.

        Args:
            c1 (int): Input channels.
            cm (int): Middle channels.
            c2 (int): Output channels.
            k (int): Kernel size of the blocks in m.
            n (int): Number of blocks in m.
            lightconv (bool): Use LightConv instead of Conv blocks.
            shortcut (bool): Add the input to the output when c1 == c2.
            act (nn.Module, optional): Activation of the convolutions; defaults to nn.ReLU().
        """
        super().__init__(c1, cm, c2, k, n, lightconv, shortcut, act)
        self.cv = BiLevelRoutingAttention_nchw(c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate x and every output of m, squeeze, excite, attend, and add x when configured.

        Args:
            x (torch.Tensor): Input of shape (N, c1, H, W).

        Returns:
            (torch.Tensor): Output of shape (N, c2, H, W).
        """
        y = [x]
        y.extend(m(y[-1]) for m in self.m)
        y = self.cv(self.ec(self.sc(torch.cat(y, 1))))
        return y + x if self.add else y


class TopkRouting(nn.Module):
    """Region-to-region routing: the topk key regions of each query region by scaled mean affinity.

    Attributes:
        topk (int): Regions kept per query region (clamped to the number of regions).
        qk_dim (int): Channels of query and key.
        scale (float): Multiplier of the routing logits, `qk_scale or qk_dim**-0.5`.
        diff_routing (bool): Let gradients flow into query and key (otherwise they are detached).
        emb (nn.Module): Linear(qk_dim, qk_dim) with param_routing, else identity.

    Examples:
        >>> weights, index = TopkRouting(16, topk=2)(torch.randn(1, 9, 16), torch.randn(1, 9, 16))
        >>> weights.shape, index.shape
        (torch.Size([1, 9, 2]), torch.Size([1, 9, 2]))
    """

    def __init__(
        self,
        qk_dim: int,
        topk: int = 4,
        qk_scale: float | None = None,
        param_routing: bool = False,
        diff_routing: bool = False,
    ):
        """Initialize the router.

        Args:
            qk_dim (int): Channels of query and key.
            topk (int): Regions kept per query region, >= 1.
            qk_scale (float, optional): Multiplier of the logits; defaults to qk_dim**-0.5.
            param_routing (bool): Embed query and key with a learnable Linear first.
            diff_routing (bool): Make routing differentiable (no detach).
        """
        super().__init__()
        _check_min(type(self).__name__, "topk", topk)
        self.topk = topk
        self.qk_dim = qk_dim
        self.scale = qk_scale or qk_dim**-0.5
        self.diff_routing = diff_routing
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Route query regions to key regions.

        Args:
            query (torch.Tensor): Region queries of shape (n, p2, qk_dim).
            key (torch.Tensor): Region keys of shape (n, p2, qk_dim).

        Returns:
            r_weight (torch.Tensor): Softmax over the kept logits, shape (n, p2, k), at least float32,
                k = min(topk, p2).
            topk_index (torch.Tensor): Long indices of the kept key regions, shape (n, p2, k).
        """
        if not self.diff_routing:
            query, key = query.detach(), key.detach()
        query, key = self.emb(query), self.emb(key)
        dtype = _routing_dtype(query)
        with _autocast_off(query):
            logits = (query.to(dtype) * self.scale) @ key.to(dtype).transpose(-2, -1)
        logit, index = logits.topk(min(self.topk, _static_shape(key)[1]), dim=-1)
        return logit.softmax(dim=-1), index


class KVGather(nn.Module):
    """Gather the key/value tokens of each query region's routed regions, optionally weighted.

    Gathers by index from the (n, p2, w2, c) tensor itself, never from a per-query-region expanded copy, so the
    backward pass is an index-add into a tensor of kv's size.

    Attributes:
        mul_weight (str): "none" (plain gather) or "soft" (multiply by the routing weights).

    Examples:
        >>> kv = torch.randn(2, 4, 9, 8)
        >>> index = torch.randint(0, 4, (2, 4, 3))
        >>> KVGather()(index, torch.ones(2, 4, 3), kv).shape
        torch.Size([2, 4, 3, 9, 8])
    """

    def __init__(self, mul_weight: str = "none"):
        """Initialize the gather.

        Args:
            mul_weight (str): One of "none", "soft", "hard"; "hard" (differentiable hard routing) is not implemented
                and raises NotImplementedError.
        """
        super().__init__()
        name = type(self).__name__
        _check(mul_weight in KV_GATHER_MODES, name, f"mul_weight must be one of {KV_GATHER_MODES}, got {mul_weight!r}")
        _check(
            mul_weight != "hard",
            name,
            "mul_weight='hard' is not implemented; use 'none' or 'soft'",
            NotImplementedError,
        )
        self.mul_weight = mul_weight

    def forward(self, r_idx: torch.Tensor, r_weight: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """Gather routed regions.

        Args:
            r_idx (torch.Tensor): Long indices of shape (n, p2, topk).
            r_weight (torch.Tensor): Routing weights of shape (n, p2, topk); used with mul_weight="soft".
            kv (torch.Tensor): Region-major tokens of shape (n, p2, w2, c).

        Returns:
            (torch.Tensor): Shape (n, p2, topk, w2, c), in kv's dtype.
        """
        n, p2, w2, c = _static_shape(kv)
        topk = _static_shape(r_idx)[-1]
        selected = _gather_regions(kv, r_idx, p2).view(n, -1, topk, w2, c)
        if self.mul_weight == "soft":
            selected = selected * r_weight.to(selected.dtype).unsqueeze(-1).unsqueeze(-1)
        return selected


class QKVLinear(nn.Module):
    """One Linear producing queries (qk_dim channels) and keys+values (qk_dim + dim channels), channels last.

    Attributes:
        dim (int): Input and value channels.
        qk_dim (int): Query and key channels.
        qkv (nn.Linear): Linear(dim, 2*qk_dim + dim).

    Examples:
        >>> q, kv = QKVLinear(16, 8)(torch.randn(2, 5, 16))
        >>> q.shape, kv.shape
        (torch.Size([2, 5, 8]), torch.Size([2, 5, 24]))
    """

    def __init__(self, dim: int, qk_dim: int, bias: bool = True):
        """Initialize the projection.

        Args:
            dim (int): Input and value channels.
            qk_dim (int): Query and key channels.
            bias (bool): Whether the Linear has a bias.
        """
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, qk_dim + qk_dim + dim, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project x of shape (..., dim) to q (..., qk_dim) and kv (..., qk_dim + dim)."""
        q, kv = self.qkv(x).split([self.qk_dim, self.qk_dim + self.dim], dim=-1)
        return q, kv


class BiLevelRoutingAttention(nn.Module):
    """The original (legacy) BiFormer BRA on NCHW maps, with exactly n_win x n_win regions.

    With auto_pad the input is zero-padded bottom/right to a multiple of n_win before the projections (the original's
    semantics: padded pixels are a zero image region, their tokens take part like any other) and the output cropped.

    Attributes:
        dim (int): Channels of input, values and output.
        n_win (int): Regions per side.
        num_heads (int): Number of attention heads.
        qk_dim (int): Query/key channels.
        scale (float): Multiplier of q.k and of the routing logits, `qk_scale or qk_dim**-0.5`.
        topk (int): Routed regions per query region (clamped to n_win**2).
        lepe (nn.Conv2d | None): Depth-wise convolution on v added to the attention output, or None.
        router (TopkRouting): Region router.
        kv_gather (KVGather): Routed key/value gather.
        qkv (QKVLinear): Query/key/value projection.
        wo (nn.Module): Output Linear ("qkvo") or identity ("qkv").
        kv_down (nn.Module): Per-region key/value down-sampling.
        auto_pad (bool): Pad inputs whose size is not a multiple of n_win.

    Examples:
        >>> m = BiLevelRoutingAttention(32, n_win=4, num_heads=4, topk=3)
        >>> m(torch.randn(2, 32, 15, 17)).shape
        torch.Size([2, 32, 15, 17])
    """

    def __init__(
        self,
        dim: int,
        n_win: int = 7,
        num_heads: int = 8,
        qk_dim: int | None = None,
        qk_scale: float | None = None,
        kv_per_win: int = 4,
        kv_downsample_ratio: int = 4,
        kv_downsample_kernel: int | None = None,
        kv_downsample_mode: str = "identity",
        topk: int = 4,
        param_attention: str = "qkvo",
        param_routing: bool = False,
        diff_routing: bool = False,
        soft_routing: bool = False,
        side_dwconv: int = 3,
        auto_pad: bool = True,
    ):
        """Initialize the module.

        Args:
            dim (int): Channels of input, values and output.
            n_win (int): Regions per side, >= 1.
            num_heads (int): Number of heads, a divisor of dim and qk_dim.
            qk_dim (int, optional): Query/key channels; defaults to dim.
            qk_scale (float, optional): Multiplier of q.k; defaults to qk_dim**-0.5.
            kv_per_win (int): Keys/values per region side for the "ada_*pool" modes, >= 1.
            kv_downsample_ratio (int): Pooling kernel and stride for "avgpool"/"maxpool", >= 1.
            kv_downsample_kernel (int, optional): Accepted for signature compatibility; unused, as in the original.
            kv_downsample_mode (str): One of "identity", "avgpool", "maxpool", "ada_avgpool", "ada_maxpool";
                "fracpool" and "conv" raise NotImplementedError.
            topk (int): Routed regions per query region, >= 1.
            param_attention (str): "qkvo" (output Linear) or "qkv" (no output projection).
            param_routing (bool): Learnable Linear in the router; requires diff_routing.
            diff_routing (bool): Differentiable routing; only with soft_routing (hard routing raises
                NotImplementedError).
            soft_routing (bool): Multiply gathered keys/values by the routing weights.
            side_dwconv (int): Kernel size of the depth-wise convolution on v; 0 disables it.
            auto_pad (bool): Pad inputs whose size is not a multiple of n_win; without it they are an error.
        """
        super().__init__()
        name = type(self).__name__
        self.dim = dim
        self.n_win = n_win
        self.num_heads = num_heads
        self.qk_dim = qk_dim or dim
        _check_min(name, "n_win", n_win)
        _check_min(name, "topk", topk)
        _check_heads(name, "dim", dim, num_heads)
        _check_heads(name, "qk_dim", self.qk_dim, num_heads)
        _check_side_dwconv(name, side_dwconv)
        _check(
            param_attention in PARAM_ATTENTION_MODES,
            name,
            f"param_attention must be one of {PARAM_ATTENTION_MODES}, got {param_attention!r}",
        )
        _check(
            kv_downsample_mode not in KV_DOWNSAMPLE_UNIMPLEMENTED,
            name,
            f"kv_downsample_mode={kv_downsample_mode!r} is not implemented; implemented: {KV_DOWNSAMPLE_MODES}",
            NotImplementedError,
        )
        _check(
            kv_downsample_mode in KV_DOWNSAMPLE_MODES,
            name,
            f"kv_downsample_mode must be one of {KV_DOWNSAMPLE_MODES}, got {kv_downsample_mode!r}",
        )
        _check(
            diff_routing or not param_routing,
            name,
            "param_routing=True requires diff_routing=True (allowed: param_routing=False, or diff_routing=True)",
        )
        _check(
            soft_routing or not diff_routing,
            name,
            "diff_routing=True without soft_routing ('hard' routing) is not implemented; "
            "allowed: diff_routing=False, or diff_routing=True with soft_routing=True",
            NotImplementedError,
        )
        self.scale = qk_scale or self.qk_dim**-0.5
        self.lepe = _dwconv(dim, side_dwconv)
        self.topk = topk
        self.param_routing = param_routing
        self.diff_routing = diff_routing
        self.soft_routing = soft_routing
        self.router = TopkRouting(self.qk_dim, topk, self.scale, param_routing, diff_routing)
        self.kv_gather = KVGather("soft" if soft_routing else "none")
        self.param_attention = param_attention
        self.qkv = QKVLinear(dim, self.qk_dim)
        self.wo = nn.Linear(dim, dim) if param_attention == "qkvo" else nn.Identity()
        self.kv_downsample_mode = kv_downsample_mode
        self.kv_per_win = kv_per_win
        self.kv_downsample_ratio = kv_downsample_ratio
        self.kv_downsample_kernel = kv_downsample_kernel
        self.kv_down = self._kv_down(name)
        self.auto_pad = auto_pad

    def _kv_down(self, name: str) -> nn.Module:
        """Build the per-region key/value down-sampling module for kv_downsample_mode."""
        mode = self.kv_downsample_mode
        if mode.startswith("ada_"):
            _check_min(name, "kv_per_win", self.kv_per_win)
            pool = nn.AdaptiveAvgPool2d if mode == "ada_avgpool" else nn.AdaptiveMaxPool2d
            return pool(self.kv_per_win)
        if mode in {"avgpool", "maxpool"}:
            _check_min(name, "kv_downsample_ratio", self.kv_downsample_ratio)
            if self.kv_downsample_ratio > 1:
                pool = nn.AvgPool2d if mode == "avgpool" else nn.MaxPool2d
                return pool(self.kv_downsample_ratio)
        return nn.Identity()

    def forward(
        self, x: torch.Tensor, ret_attn_mask: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply bi-level routing attention.

        Args:
            x (torch.Tensor): Input of shape (N, C, H, W), C == dim.
            ret_attn_mask (bool): Also return routing weights, routing indices and the attention matrix.

        Returns:
            out (torch.Tensor): Output of shape (N, C, H, W).
            r_weight (torch.Tensor): With ret_attn_mask, routing weights of shape (N, n_win**2, topk).
            r_idx (torch.Tensor): With ret_attn_mask, routed regions of shape (N, n_win**2, topk).
            attn (torch.Tensor): With ret_attn_mask, attention of shape (N*n_win**2, num_heads, w2, topk*kv_w2),
                w2 the tokens per region and kv_w2 the keys per region after down-sampling.
        """
        name = type(self).__name__
        n, c, h, w = _check_input(x, self.dim, name)
        j = self.n_win
        if self.auto_pad:
            hp, wp = math.ceil(h / j) * j, math.ceil(w / j) * j
        else:
            _check(h % j == 0 and w % j == 0, name, f"map {h}x{w} is not a multiple of n_win={j}; use auto_pad=True")
            hp, wp = h, w
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        rh, rw, p2, qk = hp // j, wp // j, j * j, self.qk_dim
        q, kv = self.qkv(x.reshape(n, c, j, rh, j, rw).permute(0, 2, 4, 3, 5, 1))  # (n, j, j, rh, rw, ch) each
        q_win = q.mean((3, 4), dtype=_routing_dtype(q)).reshape(n, p2, qk)
        k_win = kv[..., :qk].mean((3, 4), dtype=_routing_dtype(q)).reshape(n, p2, qk)
        r_weight, r_idx = self.router(q_win, k_win)
        kv_sel = self.kv_gather(r_idx, r_weight, self._downsample(kv, n, rh, rw))  # (n, p2, topk, kv_w2, qk + c)
        heads, kv_tokens = self.num_heads, _static_shape(kv_sel)[2] * _static_shape(kv_sel)[3]
        q = q.reshape(n * p2, rh * rw, heads, qk // heads).transpose(1, 2)
        k = kv_sel[..., :qk].reshape(n * p2, kv_tokens, heads, qk // heads).transpose(1, 2)
        v = kv_sel[..., qk:].reshape(n * p2, kv_tokens, heads, c // heads).transpose(1, 2)
        out, attn = _attend(q, k, v, self.scale, None, ret_attn_mask)  # (n*p2, heads, rh*rw, c/heads)
        out = out.reshape(n, j, j, heads, rh, rw, c // heads).permute(0, 1, 4, 2, 5, 3, 6).reshape(n, hp, wp, c)
        if self.lepe is not None:
            v_map = kv[..., qk:].permute(0, 5, 1, 3, 2, 4).reshape(n, c, hp, wp)
            out = out + self.lepe(v_map).permute(0, 2, 3, 1)
        out = self.wo(out)[:, :h, :w].permute(0, 3, 1, 2).contiguous()
        return (out, r_weight, r_idx, attn) if ret_attn_mask else out

    def _downsample(self, kv: torch.Tensor, n: int, rh: int, rw: int) -> torch.Tensor:
        """Down-sample each region's keys/values.

        Args:
            kv (torch.Tensor): Keys and values of shape (n, n_win, n_win, rh, rw, c).
            n (int): Batch size.
            rh (int): Region height.
            rw (int): Region width.

        Returns:
            (torch.Tensor): Shape (n, n_win**2, kv_w2, c).
        """
        p2, c = self.n_win**2, _static_shape(kv)[-1]
        if isinstance(self.kv_down, nn.Identity):
            return kv.reshape(n, p2, rh * rw, c)
        if self.kv_downsample_mode in {"avgpool", "maxpool"}:
            ratio = self.kv_downsample_ratio
            _check(
                min(rh, rw) >= ratio,
                type(self).__name__,
                f"kv_downsample_mode={self.kv_downsample_mode!r} needs regions of at least kv_downsample_ratio={ratio} "
                f"pixels per side, got {rh}x{rw}; use a larger map, a smaller n_win or a smaller ratio",
            )
        pooled = self.kv_down(kv.reshape(n * p2, rh, rw, c).permute(0, 3, 1, 2))
        return pooled.permute(0, 2, 3, 1).reshape(n, p2, -1, c)


class AttentionLePE(nn.Module):
    """Global multi-head self-attention over all H*W tokens plus a depth-wise convolution of the input (LePE).

    Attributes:
        num_heads (int): Number of attention heads.
        head_dim (int): Channels per head.
        scale (float): Multiplier of q.k, `qk_scale or head_dim**-0.5`.
        qkv (nn.Linear): Linear(dim, 3*dim) producing q, k, v.
        attn_drop (nn.Dropout): Dropout on the attention weights (training only).
        proj (nn.Linear): Output projection.
        proj_drop (nn.Dropout): Dropout after the projection.
        lepe (nn.Conv2d | None): Depth-wise convolution of the input, or None.

    Examples:
        >>> m = AttentionLePE(32, num_heads=4)
        >>> m(torch.randn(2, 32, 6, 5)).shape
        torch.Size([2, 32, 6, 5])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        side_dwconv: int = 5,
    ):
        """Initialize the module.

        Args:
            dim (int): Channels of input and output.
            num_heads (int): Number of heads, a divisor of dim.
            qkv_bias (bool): Whether the qkv Linear has a bias.
            qk_scale (float, optional): Multiplier of q.k; defaults to head_dim**-0.5.
            attn_drop (float): Dropout probability on the attention weights.
            proj_drop (float): Dropout probability after the projection.
            side_dwconv (int): Kernel size of the depth-wise convolution; 0 disables it.
        """
        super().__init__()
        name = type(self).__name__
        _check_heads(name, "dim", dim, num_heads)
        _check_side_dwconv(name, side_dwconv)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.lepe = _dwconv(dim, side_dwconv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply global attention.

        Args:
            x (torch.Tensor): Input of shape (N, C, H, W), C == dim.

        Returns:
            (torch.Tensor): Output of shape (N, C, H, W).
        """
        n, c, h, w = _check_input(x, self.dim, type(self).__name__)
        tokens = x.reshape(n, c, h * w).transpose(1, 2)  # (n, h*w, c)
        q, k, v = self.qkv(tokens).view(n, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)  # (n, heads, h*w, d)
        out = out.transpose(1, 2).reshape(n, h * w, c)
        if self.lepe is not None:
            out = out + self.lepe(x).reshape(n, c, h * w).transpose(1, 2)
        return self.proj_drop(self.proj(out)).transpose(1, 2).reshape(n, c, h, w)
