# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`make test`'s pytest-xdist scheduling (tests/fixture_groups.py): groups of shared fixtures run whole in one process,
the deployment matrix first, on a generated tree of tests that record the process they ran in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixture_groups import SHARED_FIXTURE_FOLDERS, GroupScheduling, fixture_group

TESTS_DIR = Path(__file__).resolve().parents[1]
# a generated tests/ tree: the deployment matrix in two files, and two files of a per-file folder that come first in
# collection order and in xdist's reordering by test count
TREE = {
    "benchmarks/test_one.py": 10,
    "benchmarks/test_two.py": 10,
    "deploy/test_first.py": 4,
    "deploy/test_second.py": 4,
}
RECORDING_TEST = """
import os, time
import pytest


@pytest.mark.parametrize("i", range({n}))
def test_records_its_process(i):
    time.sleep(0.2)
    with open(os.environ["RUN_LOG"], "a") as f:
        f.write(f"{{os.environ['PYTEST_XDIST_WORKER']}} {{__file__}}::{{i}}\\n")
"""


def test_groups_are_shared_fixture_folders_or_files():
    """Files of a folder with shared session fixtures are one group; elsewhere each file is its own."""
    assert fixture_group("tests/deploy/test_parity.py::test_onnx[x]") == "tests/deploy"
    assert fixture_group("tests/deploy/test_runtimes.py::test_runtime[x-mnn]") == "tests/deploy"
    assert fixture_group("tests/deploy/test_compile.py::test_compile[x]") == "tests/deploy/test_compile.py"
    assert fixture_group("tests/compare/test_report.py::test_a") == fixture_group("tests/compare/test_seeds.py::t")
    assert fixture_group("tests/modules/test_a.py::t") != fixture_group("tests/modules/test_b.py::t")
    assert fixture_group("tests/benchmarks/test_deploy_smoke.py::t") == "tests/benchmarks/test_deploy_smoke.py"


def run_tree(tmp_path: Path) -> list[tuple[str, str]]:
    """Run the generated tree with `-n 2 --dist loadscope` and GroupScheduling; return (worker, test) in the order the
    tests finished."""
    root = tmp_path / "tree"
    for name, n in TREE.items():
        (root / "tests" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "tests" / name).write_text(RECORDING_TEST.format(n=n))
    hook = "from fixture_groups import GroupScheduling\n\n\ndef pytest_xdist_make_scheduler(config, log):\n"
    (root / "tests" / "conftest.py").write_text(hook + "    return GroupScheduling(config, log)\n")
    log = tmp_path / "run.log"
    env = {"RUN_LOG": str(log), "PYTHONPATH": str(TESTS_DIR), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadscope"]
    result = subprocess.run([*command, "tests"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]


def test_deploy_matrix_runs_whole_in_one_process_first(tmp_path: Path):
    """Both deploy files run in one process (xdist's own loadscope, per file, would spread them over both, and each
    would train and export everything), and that process runs them before anything else."""
    runs = run_tree(tmp_path)
    assert len(runs) == sum(TREE.values())
    deploy_workers = {worker for worker, test in runs if "/deploy/" in test}
    assert len(deploy_workers) == 1, runs
    on_worker = [test for worker, test in runs if worker in deploy_workers]
    deploy_tests = TREE["deploy/test_first.py"] + TREE["deploy/test_second.py"]
    assert all("/deploy/" in test for test in on_worker[:deploy_tests]), on_worker


def test_suite_conftest_gives_xdist_the_group_scheduler(pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch):
    """The suite's own hook (tests/conftest.py) is what pytest-xdist asks for its scheduler, with `-n 2`:
    GroupScheduling."""
    monkeypatch.setattr(pytestconfig.option, "tx", ["2*popen"])  # what `-n 2` sets
    scheduler = pytestconfig.hook.pytest_xdist_make_scheduler(config=pytestconfig, log=None)
    assert isinstance(scheduler, GroupScheduling), scheduler


def test_every_folder_with_session_fixtures_is_one_group():
    """Each tests/ folder whose conftest.py holds a session-scoped fixture is in SHARED_FIXTURE_FOLDERS."""
    folders = {path.parent.name for path in TESTS_DIR.glob("*/conftest.py") if 'scope="session"' in path.read_text()}
    assert folders == SHARED_FIXTURE_FOLDERS
