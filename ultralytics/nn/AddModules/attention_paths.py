# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Which implementation of BRA's token attention runs: the named paths, the `auto` rule and its override.

Two paths compute the same products (each checked against a float64 dense reference in the tests):
- GATHER: every routed K/V region gathered at once, then one attention call (fused SDPA where it applies);
- PER_ROUTE: one routed region at a time, no temporary larger than K (`routed_attention.RoutedAttention`).

`BiLevelRoutingAttention_nchw.attn_backend` names one of them or AUTO. AUTO asks the environment variable ENV_VAR
first (the way timm's TIMM_FUSED_ATTN works, so that the `yolo` CLI can choose too), then `auto_path`'s rule, which
docs/gpu.md states with the measurements behind it.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from .checks import check

__all__ = (
    "ATTN_BACKENDS",
    "AUTO",
    "ENV_VAR",
    "GATHER",
    "PATHS",
    "PER_ROUTE",
    "PER_ROUTE_MAX_REGION_TOKENS",
    "PathChoice",
    "auto_path",
    "backend_name",
    "choose_path",
)

GATHER = "gather"
PER_ROUTE = "per_route"
PATHS = (GATHER, PER_ROUTE)
AUTO = "auto"
ALIASES = {"torch": AUTO}  # the original BiFormer's only backend name
ATTN_BACKENDS = (AUTO, *PATHS, *ALIASES)
ENV_VAR = "BIFORMER_ATTN_BACKEND"
# CPU: the per-route path while a region holds at most this many tokens, the gather path (fused SDPA) above; at
# n_win=7, maps up to 48x48 have regions of at most 6x6 = 36 tokens (RT-DETR's P5 map is 20x20 at 640 px, 40x40
# at 1280), 80x80 has 11x11 = 121 (`make bench` measures both paths; docs/gpu.md gives the figures)
PER_ROUTE_MAX_REGION_TOKENS = 64


class PathChoice(NamedTuple):
    """An attention path and why it serves the call: "requested", "$BIFORMER_ATTN_BACKEND" or the auto rule's reason."""

    path: str
    reason: str


def backend_name(module: str, value: object, source: str = "attn_backend") -> str:
    """Validate an attention backend name and return its canonical form ("torch" -> "auto").

    Args:
        module (str): Module name, for the error.
        value (object): The requested name.
        source (str): Where the name came from (the argument or the environment variable), for the error.

    Returns:
        (str): AUTO or one of PATHS.

    Raises:
        ValueError: If value is not one of ATTN_BACKENDS.
    """
    check(value in ATTN_BACKENDS, module, f"{source} must be one of {ATTN_BACKENDS}, got {value!r}")
    return ALIASES.get(value, value)


def auto_path(device: torch.device, region_tokens: int, need_weights: bool, symbolic: bool) -> PathChoice:
    """The `auto` rule: the path that serves a call best by the measurements in docs/gpu.md.

    Args:
        device (torch.device): Device of the attention inputs.
        region_tokens (int): Tokens per region, padding included (ignored when symbolic).
        need_weights (bool): Whether the attention matrix is returned.
        symbolic (bool): Whether the sizes are traced tensors (a dynamic export).

    Returns:
        (PathChoice): The path and the rule's reason. The precision does not enter: on CPU fp32 and bf16 autocast
            rank the paths alike.
    """
    if symbolic:
        return PathChoice(GATHER, "dynamic trace: the number of routes is symbolic")
    if device.type != "cpu":
        return PathChoice(GATHER, f"{device.type}: one fused attention call over the gathered K/V")
    if need_weights:
        return PathChoice(PER_ROUTE, "cpu, attention weights returned: no gathered K/V copy")
    if region_tokens <= PER_ROUTE_MAX_REGION_TOKENS:
        return PathChoice(PER_ROUTE, f"cpu, {region_tokens} <= {PER_ROUTE_MAX_REGION_TOKENS} tokens per region")
    return PathChoice(GATHER, f"cpu, {region_tokens} > {PER_ROUTE_MAX_REGION_TOKENS} tokens per region: fused SDPA")


def choose_path(
    module: str, backend: str, device: torch.device, region_tokens: int, need_weights: bool, symbolic: bool
) -> PathChoice:
    """The path a layer runs: its explicit backend, else ENV_VAR, else `auto_path`; refused where it cannot serve.

    Args:
        module (str): Module name, for errors.
        backend (str): The layer's canonical `attn_backend` (AUTO or one of PATHS).
        device (torch.device): Device of the attention inputs.
        region_tokens (int): Tokens per region, padding included.
        need_weights (bool): Whether the attention matrix is returned.
        symbolic (bool): Whether the sizes are traced tensors (a dynamic export).

    Returns:
        (PathChoice): The path and why.

    Raises:
        ValueError: If ENV_VAR holds an unknown name, or the requested path is PER_ROUTE inside a dynamic trace.
    """
    choice = PathChoice(backend, "requested")
    if backend == AUTO:
        override = os.environ.get(ENV_VAR, AUTO)
        choice = PathChoice(backend_name(module, override, f"${ENV_VAR}"), f"${ENV_VAR}")
    if choice.path == AUTO:
        return auto_path(device, region_tokens, need_weights, symbolic)
    served = not (symbolic and choice.path == PER_ROUTE)
    check(
        served,
        module,
        f"attn_backend {PER_ROUTE!r} ({choice.reason}) cannot run in a dynamic trace, whose number of routes is "
        f"symbolic; use {GATHER!r} or {AUTO!r} there",
    )
    return choice
