# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Run upstream Ultralytics' own test suite (the pinned sdist's ``tests/``) against the installed fork, offline.

Usage: ``python tools/upstream_tests.py [--pristine] [--all] [PYTEST_ARGS...]`` (``make test-upstream`` runs it
without options).

The sdist comes from ``fork_build.fetch.upstream_file`` (hash-checked, cached in ``build/upstream``). Only its
``tests/`` folder is extracted, to ``build/upstream-tests/tests``, and pytest runs from ``build/upstream-tests``
(with a ``pytest.ini`` of its own) so that upstream's source tree can never shadow the installed package. Runs are
offline (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0``) with a fresh config dir whose weights, datasets and runs folders
are inside ``build/upstream-tests``.

By default the tests listed under ``[run]`` in ``tests/upstream/selection.txt`` run on this interpreter's
``ultralytics``, which must be the fork. ``--pristine`` runs them on pristine upstream instead: a throwaway venv
(``build/upstream-pristine``) holding the pinned upstream wheel, with this interpreter's site-packages behind it
for torch & co. ``--all`` runs every upstream test (its slow ones included) instead of the selection and then lists
what passed outside the selection and what in the selection did not pass: with ``--pristine``, the way to re-derive
the selection after a new pin.
"""

from __future__ import annotations

import argparse
import os
import shutil
import site
import subprocess
import sys
import tarfile
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fork_build.fetch import upstream_file  # noqa: E402
from fork_build.pin import Pin  # noqa: E402

RUN_DIR = ROOT / "build" / "upstream-tests"
PRISTINE_DIR = ROOT / "build" / "upstream-pristine"
SELECTION = ROOT / "tests" / "upstream" / "selection.txt"
RUN_SECTION = "[run]"
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "MPLBACKEND": "Agg"}
PYTEST_INI = """\
# Written by tools/upstream_tests.py: upstream's pytest settings without doctests, coverage and durations.
[pytest]
markers =
    slow: skip slow tests unless --slow is set
filterwarnings =
    ignore::torch.jit.TracerWarning
"""
SETTINGS_CODE = """\
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from yolo_offline import prepare
prepare(Path(sys.argv[2]))
from ultralytics.utils import SETTINGS
run = Path.cwd()
SETTINGS.update(datasets_dir=str(run / "datasets"), weights_dir=str(run / "weights"), runs_dir=str(run / "runs"))
"""
PROBE_CODE = "import importlib.metadata as m, ultralytics; print(m.version('ultralytics')); print(ultralytics.__file__)"


def read_selection(path: Path = SELECTION) -> list[str]:
    """Return the node IDs listed under ``[run]`` in the selection file.

    Args:
        path (Path): The selection file: ``[section]`` headers, one node ID per line, ``#`` comments.

    Returns:
        (list[str]): The selected node IDs, in file order.
    """
    selected, section = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == RUN_SECTION:
            selected.append(line)
    return selected


def extract_tests(sdist: Path, pin: Pin, dest: Path) -> Path:
    """Extract only the sdist's ``tests/`` folder into ``dest/tests`` (replacing an earlier extraction).

    Args:
        sdist (Path): The upstream sdist.
        pin (Pin): The pin, for the sdist's top-level folder name.
        dest (Path): Run folder.

    Returns:
        (Path): The extracted ``tests`` folder.
    """
    prefix = f"{pin.name}-{pin.version}/"
    tests = dest / "tests"
    shutil.rmtree(tests, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            if member.name.startswith(f"{prefix}tests/"):
                member.name = member.name.removeprefix(prefix)
                members.append(member)
        tar.extractall(dest, members=members, filter="data")
    return tests


def pristine_python(pin: Pin, dest: Path) -> Path:
    """Return the interpreter of a venv with the pinned upstream wheel, creating the venv if it is missing.

    The upstream wheel is installed without dependencies into the venv's own site-packages, which comes first on
    ``sys.path``; a ``.pth`` file appends this interpreter's site-packages for torch and the other dependencies (the
    fork installed there stays hidden: its ``ultralytics`` and dist-info come later on the path).

    Args:
        pin (Pin): The upstream pin.
        dest (Path): Folder for the venv.

    Returns:
        (Path): The venv's python.
    """
    python = dest / "bin" / "python"
    marker = dest / f"{pin.wheel.filename}.installed"
    if not marker.is_file():
        shutil.rmtree(dest, ignore_errors=True)
        venv.create(dest, with_pip=True)
        purelib = Path(_run_capture(python, "-c", "import site; print(site.getsitepackages()[0])").strip())
        (purelib / "zz_fork_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        wheel = upstream_file(pin, "wheel")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], check=True)
        marker.touch()
    return python


def _run_capture(*command: str | Path, **kwargs) -> str:
    """Run a command that must succeed and return its stdout."""
    return subprocess.run([str(c) for c in command], check=True, capture_output=True, text=True, **kwargs).stdout


def offline_env(python: Path, config_dir: Path) -> dict[str, str]:
    """The environment for the run: offline, a private config dir, and ``python``'s scripts (``yolo``) on PATH."""
    path = os.pathsep.join([str(python.parent), os.environ.get("PATH", "")])
    return {**os.environ, **OFFLINE_ENV, "YOLO_CONFIG_DIR": str(config_dir), "PATH": path}


