# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Shared paths and a subprocess runner for the reliability tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NARROW_YAML = HERE.parent / "integration" / "assets" / "rtdetr-narrow-HGBlock_Biformer.yaml"
HGBLOCK_YAML = "rtdetr-l-HGBlock_Biformer.yaml"  # the fork's model, built by bare name
OUTPUT_TAIL = 4000  # characters of a failed subprocess's output quoted in the assertion


def run_python(*args: str | Path, env: dict[str, str] | None = None, timeout: float | None = None):
    """Run this interpreter on a script or ``-c`` code with the test environment plus ``env``.

    Args:
        *args (str | Path): Interpreter arguments.
        env (dict[str, str], optional): Variables added to (or replacing) the current environment.
        timeout (float, optional): Seconds before the run is killed.

    Returns:
        (subprocess.CompletedProcess): The finished process, text output captured.
    """
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def output_tail(result: subprocess.CompletedProcess) -> str:
    """The end of a finished process's stdout and stderr, for assertion messages."""
    return (result.stdout + result.stderr)[-OUTPUT_TAIL:]
