# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing hooks: callbacks that receive the region routing a BRA layer's forward computes, for inspection tools.

The hooks live in a registry beside the modules (weakly keyed), not on them: a checkpoint pickled while a hook is
registered carries no hook, a deep copy of a layer starts without hooks, and a layer without hooks pays one dict
lookup per forward. Code that torch.compile compiled runs no hooks (so `compile=True` predictions draw no routing
maps); tracing for export runs them in Python and records nothing of them in the graph.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable
from weakref import WeakKeyDictionary

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ("register_routing_hook", "run_routing_hooks")

_HOOKS: WeakKeyDictionary[nn.Module, OrderedDict[int, Callable[[nn.Module, Any], None]]] = WeakKeyDictionary()


def register_routing_hook(module: nn.Module, hook: Callable[[nn.Module, Any], None]) -> RemovableHandle:
    """Call ``hook(module, routing)`` with the routing of every forward of ``module`` until the handle is removed.

    Args:
        module (nn.Module): A BRA layer.
        hook (Callable[[nn.Module, Any], None]): Called with the module and what its forward routed.

    Returns:
        (RemovableHandle): ``handle.remove()`` unregisters the hook.
    """
    hooks = _HOOKS.setdefault(module, OrderedDict())
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def run_routing_hooks(module: nn.Module, routing: Any) -> None:
    """Call the routing hooks of ``module`` with ``routing`` (none in code torch.compile compiles)."""
    if torch.compiler.is_compiling():
        return
    for hook in tuple(_HOOKS.get(module, {}).values()):
        hook(module, routing)
