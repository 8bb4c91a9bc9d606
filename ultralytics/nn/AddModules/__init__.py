# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BiFormer layers added by the ultralytics-biformer fork."""

from __future__ import annotations

from .Biformer import (
    AttentionLePE,
    BiLevelRoutingAttention,
    BiLevelRoutingAttention_nchw,
    HGBlock_Biformer,
    KVGather,
    QKVLinear,
    TopkRouting,
    regional_routing_attention_torch,
)

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
