# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Record what every BRA layer of a model routes in one forward pass, with hooks (the model is not edited)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.AddModules.bra_nchw import RegionRouting
from ultralytics.nn.AddModules.regions import RegionGrid, cell_region, place_routed
from ultralytics.nn.tasks import BaseModel


@dataclass(frozen=True)
class TokenAttention:
    """Where one query token's attention lands: its weights over the tokens of its routed regions.

    Attributes:
        cell (tuple[int, int]): Map position (row, col) of the query token.
        region (int): Its region (row-major over the grid).
        token (int): Its token index within the region (row-major over rh x rw).
        weights (torch.Tensor): Attention row of shape (num_heads, k*rh*rw), route j's tokens at j*rh*rw + ky*rw + kx,
            exactly the module's `ret_attn_mask` output at [n, :, region, token]; zero at padded key positions.
        map (torch.Tensor): The same weights placed on the map, shape (num_heads, h, w); zero outside the routed regions.
    """

    cell: tuple[int, int]
    region: int
    token: int
    weights: torch.Tensor
    map: torch.Tensor


@dataclass(frozen=True)
class LayerRouting:
    """The routing of one BRA layer in one forward pass.

    Attributes:
        index (int): Position of the layer among the model's BRA layers (module order), from 0.
        name (str): Module path inside the recorded model, e.g. "model.9.0".
        layer (int | None): Index of the Ultralytics model layer holding it (the YAML row), None outside such models.
        module (BiLevelRoutingAttention_nchw): The layer.
        input_hw (tuple[int, int]): Size (height, width) of the network input of this pass.
        grid (RegionGrid): Region grid of the layer's (h, w) map: region size (rh, rw), regions per side (nh, nw).
        affinity (torch.Tensor): Region affinities of shape (N, R, R), query region on dim 1, key region on dim 2.
        routes (torch.Tensor): Routed key regions of shape (N, R, k), most affine first, k = min(topk, R).
        inputs (torch.Tensor): The layer's input of shape (N, C, h, w), detached, for `attention` on request.
    """

    index: int
    name: str
    layer: int | None
    module: BiLevelRoutingAttention_nchw
    input_hw: tuple[int, int]
    grid: RegionGrid
    affinity: torch.Tensor
    routes: torch.Tensor
    inputs: torch.Tensor

    @property
    def k(self) -> int:
        """Routed regions per query region (topk clamped to the region count)."""
        return self.routes.shape[-1]

    @property
    def route_affinity(self) -> torch.Tensor:
        """Affinity of each routed region, shape (N, R, k), aligned with `routes` (so non-increasing along k)."""
        return self.affinity.gather(-1, self.routes)

    def popularity(self, n: int = 0) -> torch.Tensor:
        """How many query regions route to each key region, shape (nh, nw) long, for image n of the batch."""
        counts = torch.bincount(self.routes[n].flatten(), minlength=self.grid.nh * self.grid.nw)
        return counts.view(self.grid.nh, self.grid.nw)

    def attention(self, cell: tuple[int, int], n: int = 0) -> TokenAttention:
        """The attention row of one query token, from the module's own `ret_attn_mask` output on the recorded input.

        The module's forward runs on image n alone, past its module hooks, so that an active recorder's record stays
        that of the recorded pass.

        Args:
            cell (tuple[int, int]): Map position (row, col) of the query token, 0 <= row < h, 0 <= col < w.
            n (int): Image of the batch.

        Returns:
            (TokenAttention): The row and its placement on the map.
        """
        g = self.grid
        if not (0 <= cell[0] < g.h and 0 <= cell[1] < g.w):
            raise ValueError(f"cell must be a (row, col) inside the {g.h}x{g.w} map of BRA layer {self.name}, got {cell}")
        region, token = cell_region(g, cell)
        with torch.no_grad():
            _, attn = self.module.forward(self.inputs[n : n + 1], ret_attn_mask=True)
        weights = attn[0, :, region, token].float()  # (heads, k*rh*rw)
        return TokenAttention(cell, region, token, weights, place_routed(weights, self.routes[n, region], g))


def torch_model(model: nn.Module) -> nn.Module:
    """The PyTorch module that actually runs: an AutoBackend's backend model when it is one, else model itself."""
    inner = getattr(getattr(model, "backend", None), "model", None)
    return inner if isinstance(inner, nn.Module) else model


def bra_layers(model: nn.Module) -> list[tuple[str, int | None, BiLevelRoutingAttention_nchw]]:
    """Every BRA layer of a model in module order: (module path, Ultralytics layer index or None, module).

    Args:
        model (nn.Module): Any module: an Ultralytics model, its `.model`, an AutoBackend (its PyTorch model is
            searched), a plain nn.Module.

    Returns:
        (list[tuple[str, int | None, BiLevelRoutingAttention_nchw]]): The layers; empty when there are none.
    """
    model = torch_model(model)
    owner = {}  # id of each module inside an Ultralytics layer -> that layer's index (`i`, set by parse_model)
    for module in model.modules():
        if isinstance(getattr(module, "i", None), int) and hasattr(module, "f"):
            owner.update({id(sub): module.i for sub in module.modules()})
    return [
        (name, owner.get(id(m)), m) for name, m in model.named_modules() if isinstance(m, BiLevelRoutingAttention_nchw)
    ]


