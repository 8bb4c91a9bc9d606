# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The original (legacy) BiFormer BRA on NCHW maps and its parts: router, K/V gather, joint q/kv projection.

Not used by the model YAMLs (they use `BiLevelRoutingAttention_nchw`); kept with the original parameter names so that
BiFormer state dicts load. Sizes are read as Python ints, so traces of it are static.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .checks import check, check_heads, check_input, check_min, check_side_dwconv
from .lce import depthwise_conv
from .regions import gather_regions
from .routed_attention import attend
from .routing_precision import autocast_off, routing_dtype
from .sizes import static_shape

__all__ = ("BiLevelRoutingAttention", "KVGather", "QKVLinear", "TopkRouting")

PARAM_ATTENTION_MODES = ("qkvo", "qkv")
KV_DOWNSAMPLE_MODES = ("identity", "avgpool", "maxpool", "ada_avgpool", "ada_maxpool")
KV_DOWNSAMPLE_UNIMPLEMENTED = ("fracpool", "conv")
KV_GATHER_MODES = ("none", "soft", "hard")


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
        check_min(type(self).__name__, "topk", topk)
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
        dtype = routing_dtype(query)
        with autocast_off(query):
            logits = (query.to(dtype) * self.scale) @ key.to(dtype).transpose(-2, -1)
        logit, index = logits.topk(min(self.topk, static_shape(key)[1]), dim=-1)
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
        check(mul_weight in KV_GATHER_MODES, name, f"mul_weight must be one of {KV_GATHER_MODES}, got {mul_weight!r}")
        check(
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
        p2, topk = static_shape(kv)[1], static_shape(r_idx)[-1]  # frozen in a trace; the batch is not
        selected = rearrange(gather_regions(kv, r_idx), "(n p k) t c -> n p k t c", p=p2, k=topk)  # (n,p2,topk,w2,c)
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
        check_min(name, "n_win", n_win)
        check_min(name, "topk", topk)
        check_heads(name, "dim", dim, num_heads)
        check_heads(name, "qk_dim", self.qk_dim, num_heads)
        check_side_dwconv(name, side_dwconv)
        check(
            param_attention in PARAM_ATTENTION_MODES,
            name,
            f"param_attention must be one of {PARAM_ATTENTION_MODES}, got {param_attention!r}",
        )
        check(
            kv_downsample_mode not in KV_DOWNSAMPLE_UNIMPLEMENTED,
            name,
            f"kv_downsample_mode={kv_downsample_mode!r} is not implemented; implemented: {KV_DOWNSAMPLE_MODES}",
            NotImplementedError,
        )
        check(
            kv_downsample_mode in KV_DOWNSAMPLE_MODES,
            name,
            f"kv_downsample_mode must be one of {KV_DOWNSAMPLE_MODES}, got {kv_downsample_mode!r}",
        )
        check(
            diff_routing or not param_routing,
            name,
            "param_routing=True requires diff_routing=True (allowed: param_routing=False, or diff_routing=True)",
        )
        check(
            soft_routing or not diff_routing,
            name,
            "diff_routing=True without soft_routing ('hard' routing) is not implemented; "
            "allowed: diff_routing=False, or diff_routing=True with soft_routing=True",
            NotImplementedError,
        )
        self.scale = qk_scale or self.qk_dim**-0.5
        self.lepe = depthwise_conv(dim, side_dwconv)
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
            check_min(name, "kv_per_win", self.kv_per_win)
            pool = nn.AdaptiveAvgPool2d if mode == "ada_avgpool" else nn.AdaptiveMaxPool2d
            return pool(self.kv_per_win)
        if mode in {"avgpool", "maxpool"}:
            check_min(name, "kv_downsample_ratio", self.kv_downsample_ratio)
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
        check_input(x, self.dim, name)
        h, w = static_shape(x)[2:]
        j = self.n_win
        if self.auto_pad:
            hp, wp = math.ceil(h / j) * j, math.ceil(w / j) * j
        else:
            check(h % j == 0 and w % j == 0, name, f"map {h}x{w} is not a multiple of n_win={j}; use auto_pad=True")
            hp, wp = h, w
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        rh, rw, qk = hp // j, wp // j, self.qk_dim  # region size; p2 = n_win**2 regions below
        regions = rearrange(x, "n c (jh rh) (jw rw) -> n jh jw rh rw c", jh=j, jw=j)  # (n, j, j, rh, rw, c)
        q, kv = self.qkv(regions)  # (n, j, j, rh, rw, qk) and (n, j, j, rh, rw, qk + c)
        q_win = rearrange(q.mean((3, 4), dtype=routing_dtype(q)), "n jh jw d -> n (jh jw) d")  # (n, p2, qk)
        k_win = rearrange(kv[..., :qk].mean((3, 4), dtype=routing_dtype(q)), "n jh jw d -> n (jh jw) d")
        r_weight, r_idx = self.router(q_win, k_win)
        kv_sel = self.kv_gather(r_idx, r_weight, self._downsample(kv, rh, rw))  # (n, p2, topk, kv_w2, qk + c)
        heads = self.num_heads
        q = rearrange(q, "n jh jw rh rw c -> (n jh jw) (rh rw) c")  # a view; at most six axes each (regions.MAX_DIMS)
        q = rearrange(q, "m t (heads d) -> m heads t d", heads=heads)  # (n*p2, heads, w2, d)
        k, v = (  # (n*p2, heads, topk*kv_w2, d) each
            rearrange(t, "n p topk t (heads d) -> (n p) heads (topk t) d", heads=heads)
            for t in (kv_sel[..., :qk], kv_sel[..., qk:])
        )
        out, attn = attend(q, k, v, self.scale, None, ret_attn_mask)  # (n*p2, heads, rh*rw, c/heads)
        out = rearrange(out, "m heads t d -> m t (heads d)")  # (n*p2, rh*rw, c)
        out = rearrange(out, "(n jh jw) (rh rw) c -> n (jh rh) (jw rw) c", jh=j, jw=j, rh=rh)  # (n, hp, wp, c)
        if self.lepe is not None:
            v_map = rearrange(kv[..., qk:], "n jh jw rh rw c -> n c (jh rh) (jw rw)")  # (n, c, hp, wp)
            out = out + rearrange(self.lepe(v_map), "n c h w -> n h w c")
        out = rearrange(self.wo(out)[:, :h, :w], "n h w c -> n c h w").contiguous()  # (n, c, h, w)
        return (out, r_weight, r_idx, attn) if ret_attn_mask else out

    def _downsample(self, kv: torch.Tensor, rh: int, rw: int) -> torch.Tensor:
        """Down-sample each region's keys/values.

        Args:
            kv (torch.Tensor): Keys and values of shape (n, n_win, n_win, rh, rw, c).
            rh (int): Region height.
            rw (int): Region width.

        Returns:
            (torch.Tensor): Shape (n, n_win**2, kv_w2, c).
        """
        if isinstance(self.kv_down, nn.Identity):
            return rearrange(kv, "n jh jw rh rw c -> n (jh jw) (rh rw) c")  # (n, p2, rh*rw, c)
        if self.kv_downsample_mode in {"avgpool", "maxpool"}:
            ratio = self.kv_downsample_ratio
            check(
                min(rh, rw) >= ratio,
                type(self).__name__,
                f"kv_downsample_mode={self.kv_downsample_mode!r} needs regions of at least kv_downsample_ratio={ratio} "
                f"pixels per side, got {rh}x{rw}; use a larger map, a smaller n_win or a smaller ratio",
            )
        pooled = self.kv_down(rearrange(kv, "n jh jw rh rw c -> (n jh jw) c rh rw"))  # (n*p2, c, rh', rw')
        return rearrange(pooled, "(n p) c h w -> n p (h w) c", p=self.n_win**2)  # (n, p2, kv_w2, c)
