# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing stays fp32 in OpenVINO: marks on the routing nodes of an exported BiFormer graph.

OpenVINO's CPU plugin runs a whole graph in bf16 where the CPU has AVX512-BF16 or AMX (and the GPU plugin in f16),
BRA's region means, affinities and top-k included, which then rank regions on 8-bit mantissas. A node marked with
OpenVINO's `precise_0` runtime info (`ov::disable_fp16_compression`; saved in the IR as its
`DisablePrecisionConversion` attribute) keeps the precision it was converted in, f32. The marks cover each BRA's
routing subgraph only: every node from its region sums (`ReduceSum`) to its `TopK`, and what computes the top-k count.
Token attention and the 1x1 projections keep the runtime's precision, as in PyTorch under autocast (docs/deploy.md).

A mark survives only on nodes that the plugin's transformations keep, which is why `region_means` and `affinity` are
written with products and a matmul, not a division and an einsum.
"""

from __future__ import annotations

from torch import nn

from ultralytics.utils import LOGGER

from .bra_nchw import BiLevelRoutingAttention_nchw

__all__ = ("PRECISE", "ROUTING_FIRST_OP", "ROUTING_LAST_OP", "keep_routing_fp32", "routing_nodes")

PRECISE = "precise_0"  # the runtime-info key of ov::disable_fp16_compression
ROUTING_FIRST_OP = "ReduceSum"  # region sums of q and k: where routing starts
ROUTING_LAST_OP = "TopK"  # the routed regions: where it ends
SCOPE_PREFIX = "__module."  # OpenVINO's PyTorch frontend names nodes "__module.<module path>/<op>/..."


def _bra_scopes(model: nn.Module) -> tuple[str, ...]:
    """Module paths of the BiLevelRoutingAttention_nchw layers of model, as suffixes of OpenVINO node scopes."""
    return tuple(name for name, m in model.named_modules() if isinstance(m, BiLevelRoutingAttention_nchw))


def _scope(node) -> str:
    """The module path an OpenVINO node was traced from ("" for a node the frontend did not name after a module)."""
    scope = node.get_friendly_name().split("/", 1)[0]
    return scope[len(SCOPE_PREFIX) :] if scope.startswith(SCOPE_PREFIX) else ""


def _is_bra(path: str, scopes: tuple[str, ...]) -> bool:
    """Whether a node scope is one of the BRA layers' own code (not their submodules); a wrapper (NMSModel) adds a
    prefix to every path."""
    return any(path == s or path.endswith(f".{s}") for s in scopes)


def routing_nodes(ov_model, model: nn.Module) -> list:
    """The routing nodes of every BRA layer of model in its converted OpenVINO model.

    Starting at each BRA's `TopK`, the nodes upstream of it that the same layer's own code traced, up to and
    including its region sums; constants and parameters excluded.

    Args:
        ov_model (openvino.Model): The model converted from `model` (Ultralytics' `torch2openvino`).
        model (nn.Module): The PyTorch model it was converted from.

    Returns:
        (list[openvino.Node]): The routing nodes, in no particular order; empty for a model without BRA.
    """
    scopes = _bra_scopes(model)
    stack = [op for op in ov_model.get_ops() if op.get_type_name() == ROUTING_LAST_OP and _is_bra(_scope(op), scopes)]
    found = {}
    while stack:
        node = stack.pop()
        if node.get_instance_id() in found:
            continue
        found[node.get_instance_id()] = node
        if node.get_type_name() == ROUTING_FIRST_OP:
            continue
        for value in node.input_values():
            parent = value.get_node()
            if parent.get_type_name() not in ("Constant", "Parameter") and _scope(parent) == _scope(node):
                stack.append(parent)
    return list(found.values())


def keep_routing_fp32(ov_model, model: nn.Module) -> int:
    """Mark every BRA routing node of a converted OpenVINO model to keep its f32 precision at bf16/f16 inference.

    Ultralytics' OpenVINO export calls this before saving (patch 0007), so the IR carries the marks and any runtime
    that loads it (AutoBackend, benchmark_app, OpenVINO Model Server) keeps routing in f32.

    Args:
        ov_model (openvino.Model): The model converted from `model`; changed in place.
        model (nn.Module): The PyTorch model it was converted from.

    Returns:
        (int): Number of marked nodes (0 for a model without BRA; 0 with a warning if no BRA node is found).
    """
    nodes = routing_nodes(ov_model, model)
    for node in nodes:
        node.get_rt_info()[PRECISE] = ""
    if _bra_scopes(model) and not nodes:
        LOGGER.warning(
            "BiLevelRoutingAttention_nchw: no routing node found in the OpenVINO model (its node names are not "
            f"'{SCOPE_PREFIX}<module path>/...'); routing runs at the runtime's precision (bf16 on bf16 CPUs)"
        )
    return len(nodes)
