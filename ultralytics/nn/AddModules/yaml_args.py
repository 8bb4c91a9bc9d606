# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Model-YAML wiring of the BiFormer layers for `ultralytics.nn.tasks.parse_model`."""

from __future__ import annotations

import difflib

from torch import nn
from ultralytics.utils.ops import make_divisible

from .Biformer import BiLevelRoutingAttention_nchw, HGBlock_Biformer
from .checks import check_heads, check_min

__all__ = ("BIFORMER_LAYERS", "biformer_layer_args", "check_module_name")

BIFORMER_LAYERS = frozenset({BiLevelRoutingAttention_nchw, HGBlock_Biformer})
HGBLOCK_ARGS = ("cm", "c2", "k", "lightconv", "shortcut")  # YAML order, as upstream's HGBlock
HGBLOCK_DEFAULTS = {"k": 3, "lightconv": False, "shortcut": False}
BRA_ARGS = ("channels", "num_heads", "n_win", "topk")  # YAML order
BRA_DEFAULTS = {"num_heads": 1, "n_win": 7, "topk": 4}


def _named_args(layer: str, index: int, args: list, names: tuple[str, ...], required: int) -> dict:
    """Bind a YAML row's positional args to names, checking their count and types.

    Args:
        layer (str): Module name, for messages.
        index (int): Layer index in the YAML, for messages.
        args (list): The row's args.
        names (tuple[str, ...]): Allowed argument names in order.
        required (int): How many leading arguments are required.

    Returns:
        (dict): Name -> value.

    Raises:
        ValueError: If the count is wrong.
        TypeError: If a value has the wrong type (channel/size arguments must be int, flags bool).
    """
    if not required <= len(args) <= len(names):
        raise ValueError(
            f"layer {index} {layer}: takes {required} to {len(names)} args {list(names)}, got {len(args)}: {args}"
        )
    bound = dict(zip(names, args))
    for name, value in bound.items():
        expected = bool if name in {"lightconv", "shortcut"} else int
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise TypeError(f"layer {index} {layer}: arg '{name}' must be {expected.__name__}, got {value!r}")
    return bound


def biformer_layer_args(
    m: type[nn.Module], index: int, c1: int, args: list, n: int, width: float, max_channels: int
) -> tuple[list, int, int]:
    """Turn a YAML row of a BiFormer layer into constructor args.

    ``HGBlock_Biformer`` is wired like upstream's ``HGBlock``: ``[cm, c2, k, lightconv, shortcut]`` becomes
    ``[c1, cm, c2, k, n, lightconv, shortcut]`` and the row's repeat count moves into the block.
    ``BiLevelRoutingAttention_nchw`` keeps its channels: ``[channels, num_heads, n_win, topk]`` where channels must
    equal the input channels after width scaling, and the row's repeat count stacks that many layers.

    Args:
        m (type[nn.Module]): One of ``BIFORMER_LAYERS``.
        index (int): Layer index in the YAML.
        c1 (int): Input channels.
        args (list): The row's args.
        n (int): The row's repeat count after depth scaling.
        width (float): Width multiple of the model scale.
        max_channels (int): Channel cap of the model scale.

    Returns:
        (tuple[list, int, int]): Constructor args, output channels, and the repeat count left for parse_model.
    """
    if m is HGBlock_Biformer:
        bound = {**HGBLOCK_DEFAULTS, **_named_args(m.__name__, index, args, HGBLOCK_ARGS, required=2)}
        c2 = bound["c2"]
        return [c1, bound["cm"], c2, bound["k"], n, bound["lightconv"], bound["shortcut"]], c2, 1
    bound = {**BRA_DEFAULTS, **_named_args(m.__name__, index, args, BRA_ARGS, required=1)}
    channels = make_divisible(min(bound["channels"], max_channels) * width, 8)
    if channels != c1:
        raise ValueError(
            f"layer {index} {m.__name__}: keeps its input channels, but the YAML asks for {bound['channels']} "
            f"({channels} after width scaling) on an input of {c1} channels; set channels to {c1}"
        )
    try:  # the layer's own value checks, run here so that the error names the YAML layer
        check_heads(m.__name__, "dim", c1, bound["num_heads"])
        check_min(m.__name__, "n_win", bound["n_win"])
        check_min(m.__name__, "topk", bound["topk"])
    except ValueError as error:
        raise ValueError(f"layer {index} {error}") from None
    return [c1, bound["num_heads"], bound["n_win"], None, bound["topk"]], c1, n


def check_module_name(index: int, name: str, namespace: dict) -> None:
    """Fail clearly on a model-YAML module name that parse_model cannot resolve.

    Args:
        index (int): Layer index in the YAML.
        name (str): The row's module name.
        namespace (dict): The names parse_model resolves (``ultralytics.nn.tasks`` globals).

    Raises:
        ValueError: Naming the layer, the unknown name and the closest known layer names.
    """
    if name.startswith(("nn.", "torchvision.ops.")) or name in namespace:
        return
    layers = [k for k, v in namespace.items() if isinstance(v, type) and issubclass(v, nn.Module)]
    close = difflib.get_close_matches(name, layers, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ValueError(f"layer {index}: unknown module '{name}' in the model YAML{hint}")
