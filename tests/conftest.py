# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Test-session setup: run Ultralytics offline with a private config dir before any test imports it; `make test`'s
pytest-xdist scheduler (`fixture_groups.py`)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from yolo_offline import prepare  # noqa: E402

prepare(Path(os.environ.get("YOLO_CONFIG_DIR") or tempfile.mkdtemp(prefix="yolo-config-")))


def pytest_addoption(parser):
    """--compile-backend: the torch.compile backend of the compile=True tests (tests/deploy/test_compile.py)."""
    parser.addoption(
        "--compile-backend",
        default="aot_eager",
        choices=("aot_eager", "inductor"),
        help="aot_eager (make test: graph capture only) or inductor (make test-compile: what Ultralytics runs)",
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's scheduler for `make test` (`-n 2 --dist loadscope`): whole fixture groups per process
    (`fixture_groups.GroupScheduling`; imported here, so that pytest without xdist still runs the suite)."""
    from fixture_groups import GroupScheduling

    return GroupScheduling(config, log)
