# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Command line: ``python -m ultralytics.biformer.compare [models=a.yaml,b.yaml] data=data.yaml [key=value ...]``.

Keys: ``models`` (comma-separated YAMLs or checkpoints, the first is the baseline; default: rtdetr-l.yaml,
rtdetr-l-Biformer.yaml, rtdetr-l-HGBlock_Biformer.yaml), ``data``, ``epochs``, ``imgsz``, ``batch``, ``device``,
``workers``, ``project``, ``latency_rounds``, ``seeds`` (a count, ``seeds=3``: seeds ``seed`` ... ``seed+2``, or a
list, ``seeds=0,3,7``), ``bootstrap`` (resamples, 1000), ``bootstrap_seed`` (0), ``formats`` (exports to validate too,
e.g. ``formats=onnx,openvino``), and any other upstream train argument (``lr0=0.001``, ``seed=1`` ...), written as for
the ``yolo`` CLI. Writes PROJECT/compare/compare.{md,csv,json,png}; see docs/compare.md.
"""

from __future__ import annotations

import sys

from ultralytics.cfg import smart_value

from . import CompareError, compare

# kept as strings (e.g. device=0,1 is not a tuple; seeds=0,3,7 and formats=onnx,openvino are lists compare reads)
VERBATIM_KEYS = frozenset({"models", "data", "project", "device", "seeds", "formats"})


def parse(argv: list[str]) -> dict:
    """Parse ``key=value`` arguments into ``compare`` keyword arguments.

    Args:
        argv (list[str]): Command-line arguments.

    Returns:
        (dict): Keyword arguments; ``models`` split at commas.

    Raises:
        CompareError: If an argument is not ``key=value``.
    """
    kwargs = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CompareError(f"{arg!r}: arguments are key=value, e.g. data=path/to/data.yaml epochs=100")
        key, value = key.strip(), value.strip()
        kwargs[key] = value if key in VERBATIM_KEYS else smart_value(value)
    if "models" in kwargs:
        kwargs["models"] = [m for m in kwargs["models"].split(",") if m.strip()]
    return kwargs


def main(argv: list[str]) -> None:
    """Run a comparison from command-line arguments; exit with the message of an input error."""
    if {"-h", "--help", "help"} & set(argv):
        sys.stdout.write(__doc__)
        return
    try:
        compare(**parse(argv))
    except CompareError as e:
        raise SystemExit(f"compare: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
