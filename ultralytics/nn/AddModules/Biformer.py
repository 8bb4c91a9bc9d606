# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BiFormer modules: Bi-Level Routing Attention (BRA) and the blocks built on it; the stable import path.

Paper: "BiFormer: Vision Transformer with Bi-Level Routing Attention", Zhu et al., CVPR 2023 (arXiv 2303.08810).
Class, attribute and parameter names follow the original BiFormer code and the tutorial fork, so that state dicts and
pickled checkpoints interchange; the implementation is this fork's own (docs/biformer.md lists every difference) and
lives in the sibling files, one concern each (docs/architecture.md). Checkpoints pickle these classes as
`ultralytics.nn.AddModules.Biformer.<name>`, so that path and these names stay, whatever file the code is in.
"""

from __future__ import annotations

# Conv is importable here for checkpoints: the tutorial fork pickles HGBlock_Biformer.sc/ec as this module's Conv
from ultralytics.nn.modules import Conv  # noqa: F401

from .attention_lepe import AttentionLePE
from .bra_nchw import BiLevelRoutingAttention_nchw
from .hgblock import HGBlock_Biformer
from .legacy import BiLevelRoutingAttention, KVGather, QKVLinear, TopkRouting
from .routed_attention import regional_routing_attention_torch

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

for _name in __all__:  # pickled under this path, as before the split and as the tutorial fork does
    globals()[_name].__module__ = __name__
del _name
