# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Fixtures for the build tests: the pinned upstream wheel and the fork's wheel, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import fork_build
from fork_build.assemble import overlay_files
from fork_build.fetch import upstream_file
from fork_build.patches import series
from fork_build.pin import ROOT, Pin

BUILD_INPUTS = ("pyproject.toml", "upstream.toml", "fork_build", "patches", "ultralytics")


@pytest.fixture(scope="session")
def pin() -> Pin:
    """The repository's upstream pin."""
    return Pin.load()


@pytest.fixture(scope="session")
def upstream_wheel(pin: Pin) -> Path:
    """The verified pinned upstream wheel (downloaded once into build/upstream)."""
    return upstream_file(pin, "wheel")


@pytest.fixture(scope="session")
def fork_wheel(tmp_path_factory: pytest.TempPathFactory, upstream_wheel: Path) -> Path:
    """The fork's wheel, built by the PEP 517 hook."""
    out = tmp_path_factory.mktemp("wheel")
    return out / fork_build.build_wheel(str(out))


@pytest.fixture(scope="session")
def patched_files() -> set[str]:
    """Package-relative paths the patch series changes."""
    return {name for patch in series() for name in patch.files}


@pytest.fixture(scope="session")
def ours() -> set[str]:
    """Package-relative paths of the fork's own files."""
    return set(overlay_files())


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    """A copy of the repository's build inputs, to build from with a modified pin."""
    dest = tmp_path / "src"
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / name)
    return dest
