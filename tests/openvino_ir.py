# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Reading OpenVINO's precision marks: which IR layers carry them, and what precision compiled nodes run in."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

PRECISE_ATTRIBUTE = "DisablePrecisionConversion"  # how the IR stores OpenVINO's precise (disable_fp16_compression) mark
ROUTING_TYPES = {"ReduceSum", "Multiply", "MatMul", "TopK"}  # region sums, means, affinities, top-k
# never marked: projections, LCE, attention, an einsum (whose rewrite loses the mark), the layout before the sums
NOT_ROUTING_TYPES = {"Convolution", "GroupConvolution", "Softmax", "Einsum", "Split", "Pad"}


def marked_layers(xml: Path) -> dict[str, str]:
    """Name to type of every layer of an OpenVINO IR that carries the precise mark."""
    return {
        layer.get("name"): layer.get("type")
        for layer in ElementTree.parse(xml).getroot().iter("layer")
        if any(a.get("name") == PRECISE_ATTRIBUTE for a in layer.iterfind("rt_info/attribute"))
    }


def compiled_precisions(compiled, names: set[str]) -> dict[str, set[str]]:
    """Runtime precisions ("f32", "bf16", "i32", ...) of a compiled OpenVINO model's nodes.

    Args:
        compiled (openvino.CompiledModel): The compiled model.
        names (set[str]): IR layer names (e.g. the marked ones).

    Returns:
        (dict[str, set[str]]): "marked": of the nodes compiled from any of `names` (reorders excluded: they convert
            between their neighbours' precisions); "convolution": of the convolutions.
    """
    seen = {"marked": set(), "convolution": set()}
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if set(info["originalLayersNames"].value.split(",")) & names and info["layerType"].value != "Reorder":
            seen["marked"].add(info["runtimePrecision"].value)
        if info["layerType"].value == "Convolution":
            seen["convolution"].add(info["runtimePrecision"].value)
    return seen
