# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Bi-Level Routing Attention on NCHW maps (BiFormer's `nchwBRA`), the layer both model YAMLs use."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .attention_paths import AUTO, PathChoice, backend_name, choose_path, log_once
from .checks import check_heads, check_input, check_min, check_side_dwconv
from .lce import depthwise_conv
from .regions import RegionGrid, bra_grid, from_regions, qkv_to_regions, region_means
from .routed_attention import region_attention
from .routing_hooks import register_routing_hook, run_routing_hooks
from .routing_precision import autocast_off, routing_dtype
from .sizes import at_most, map_size

__all__ = ("BiLevelRoutingAttention_nchw", "RegionRouting")


class RegionRouting(NamedTuple):
    """What BRA's routing decided for one input: the grid, every region-pair affinity and the routed regions."""

    grid: RegionGrid
    affinity: torch.Tensor  # (N, R, R), at least fp32: query region along dim 1, key region along dim 2
    routes: torch.Tensor  # (N, R, k) long: routed key regions of each query region, most affine first


class BiLevelRoutingAttention_nchw(nn.Module):
    """Bi-Level Routing Attention on NCHW maps: region routing, then token attention.

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
        attn_backend (str): Token-attention path: "auto" (the default) or one of `attention_paths.PATHS`,
            "gather" and "per_route"; settable after construction (`m.attn_backend = "per_route"`), "torch" meaning
            "auto". `auto` defers to $BIFORMER_ATTN_BACKEND, then to the rule of `attention_paths.auto_path`.
        dynamic (bool): While tracing, record H and W as sizes computed from the input instead of freezing them, so
            that one exported graph serves any input size. A class attribute (False) that Ultralytics' exporter sets
            on the instances of the exported copy when `dynamic=True`; the batch size is never frozen.

    Examples:
        >>> m = BiLevelRoutingAttention_nchw(64, num_heads=4, n_win=7, topk=4)
        >>> m(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    dynamic = False

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        n_win: int = 7,
        qk_scale: float | None = None,
        topk: int = 4,
        side_dwconv: int = 3,
        auto_pad: bool = False,
        attn_backend: str = AUTO,
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
            attn_backend (str): Token-attention path, one of `attention_paths.ATTN_BACKENDS`: "auto", "gather",
                "per_route" or "torch" (the original's name, meaning "auto").
        """
        super().__init__()
        name = type(self).__name__
        check_heads(name, "dim", dim, num_heads)
        check_min(name, "n_win", n_win)
        check_min(name, "topk", topk)
        check_side_dwconv(name, side_dwconv)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or dim**-0.5
        self.lepe = depthwise_conv(dim, side_dwconv)
        self.topk = topk
        self.n_win = n_win
        self.qkv_linear = nn.Conv2d(dim, 3 * dim, kernel_size=1)
        self.output_linear = nn.Conv2d(dim, dim, kernel_size=1)
        self.attn_backend = attn_backend

    @property
    def attn_backend(self) -> str:
        """The token-attention path requested: "auto" or one of `attention_paths.PATHS`."""
        return self._attn_backend

    @attn_backend.setter
    def attn_backend(self, value: str) -> None:
        """Request a token-attention path, one of `attention_paths.ATTN_BACKENDS` ("torch" is stored as "auto")."""
        self._attn_backend = backend_name(type(self).__name__, value)

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled module, dropping the tutorial's `attn_fn`; checkpoints without a path run "auto".

        Tutorial checkpoints carry a function as `attn_fn`; neither they nor earlier checkpoints of this fork record
        an attention path.
        """
        state = {k: v for k, v in state.items() if k != "attn_fn"}
        super().__setstate__({"_attn_backend": AUTO, **state})

    def attention_path(self, grid: RegionGrid, device: torch.device, need_weights: bool, training: bool) -> PathChoice:
        """The token-attention path a call runs (`attention_paths.choose_path`), logged once per layer and path.

        Args:
            grid (RegionGrid): Region grid of the map.
            device (torch.device): Device of the input.
            need_weights (bool): Whether the attention matrix is returned.
            training (bool): Whether a gradient is recorded.

        Returns:
            (PathChoice): The path and why it was chosen.
        """
        name = type(self).__name__
        tokens = 0 if grid.symbolic else grid.tokens
        choice = choose_path(name, self.attn_backend, device, tokens, need_weights, grid.symbolic, training)
        log_once(self, f"{name}(dim={self.dim}, heads={self.num_heads})", choice)
        return choice

    def register_routing_hook(self, hook: Callable[[nn.Module, RegionRouting], None]) -> RemovableHandle:
        """Call ``hook(module, routing)`` with the `RegionRouting` of every forward: the routes it attends along.

        The one inspection point of the layer (the routing maps record through it). The hook receives the tensors
        forward uses; it must not modify them. Hooks are kept outside the module (`routing_hooks`): checkpoints and
        deep copies carry none, and compiled code (torch.compile) runs none.

        Args:
            hook (Callable[[nn.Module, RegionRouting], None]): Called with this module and its routing.

        Returns:
            (RemovableHandle): ``handle.remove()`` unregisters the hook.

        Examples:
            >>> m, seen = BiLevelRoutingAttention_nchw(64, n_win=7, topk=4), []
            >>> handle = m.register_routing_hook(lambda module, routing: seen.append(routing))
            >>> _ = m(torch.randn(1, 64, 14, 14))
            >>> handle.remove()
            >>> tuple(seen[0].grid), seen[0].routes.shape
            ((14, 14, 2, 2, 7, 7), torch.Size([1, 49, 4]))
        """
        return register_routing_hook(self, hook)

    def _route(self, q: torch.Tensor, k: torch.Tensor, grid: RegionGrid) -> RegionRouting:
        """Route every query region to the min(topk, R) key regions of largest affinity, and run the routing hooks.

        The affinity of two regions is the dot product of their mean query and mean key, heads joined, computed
        without gradient in at least fp32.

        Args:
            q (torch.Tensor): Region-major queries of shape (B*heads, R, rh*rw, head_dim), zeros at padding.
            k (torch.Tensor): Region-major keys of the same shape.
            grid (RegionGrid): Region grid of the map.

        Returns:
            (RegionRouting): The grid, the (B, R, R) affinities (query regions along dim 1) and the (B, R, k) routes,
                most affine first.
        """
        with torch.no_grad(), autocast_off(q):
            dtype = routing_dtype(q)
            q_mean, k_mean = (region_means(x, grid, self.num_heads, dtype) for x in (q, k))
            affinity = q_mean @ k_mean.transpose(1, 2)
            routing = RegionRouting(grid, affinity, affinity.topk(at_most(grid.regions, self.topk), dim=-1).indices)
        run_routing_hooks(self, routing)
        return routing

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
        check_input(x, self.dim, type(self).__name__)
        grid = bra_grid(*map_size(x, symbolic=self.dynamic and torch.jit.is_tracing()), self.n_win)
        qkv = self.qkv_linear(x)
        training = torch.is_grad_enabled() and (x.requires_grad or self.qkv_linear.weight.requires_grad)
        path = self.attention_path(grid, x.device, ret_attn_mask, training).path
        q, k, v = qkv_to_regions(qkv, grid, self.num_heads)
        routes = self._route(q, k, grid).routes.unsqueeze(1).expand(-1, self.num_heads, -1, -1)
        out, attn = region_attention(q, k, v, routes, self.scale, grid, need_weights=ret_attn_mask, path=path)
        out = from_regions(out, grid, self.num_heads)
        if self.lepe is not None:
            out = out + self.lepe(qkv[:, 2 * self.dim :])
        out = self.output_linear(out)
        return (out, attn) if ret_attn_mask else out