class RoutingRecorder:
    """Record the routing of every BRA layer of a model while it runs; a context manager.

    While active, hooks note each pass of the model: its input size (a forward pre-hook on the model), and for each
    BRA layer the `RegionRouting` its forward computed (the layer's routing hook: the very tensors it attends along)
    with a detached reference to its input (a forward hook). Nothing is written into the model, its outputs are
    unchanged, and without an active recorder no hook exists. Each pass of the model (an image batch, or a training
    batch dict) replaces the previous record; a layer run on its own outside a pass of the model leaves it alone.

    Attributes:
        root (nn.Module): The module whose forward receives the image: the Ultralytics model inside `model`, or `model`.
        layers (list[tuple[str, int | None, BiLevelRoutingAttention_nchw]]): The BRA layers, as `bra_layers` lists them.
        input_hw (tuple[int, int] | None): Input size (height, width) of the last pass of `root`.
        record (list[LayerRouting]): Routing of the last pass, one entry per BRA layer that ran, in module order.

    The recorder hooks the modules of the model it is given. Ultralytics' predictor runs a copy of the model
    (`predictor.model`, made at its setup), so hook that one to record `predict` (`routing_maps` and
    `yolo predict ... visualize=True` do this).

    Examples:
        >>> from ultralytics import RTDETR
        >>> model = RTDETR("rtdetr-l-Biformer.yaml").model.eval()
        >>> with RoutingRecorder(model) as rec:
        ...     _ = model(torch.rand(1, 3, 160, 224))
        >>> rec.input_hw, [(r.layer, tuple(r.grid), r.k) for r in rec.record][:2]
        ((160, 224), [(9, (5, 7, 1, 1, 5, 7), 4), (9, (5, 7, 1, 1, 5, 7), 4)])
    """

    def __init__(self, model: nn.Module):
        """Find the BRA layers of a model (no hooks yet: `start` or `with` adds them).

        Args:
            model (nn.Module): Any module containing BiLevelRoutingAttention_nchw layers, e.g. `RTDETR(...).model` or a
                predictor's AutoBackend.
        """
        model = torch_model(model)
        self.layers = bra_layers(model)
        if not self.layers:
            raise ValueError(f"model has no BiLevelRoutingAttention_nchw layers to record ({type(model).__name__})")
        self.root = next((m for m in model.modules() if isinstance(m, BaseModel)), model)
        self.input_hw: tuple[int, int] | None = None
        self.record: list[LayerRouting] = []
        self._in_pass = False
        self._routings: dict[int, RegionRouting] = {}
        self._pass: dict[int, LayerRouting] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def start(self) -> RoutingRecorder:
        """Add the hooks (idempotent). The root's end-of-pass hook comes last, after a bare layer's own hook."""
        if not self._handles:
            self._handles.append(self.root.register_forward_pre_hook(self._begin_pass))
            for index, (name, layer, module) in enumerate(self.layers):
                self._handles.append(module.register_routing_hook(self._routing_hook(index)))
                self._handles.append(module.register_forward_hook(self._layer_hook(index, name, layer)))
            self._handles.append(self.root.register_forward_hook(self._end_pass, always_call=True))  # even if it raises
        return self

    def stop(self) -> None:
        """Remove the hooks; the last record stays readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._in_pass = False

    def __enter__(self) -> RoutingRecorder:
        """Start recording."""
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        """Stop recording."""
        self.stop()

    def _begin_pass(self, module: nn.Module, args: tuple) -> None:
        """Forward pre-hook on the root: a new pass begins; note its input size (of the image batch, or the
        ``img`` of a training batch dict)."""
        x = args[0]["img"] if isinstance(args[0], dict) else args[0]
        self.input_hw = tuple(int(s) for s in x.shape[-2:])
        self._in_pass, self._routings, self._pass, self.record = True, {}, {}, []

    def _end_pass(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Forward hook on the root: the pass is over; later layer calls are not part of it."""
        self._in_pass = False

    def _routing_hook(self, index: int):
        """Routing hook of one BRA layer: keep the routing its forward computed, for the layer's forward hook."""

        def hook(module: BiLevelRoutingAttention_nchw, routing: RegionRouting) -> None:
            self._routings[index] = routing

        return hook

    def _layer_hook(self, index: int, name: str, layer: int | None):
        """Forward hook of one BRA layer: store its routing with its input for this pass."""

        def hook(module: BiLevelRoutingAttention_nchw, args: tuple, output: Any) -> None:
            routing = self._routings.pop(index, None) if self._in_pass else None
            if routing is None:
                return
            x = args[0].detach()
            size = self.input_hw or tuple(x.shape[-2:])
            self._pass[index] = LayerRouting(index, name, layer, module, size, *routing, x)
            self.record = [self._pass[i] for i in sorted(self._pass)]

        return hook
