# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Token-to-token attention from each query region to the tokens of its routed key regions (BRA's second level).

Two implementations of the same products (`attention_paths` names them and chooses), each checked against a float64
dense reference in the tests:
- gather: all routed K/V regions gathered at once, then one attention call, fused SDPA unless the weights are needed
  or the call is traced (exports keep plain matmul and softmax). The only path a dynamic export can run, whose number
  of routes is only known at run time;
- per route: one routed region at a time, logits concatenated for a single softmax and the routes' outputs summed, so
  no temporary is larger than K; with a gradient recorded `RoutedAttention` keeps only the attention matrix for
  backward and gathers K/V again there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention_paths import AUTO, GATHER, PATHS, choose_path
from .checks import check
from .regions import RegionGrid, from_regions, gather_regions, region_grid, region_valid, to_regions
from .sizes import static_shape

__all__ = ("RoutedAttention", "attend", "region_attention", "regional_routing_attention_torch", "routed_products")


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None, need_weights: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over the last two dims: fused SDPA, or matmul and softmax when the attention
    matrix is returned or the call is traced.

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
    if not need_weights and not torch.jit.is_tracing():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale), None
    logits = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
    if mask is not None:
        logits = logits.masked_fill_(~mask, float("-inf"))
    attn = logits.softmax(dim=-1)
    return attn @ v, attn if need_weights else None


def region_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    routes: torch.Tensor,
    scale: float,
    kv_grid: RegionGrid,
    need_weights: bool,
    path: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-to-token attention from each query region to the tokens of its routed key regions.

    Args:
        q (torch.Tensor): Region-major queries of shape (B*heads, Rq, Tq, d).
        k (torch.Tensor): Region-major keys of shape (B*heads, Rk, Tk, d).
        v (torch.Tensor): Region-major values of shape (B*heads, Rk, Tk, dv).
        routes (torch.Tensor): Routed key regions, long, of shape (B, heads, Rq, topk).
        scale (float): Multiplier of q.k before the softmax.
        kv_grid (RegionGrid): Region grid of the key/value map; its padded positions are masked out.
        need_weights (bool): Also return the attention matrix.
        path (str): "gather" or "per_route" (`attention_paths.PATHS`); a symbolic kv_grid needs "gather".

    Returns:
        out (torch.Tensor): Shape (B*heads, Rq, Tq, dv).
        attn (torch.Tensor | None): Shape (B, heads, Rq, Tq, topk*Tk), or None.
    """
    check(path in PATHS, "region_attention", f"path must be one of {PATHS}, got {path!r}")
    flat_routes = routes.flatten(0, 1)  # (B*heads, Rq, topk)
    mask = None
    if kv_grid.padded:  # padded keys take no weight; padded query rows are cropped by the caller
        valid = region_valid(kv_grid, flat_routes.device)
        mask = valid.index_select(0, flat_routes.reshape(-1))
        mask = mask.view(*flat_routes.shape[:2], 1, -1)  # (B*heads, Rq, 1, topk*Tk)
    if path == GATHER:
        k_sel = gather_regions(k, flat_routes).view(*flat_routes.shape[:2], -1, k.shape[-1])
        v_sel = gather_regions(v, flat_routes).view(*flat_routes.shape[:2], -1, v.shape[-1])
        out, attn = attend(q, k_sel, v_sel, scale, mask, need_weights)
    else:
        out, attn = _attend_per_route(q, k, v, flat_routes, scale, mask, need_weights)
    return out, None if attn is None else attn.view(*routes.shape[:3], q.shape[2], -1)


def _attend_per_route(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    routes: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Routed attention computed one route at a time: the per-route path of `region_attention`.

    Args:
        q (torch.Tensor): Region-major queries of shape (B', Rq, Tq, d).
        k (torch.Tensor): Region-major keys of shape (B', Rk, Tk, d).
        v (torch.Tensor): Region-major values of shape (B', Rk, Tk, dv).
        routes (torch.Tensor): Routed key regions, long, of shape (B', Rq, topk).
        scale (float): Multiplier of q.k before the softmax.
        mask (torch.Tensor | None): Boolean mask of shape (B', Rq, 1, topk*Tk), True where a key may be attended.
        need_weights (bool): Also return the attention matrix.

    Returns:
        out (torch.Tensor): Shape (B', Rq, Tq, dv).
        attn (torch.Tensor | None): Shape (B', Rq, Tq, topk*Tk), or None.
    """
    offsets = torch.arange(k.shape[0], device=routes.device).view(-1, 1, 1) * k.shape[1]
    index = (routes + offsets).permute(2, 0, 1).flatten(1)  # (topk, B'*Rq): flat key regions, route-major
    recorded = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if recorded and not need_weights and not torch.jit.is_tracing():
        return RoutedAttention.apply(q, k, v, index, scale, mask), None
    out, attn = routed_products(q, k, v, index, scale, mask)
    return out, attn if need_weights else None


