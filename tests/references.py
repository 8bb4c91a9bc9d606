# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Plain float64 reference of BiLevelRoutingAttention_nchw, shared by the module and the model tests.

Deliberately naive: dense attention over every token pair of the padded map with a boolean mask built from the routed
regions; it shares no code with the module under test.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw


class Reference(NamedTuple):
    """Output of a reference: module output, dense attention over the padded map's tokens, routed regions."""

    out: torch.Tensor
    attn: torch.Tensor | None
    routed: torch.Tensor


class RegionLayout(NamedTuple):
    """Region tiling of an (h, w) map by BiLevelRoutingAttention_nchw's rule."""

    rh: int
    rw: int
    nh: int
    nw: int


def region_layout(h: int, w: int, n_win: int) -> RegionLayout:
    """Region size (h // n_win, w // n_win), at least 1, and the number of regions per side (ceil)."""
    rh, rw = max(h // n_win, 1), max(w // n_win, 1)
    return RegionLayout(rh, rw, math.ceil(h / rh), math.ceil(w / rw))


def bra_nchw_reference(
    m: BiLevelRoutingAttention_nchw, x: torch.Tensor, mask_padding: bool = True, return_attention: bool = False
) -> Reference:
    """Dense float64 BRA: every query token against every key token of the padded map, masked by routing.

    Args:
        m (BiLevelRoutingAttention_nchw): Module whose weights are used.
        x (torch.Tensor): Input of shape (N, C, H, W).
        mask_padding (bool): Mask padded key positions (the spec); False reproduces the tutorial's math, where
            zero-padded keys take softmax weight.
        return_attention (bool): Also return the dense attention, shape (N, heads, Hp*Wp, Hp*Wp).

    Returns:
        (Reference): Output (N, C, H, W), attention or None, routed regions (N, R, k).
    """
    if any(p.dtype != torch.float64 for p in m.parameters()):  # a float64 module is used as is: its gradients flow
        m = copy.deepcopy(m).double()
    x = x.double()
    n, c, h, w = x.shape
    heads, d = m.num_heads, c // m.num_heads
    lay = region_layout(h, w, m.n_win)
    hp, wp, regions = lay.nh * lay.rh, lay.nw * lay.rw, lay.nh * lay.nw
    rows, cols = torch.arange(hp), torch.arange(wp)
    region = ((rows // lay.rh)[:, None] * lay.nw + (cols // lay.rw)[None, :]).flatten()  # region of each token
    valid = ((rows < h)[:, None] & (cols < w)[None, :]).flatten()  # real (unpadded) tokens
    members = F.one_hot(region, regions).double() * valid[:, None]  # (P, R), real tokens only

    q, k, v = F.conv2d(x, m.qkv_linear.weight, m.qkv_linear.bias).chunk(3, dim=1)
    qp, kp, vp = (F.pad(t, (0, wp - w, 0, hp - h)).flatten(2) for t in (q, k, v))  # (N, C, P), zeros at padding
    q_mean, k_mean = qp @ members / members.sum(0), kp @ members / members.sum(0)  # (N, C, R)
    routed = (q_mean.transpose(1, 2) @ k_mean).topk(min(m.topk, regions), dim=-1).indices
    allowed = torch.zeros(n, regions, regions, dtype=torch.bool).scatter_(2, routed, True)

    out = torch.empty_like(vp)
    attn = torch.empty(n, heads, hp * wp, hp * wp, dtype=x.dtype) if return_attention else None
    for b in range(n):
        mask = allowed[b][region][:, region]  # query token's region routes to key token's region
        if mask_padding:
            mask &= valid[None, :]
        for head in range(heads):
            ch = slice(head * d, (head + 1) * d)
            logits = m.scale * qp[b, ch].T @ kp[b, ch]
            weights = logits.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            out[b, ch] = (weights @ vp[b, ch].T).T
            if attn is not None:
                attn[b, head] = weights
    out = out.view(n, c, hp, wp)[:, :, :h, :w]
    if m.lepe is not None:
        out = out + F.conv2d(v, m.lepe.weight, m.lepe.bias, padding=m.lepe.padding, groups=c)
    return Reference(F.conv2d(out, m.output_linear.weight, m.output_linear.bias), attn, routed)
