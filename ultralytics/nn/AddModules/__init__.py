# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BiFormer layers added by the ultralytics-biformer fork: `Biformer.py`'s public names, re-exported as they are."""

from __future__ import annotations

from .Biformer import *  # noqa: F403  (one list of public names: Biformer.__all__)
from .Biformer import __all__  # noqa: F401
