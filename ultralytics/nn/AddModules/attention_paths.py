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
import weakref
from typing import NamedTuple

import torch
from torch import nn
from ultralytics.utils import LOGGER

from .checks import check

__all__ = (
    "ATTN_BACKENDS",
    "AUTO",
    "ENV_VAR",
    "GATHER",
    "PATHS",
    "PER_ROUTE",
    "PER_ROUTE_MAX_TOKENS_INFERENCE",
    "PER_ROUTE_MAX_TOKENS_TRAINING",
    "PathChoice",
    "auto_path",
    "backend_name",
    "choose_path",
    "log_once",
)

GATHER = "gather"
PER_ROUTE = "per_route"
PATHS = (GATHER, PER_ROUTE)
AUTO = "auto"
ALIASES = {"torch": AUTO}  # the original BiFormer's only backend name
ATTN_BACKENDS = (AUTO, *PATHS, *ALIASES)
ENV_VAR = "BIFORMER_ATTN_BACKEND"
# CPU: the per-route path while a region holds at most this many tokens, the gather path (fused SDPA) above. At
# n_win=7 a region has (H // 7) x (W // 7) tokens: 4 on RT-DETR's P5 map at 640 px (20x20), 25 at 40x40, 64 at 60x60,
# 121 at 80x80, 196 at 100x100. Without a gradient the gather path's forward is faster from 80x80; in training the
# per-route path costs the same at 80x80 with a quarter less memory, and gather wins from 100x100 (`make bench`;
# docs/gpu.md gives the figures)
PER_ROUTE_MAX_TOKENS_INFERENCE = 64
PER_ROUTE_MAX_TOKENS_TRAINING = 144
_LOGGED: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()  # kept out of checkpoints


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


def auto_path(
    device: torch.device, region_tokens: int, need_weights: bool, symbolic: bool, training: bool
) -> PathChoice:
    """The `auto` rule: the path that serves a call best by the measurements in docs/gpu.md.

    Args:
        device (torch.device): Device of the attention inputs.
        region_tokens (int): Tokens per region, padding included (ignored when symbolic).
        need_weights (bool): Whether the attention matrix is returned.
        symbolic (bool): Whether the sizes are traced tensors (a dynamic export).
        training (bool): Whether a gradient is recorded (a backward pass follows).

    Returns:
        (PathChoice): The path and the rule's reason. The precision does not enter: `make bench` and the GPU run
            measure fp32 and autocast alike, and no ranking has been shown to turn on it.
    """
    if symbolic:
        return PathChoice(GATHER, "dynamic trace: the number of routes is symbolic")
    if need_weights:
        return PathChoice(PER_ROUTE, "attention weights returned: no gathered K/V copy")
    if device.type != "cpu":
        return PathChoice(GATHER, f"{device.type}: one fused attention call over the gathered K/V")
    limit = PER_ROUTE_MAX_TOKENS_TRAINING if training else PER_ROUTE_MAX_TOKENS_INFERENCE
    mode = "training" if training else "inference"
    if region_tokens <= limit:
        return PathChoice(PER_ROUTE, f"cpu {mode}, {region_tokens} <= {limit} tokens per region")
    return PathChoice(GATHER, f"cpu {mode}, {region_tokens} > {limit} tokens per region: fused SDPA")


def choose_path(
    module: str,
    backend: str,
    device: torch.device,
    region_tokens: int,
    need_weights: bool,
    symbolic: bool,
    training: bool,
) -> PathChoice:
    """The path a call runs: the layer's explicit backend, else ENV_VAR, else `auto_path`.

    An explicit `per_route` cannot serve a dynamic trace and is refused there. ENV_VAR only changes what `auto` means,
    so its `per_route` gives way to `gather` in a dynamic trace (a variable set for training must not break a later
    `dynamic=True` export), and the reason says so.

    Args:
        module (str): Module name, for errors.
        backend (str): The layer's canonical `attn_backend` (AUTO or one of PATHS).
        device (torch.device): Device of the attention inputs.
        region_tokens (int): Tokens per region, padding included.
        need_weights (bool): Whether the attention matrix is returned.
        symbolic (bool): Whether the sizes are traced tensors (a dynamic export).
        training (bool): Whether a gradient is recorded.

    Returns:
        (PathChoice): The path and why.

    Raises:
        ValueError: If ENV_VAR holds an unknown name, or the layer requests PER_ROUTE inside a dynamic trace.
    """
    if backend != AUTO:
        check(
            not (symbolic and backend == PER_ROUTE),
            module,
            f"attn_backend {PER_ROUTE!r} cannot run in a dynamic trace, whose number of routes is symbolic; use "
            f"{GATHER!r} or {AUTO!r} there",
        )
        return PathChoice(backend, "requested")
    override = backend_name(module, os.environ.get(ENV_VAR, AUTO), f"${ENV_VAR}")
    if override == AUTO:
        return auto_path(device, region_tokens, need_weights, symbolic, training)
    if symbolic and override == PER_ROUTE:
        return PathChoice(GATHER, f"${ENV_VAR}={PER_ROUTE} cannot serve a dynamic trace: the routes are symbolic")
    return PathChoice(override, f"${ENV_VAR}")


def log_once(layer: nn.Module, description: str, choice: PathChoice) -> None:
    """Log the path a layer runs the first time it runs it (not while torch.compile traces, not pickled).

    Args:
        layer (nn.Module): The layer; each instance (a deepcopy too) logs its own.
        description (str): How the log line names the layer, e.g. "BiLevelRoutingAttention_nchw(dim=1024, heads=1)".
        choice (PathChoice): The path and why.
    """
    if torch.compiler.is_compiling():
        return
    logged = _LOGGED.setdefault(layer, set())
    if choice.path not in logged:
        logged.add(choice.path)
        LOGGER.info(f"{description}: {choice.path} attention ({choice.reason})")