def routed_products(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor, scale: float, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The products of the per-route path, with the routes given as flat key-region indices.

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
    kf, vf, qf = k.flatten(0, 1), v.flatten(0, 1), q.flatten(0, 1)
    route_indices = index.unbind(0)
    logits = torch.cat([torch.matmul(qf, kf.index_select(0, i).transpose(-2, -1)) for i in route_indices], -1)
    logits = logits.unflatten(0, q.shape[:2]).mul_(scale)
    if mask is not None:
        logits = logits.masked_fill_(~mask, float("-inf"))
    attn = logits.softmax(dim=-1)
    parts = attn.flatten(0, 1).unflatten(-1, (len(route_indices), -1)).unbind(-2)
    out = None
    for a, i in zip(parts, route_indices):
        o = a @ vf.index_select(0, i)
        out = o if out is None else out.add_(o)
    return out.unflatten(0, q.shape[:2]), attn


class RoutedAttention(torch.autograd.Function):
    """`routed_products` whose backward gathers each route's K and V again instead of keeping them.

    Autograd of the plain products keeps every route's gathered K and V (topk times K and V: 50 MiB at
    (1, 1024, 40, 40)); this keeps q, k, v (alive anyway: views of one region-major copy), the routes and the
    attention matrix (Tq x topk*Tk per query region, small) and recomputes the gathers route by route in backward, so
    no backward temporary is larger than K either. Forward is `routed_products` itself, outputs bit-identical.
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
        """Routed attention output of shape (B', Rq, Tq, dv); arguments as in `routed_products`."""
        out, attn = routed_products(q, k, v, index, scale, mask)
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
        kf, vf, qf = k.flatten(0, 1), v.flatten(0, 1), q.flatten(0, 1)
        dout = grad_out.flatten(0, 1).to(v.dtype)
        route_indices = index.unbind(0)
        probs = attn.flatten(0, 1).unflatten(-1, (len(route_indices), -1)).permute(2, 0, 1, 3)  # (topk, B'*Rq, Tq, Tk)
        dvf = torch.zeros_like(vf)
        dprobs = dout.new_empty(probs.shape)  # each route's slice contiguous: written in place
        for j, i in enumerate(route_indices):
            torch.bmm(dout, vf.index_select(0, i).transpose(-2, -1), out=dprobs[j])
            dvf.index_add_(0, i, torch.bmm(probs[j].to(v.dtype).transpose(-2, -1), dout))
        ds = dprobs.to(attn.dtype)
        ds = ds.sub_((ds * probs).sum((0, 3), keepdim=True)).mul_(probs).mul_(ctx.scale).to(q.dtype)
        dkf = torch.zeros_like(kf)
        dqf = None
        for s, i in zip(ds.unbind(0), route_indices):
            dqf = torch.bmm(s, kf.index_select(0, i)) if dqf is None else dqf.baddbmm_(s, kf.index_select(0, i))
            dkf.index_add_(0, i, torch.bmm(s.transpose(-2, -1), qf))
        return dqf.view_as(q), dkf.view_as(k), dvf.view_as(v), None, None, None


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
        >>> routes = torch.tensor([[0, 1], [1, 0], [2, 3], [3, 2]]).view(1, 1, 4, 2)
        >>> out, attn = regional_routing_attention_torch(q, k, v, 8**-0.5, routes, region_size=(2, 2))
        >>> out.shape, attn.shape
        (torch.Size([1, 8, 4, 4]), torch.Size([1, 1, 4, 4, 8]))
    """
    name = "regional_routing_attention_torch"
    kv_region_size = kv_region_size or region_size
    check(region_graph.dim() == 4, name, f"region_graph must be (B, heads, Rq, topk), got {tuple(region_graph.shape)}")
    _, heads, rq, _ = static_shape(region_graph)
    for arg, t in (("query", query), ("key", key), ("value", value)):
        check(t.dim() == 4, name, f"{arg} must be (B, C, H, W), got shape {tuple(t.shape)}")
        check(int(t.shape[1]) % heads == 0, name, f"{arg} channels must be divisible by heads={heads}")
    q_grid = region_grid(*static_shape(query)[2:], *region_size)
    kv_grid = region_grid(*static_shape(key)[2:], *kv_region_size)
    for arg, grid in (("region_size", q_grid), ("kv_region_size", kv_grid)):
        check(auto_pad or not grid.padded, name, f"map {grid.h}x{grid.w} is not a multiple of {arg}; use auto_pad=True")
    check(rq == q_grid.regions, name, f"region_graph has {rq} query regions, region_size gives {q_grid.regions}")
    q = to_regions(query, q_grid, heads)
    k = to_regions(key, kv_grid, heads)
    v = to_regions(value, kv_grid, heads)
    path = choose_path(name, AUTO, q.device, kv_grid.tokens, need_weights=True, symbolic=False, training=False).path
    out, attn = region_attention(q, k, v, region_graph, scale, kv_grid, need_weights=True, path=path)
    return from_regions(out, q_grid, heads), attn
