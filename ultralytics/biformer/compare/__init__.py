# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Train several detection models alike on one dataset and compare accuracy (AP by object size) against cost.

``python -m ultralytics.biformer.compare`` (or ``make compare``) trains each model with upstream's trainer, validates
it with upstream's validator (``save_json=True``: faster-coco-eval's AP for small, medium and large objects), measures
latency interleaved in one process and writes ``compare.md``, ``compare.csv``, ``compare.json`` and ``compare.png``
to ``PROJECT/compare``. See ``docs/compare.md``.

Examples:
    >>> from ultralytics.biformer.compare import compare
    >>> out = compare(data="path/to/data.yaml", epochs=100, imgsz=640, batch=16, device=0)  # doctest: +SKIP
"""

from __future__ import annotations

from .inputs import DEFAULT_MODELS, CompareError
from .run import compare

__all__ = ("DEFAULT_MODELS", "CompareError", "compare")
