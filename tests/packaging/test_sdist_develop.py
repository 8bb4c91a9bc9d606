# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The sdist ships only our files; development mode links the overlay so edits need no reinstall."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from unittest import mock

import fork_build
from fork_build.pin import ROOT, Pin


def test_sdist_holds_only_our_files(tmp_path: Path, pin: Pin, ours: set[str], upstream_wheel: Path):
    """build_sdist: the build inputs, overlay, patches, docs (README links to them) and legal texts; not one upstream
    file."""
    sdist = tmp_path / fork_build.build_sdist(str(tmp_path))
    prefix = f"ultralytics-{pin.fork_version}/"
    with tarfile.open(sdist) as tar:
        names = {m.name.removeprefix(prefix) for m in tar.getmembers()}
    assert {"PKG-INFO", "pyproject.toml", "upstream.toml", "patches/series", "fork_build/__init__.py"} <= names
    assert ours <= names
    docs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*") if p.is_file()}
    assert "docs/usage.md" in docs and docs <= names
    assert {n for n in names if n.startswith("ultralytics/")} == ours
    again = tmp_path / "again"
    again.mkdir()
    assert (again / fork_build.build_sdist(str(again))).read_bytes() == sdist.read_bytes()


def test_development_tree_links_the_overlay():
    """build/editable holds the patched package with our folders symlinked into the repository."""
    tree = fork_build.develop()
    add_modules = tree / "ultralytics" / "nn" / "AddModules"
    assert add_modules.is_symlink() and add_modules.resolve() == ROOT / "ultralytics" / "nn" / "AddModules"
    assert "ultralytics.nn.AddModules" in (tree / "ultralytics" / "nn" / "tasks.py").read_text()


def test_tests_run_against_the_overlay():
    """The ultralytics imported by the suite takes our layers from the repository (no reinstall after edits)."""
    import ultralytics.nn.AddModules as add_modules

    assert Path(add_modules.__file__).resolve().is_relative_to(ROOT / "ultralytics")


def test_development_install_gives_no_multiple_installations_warning(tmp_path: Path):
    """In development mode pip reports this repository as the project location while `yolo` and the suite import
    build/editable: upstream's check_multiple_install (run by check_yolo) must not call that two installations
    (patch 0008), and still warns when the location pip reports is another package."""
    from ultralytics.utils import checks

    with mock.patch.object(checks.LOGGER, "warning") as warning:
        checks.check_multiple_install()
    assert not warning.called, warning.call_args
    (tmp_path / "ultralytics").mkdir()
    other = subprocess.CompletedProcess([], 0, stdout=f"Location: {tmp_path}\n", stderr="")
    with mock.patch.object(checks.subprocess, "run", return_value=other), mock.patch.object(
        checks.LOGGER, "warning"
    ) as warning:
        checks.check_multiple_install()
    assert "Multiple Ultralytics installations" in warning.call_args[0][0]
