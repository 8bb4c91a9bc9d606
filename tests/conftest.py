# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Test-session setup: run Ultralytics offline with a private config dir before any test imports it; the groups of
tests that `make test`'s pytest-xdist processes take whole."""

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
# folders whose files share session fixtures of their conftest.py (deploy: trained checkpoints and their exports;
# compare: one comparison run; packaging: the fork's wheel; integration, visualize: built models)
SHARED_FIXTURE_FOLDERS = {"deploy", "compare", "packaging", "integration", "visualize"}
LONGEST_GROUP = "tests/deploy"  # about half of the suite's time: it starts first


def pytest_addoption(parser):
    """--compile-backend: the torch.compile backend of the compile=True tests (tests/deploy/test_compile.py)."""
    parser.addoption(
        "--compile-backend",
        default="aot_eager",
        choices=("aot_eager", "inductor"),
        help="aot_eager (make test: graph capture only) or inductor (make test-compile: what Ultralytics runs)",
    )


def test_group(nodeid: str) -> str:
    """The group a test runs in under `make test`'s pytest-xdist processes: its SHARED_FIXTURE_FOLDERS folder (whose
    session fixtures are then computed once), elsewhere its file (module-scoped fixtures, the deploy benchmark's run).

    Args:
        nodeid (str): pytest's node id, "tests/<folder>/<file>.py::<test>".

    Returns:
        (str): "tests/<folder>" or "tests/<folder>/<file>.py".
    """
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[1] in SHARED_FIXTURE_FOLDERS else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's scheduler for `make test` (`-n 2 --dist loadscope`): whole groups (`test_group`) per process,
    the longest (the deployment matrix) handed out first. xdist's own `loadgroup` with `xdist_group` marks would say
    the same, but pytest-xdist 3.8 under pytest 9 never applies the marks (its hook that reads them goes uncalled)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

        def _assign_work_unit(self, node) -> None:
            if LONGEST_GROUP in self.workqueue:
                self.workqueue.move_to_end(LONGEST_GROUP, last=False)
            super()._assign_work_unit(node)

    return GroupScheduling(config, log)