def report(junit: Path, selected: list[str]) -> None:
    """After ``--all``: list the tests that passed outside the selection and the selected tests that did not pass.

    Args:
        junit (Path): The run's JUnit XML report.
        selected (list[str]): The selection.
    """
    passed = set()
    for case in ET.parse(junit).iter("testcase"):
        if not any(child.tag in {"failure", "error", "skipped"} for child in case):
            passed.add(f"{case.get('classname').replace('.', '/')}.py::{case.get('name')}")
    for title, names in (
        ("passed, not selected", sorted(passed - set(selected))),
        ("selected, did not pass", [n for n in selected if n not in passed]),
    ):
        print(f"{title}: {len(names)}", *names, sep="\n  ")


def main(argv: list[str] | None = None) -> int:
    """Extract upstream's tests, prepare the offline run folder and run pytest; return pytest's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pristine", action="store_true", help="run on pristine upstream instead of the fork")
    parser.add_argument("--all", action="store_true", help="run every upstream test, then compare with the selection")
    args, pytest_args = parser.parse_known_args(argv)

    pin = Pin.load()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    extract_tests(upstream_file(pin, "sdist"), pin, RUN_DIR)
    (RUN_DIR / "pytest.ini").write_text(PYTEST_INI)
    python = pristine_python(pin, PRISTINE_DIR) if args.pristine else Path(sys.executable)
    target = "pristine" if args.pristine else "fork"
    config_dir = RUN_DIR / f"config-{target}"
    shutil.rmtree(config_dir, ignore_errors=True)
    env = offline_env(python, config_dir)
    _run_capture(python, "-c", SETTINGS_CODE, ROOT / "tools", config_dir, cwd=RUN_DIR, env=env)

    version, location = _run_capture(python, "-c", PROBE_CODE, cwd=RUN_DIR, env=env).splitlines()
    expected = pin.version if args.pristine else pin.fork_version
    if version != expected or Path(location).is_relative_to(RUN_DIR):
        sys.exit(f"upstream tests need ultralytics {expected} installed outside {RUN_DIR}: found {version}, {location}")
    print(f"upstream {pin.version} tests on ultralytics {version} ({Path(location).parent})", flush=True)

    selected = read_selection()
    junit = RUN_DIR / f"junit-{target}{'-all' if args.all else ''}.xml"
    tests = ["tests"] if args.all else selected
    # --slow: upstream's conftest drops its slow tests without it, the selected ones included
    command = [python, "-m", "pytest", "-q", "--slow", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    command += [*tests, *pytest_args]
    status = subprocess.run([str(c) for c in command], cwd=RUN_DIR, env=env).returncode
    if args.all:
        report(junit, selected)
        return status
    skipped = skipped_tests(junit)
    print(f"upstream selection: {len(selected)} selected, {len(skipped)} skipped", *skipped, sep="\n  ")
    if skipped and status == 0:
        print("a selected upstream test skipped: it was selected because it runs here (tests/upstream/selection.txt)")
        return 1
    return status


def skipped_tests(junit: Path) -> list[str]:
    """The tests a run's JUnit XML report marks as skipped, with pytest's reason.

    Args:
        junit (Path): The run's JUnit XML report.

    Returns:
        (list[str]): "<classname>::<name>: <reason>" per skipped test.
    """
    return [
        f"{case.get('classname')}::{case.get('name')}: {skip.get('message', '')}"
        for case in ET.parse(junit).iter("testcase")
        for skip in case.findall("skipped")
    ]


if __name__ == "__main__":
    sys.exit(main())
