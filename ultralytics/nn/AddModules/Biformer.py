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

# Checkpoints pickle a class by its __module__ and name. Tutorial checkpoints and this fork's earlier ones name these
# classes ultralytics.nn.AddModules.Biformer.<name>, so the classes claim this module whatever file defines them: any
# future move of the code keeps every checkpoint loadable. The cost: tools that look a class up in the file of its
# __module__ do not find it here. inspect.getsource(BiLevelRoutingAttention_nchw) raises "OSError: could not find
# class definition", and torch.save warns "Couldn't retrieve source code for container of type ..." (harmless: that
# source is only used to warn about changed code at load). Each class's code is in the sibling file imported above
# (docs/architecture.md maps them).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
