# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""RoutingRecorder: known routes from set weights, the module's own attention rows, untouched outputs and models."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from ultralytics.biformer.routing import RoutingRecorder
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw

from .conftest import BRA_LAYERS

H, W, N_WIN, TOPK = 7, 9, 3, 4  # regions of 2x3: a 4x3 grid whose last row is partial
REGIONS = 12
# fp32 attention weights against float64: logits reach 143 * 12**-0.5 = 41 here, and their fp32 rounding (2^-24
# relative, more through the CPU's matmul kernel) moves a weight by up to ~1e-6 (measured 1.25e-6 on an AMX Xeon)
ROW_ATOL = 1e-5


def region_of(h: int, w: int) -> torch.Tensor:
    """Region index of every map cell, shape (H, W), by the layout the module documents."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (rows // 2) * 3 + cols // 3


def routed_module(m: torch.Tensor) -> BiLevelRoutingAttention_nchw:
    """A BRA over 12 channels whose region affinity is M[s, r] for inputs one-hot per region: q = M x, k = v = x."""
    bra = BiLevelRoutingAttention_nchw(REGIONS, num_heads=1, n_win=N_WIN, topk=TOPK).eval()
    with torch.no_grad():
        weight = torch.cat((m, torch.eye(REGIONS), torch.eye(REGIONS)))[..., None, None]
        bra.qkv_linear.weight.copy_(weight)
        bra.qkv_linear.bias.zero_()
    return bra


def one_hot_regions(perm: torch.Tensor, seed: int) -> torch.Tensor:
    """Input (12, H, W): region s holds e_perm[s] plus per-token noise that averages to zero over its real cells."""
    region = region_of(H, W)
    x = torch.eye(REGIONS)[perm[region]].permute(2, 0, 1).clone()  # (C, H, W)
    noise = torch.randn(REGIONS, H, W, generator=torch.Generator().manual_seed(seed)) * 0.05
    for s in range(REGIONS):
        cells = region == s
        noise[:, cells] -= noise[:, cells].mean(1, keepdim=True)
    return x + noise


@pytest.fixture
def scores() -> torch.Tensor:
    """M: distinct affinities, at least 1 apart, so the ranking is known in advance."""
    return torch.randperm(REGIONS * REGIONS, generator=torch.Generator().manual_seed(0)).view(REGIONS, REGIONS).float()


def test_recorded_routes_are_the_known_ones(scores: torch.Tensor):
    """With q = M x, k = x and one-hot region means, region r routes to the TOPK largest M[:, r] (padded grid)."""
    bra = routed_module(scores)
    perm = torch.tensor([3, 1, 4, 0, 8, 5, 2, 7, 6, 11, 9, 10])
    x = torch.stack((one_hot_regions(torch.arange(REGIONS), 1), one_hot_regions(perm, 2)))
    model = nn.Sequential(nn.Identity(), bra)
    with RoutingRecorder(model) as rec:
        model(x)
    (layer,) = rec.record
    assert (layer.index, layer.name, layer.layer, rec.input_hw) == (0, "1", None, (H, W))
    assert tuple(layer.grid) == (H, W, 2, 3, 4, 3)
    # image 0: affinity[r, s] = M[s, r]; image 1: region s holds e_perm[s], so affinity[r, s] = M[perm[s], perm[r]]
    expected = torch.stack((scores.T, scores[perm][:, perm].T))
    torch.testing.assert_close(layer.affinity, expected, atol=1e-4, rtol=0)
    assert torch.equal(layer.routes, expected.argsort(-1, descending=True)[..., :TOPK])
    assert torch.equal(layer.routes[0, 0], scores[:, 0].argsort(descending=True)[:TOPK])
    assert (layer.route_affinity.diff(dim=-1) < 0).all()  # most affine first
    assert layer.popularity(1).sum() == REGIONS * TOPK


def test_attention_row_is_the_modules_and_lands_on_its_tokens(scores: torch.Tensor):
    """The recorded row equals ret_attn_mask's, and placed on the map it equals softmax(scale q.k) over routed cells."""
    bra = routed_module(scores)
    x = one_hot_regions(torch.arange(REGIONS), 3)[None]
    with RoutingRecorder(bra) as rec:
        bra(x)
    layer = rec.record[0]
    for cell in [(6, 8), (3, 4), (0, 0)]:  # partial corner region, a middle token, the first token
        att = layer.attention(cell)
        _, attn = bra(x, ret_attn_mask=True)
        assert (att.region, att.token) == {(6, 8): (11, 2), (3, 4): (4, 4), (0, 0): (0, 0)}[cell]
        assert torch.equal(att.weights, attn[0, :, att.region, att.token])
        # independent float64 reference on the map: the query token against every real cell of its routed regions
        q = scores.double() @ x[0, :, cell[0], cell[1]].double()
        logits = bra.scale * torch.einsum("c,chw->hw", q, x[0].double())
        routed = torch.isin(region_of(H, W), layer.routes[0, att.region])
        expected = torch.zeros(H, W, dtype=torch.float64)
        expected[routed] = logits[routed].softmax(0)
        torch.testing.assert_close(att.map[0].double(), expected, atol=ROW_ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"cell must be a \(row, col\) inside the 7x9 map"):
        layer.attention((7, 0))


def tensors(output) -> list[torch.Tensor]:
    """Every tensor of a nested model output, in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if output is None:
        return []
    return [t for item in (output.values() if isinstance(output, dict) else output) for t in tensors(item)]


@contextlib.contextmanager
def routes_of_forward(layers: list[BiLevelRoutingAttention_nchw]):
    """Collect the routed regions each layer's forward computes and attends along (its `_route` calls), in order."""
    routes = []

    def spying(route):
        def spy(q, k, grid):
            routing = route(q, k, grid)
            routes.append(routing.routes)
            return routing

        return spy

    for layer in layers:
        layer._route = spying(layer._route)
    try:
        yield routes
    finally:
        for layer in layers:
            del layer._route


def test_recording_leaves_outputs_and_model_untouched(variant: tuple[str, nn.Module]):
    """Both fork models: bit-identical outputs with and without recording, same state dict, no hook left after."""
    name, model = variant
    x = torch.rand(1, 3, 160, 224, generator=torch.Generator().manual_seed(0))
    keys = list(model.state_dict())
    layers = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention_nchw)]
    with torch.no_grad():
        plain = model(x)
        with RoutingRecorder(model) as rec, routes_of_forward(layers) as forward_routes:
            recorded = model(x)
        again = model(x)
    outputs = [tensors(plain), tensors(recorded), tensors(again)]
    assert len(outputs[0]) > 1 and all(torch.isfinite(t).all() for t in outputs[0])
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(*outputs))
    assert list(model.state_dict()) == keys
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert [r.layer for r in rec.record] == BRA_LAYERS[name]
    assert [r.index for r in rec.record] == list(range(len(BRA_LAYERS[name])))
    assert rec.input_hw == (160, 224)
    for r, routes in zip(rec.record, forward_routes, strict=True):  # the routes forward itself used
        assert torch.equal(r.routes, routes)
        assert r.routes.shape == (1, r.grid.nh * r.grid.nw, min(r.module.topk, r.grid.nh * r.grid.nw))


def test_model_without_bra_layers_is_refused():
    """A recorder on a model without BRA layers says so."""
    with pytest.raises(ValueError, match="model has no BiLevelRoutingAttention_nchw layers to record"):
        RoutingRecorder(nn.Sequential(nn.Conv2d(3, 3, 1)))
