# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The fork's wheel installs over upstream 8.4.190 in a fresh venv, runs, and uninstalls cleanly."""

from __future__ import annotations

import os
import site
import subprocess
import venv
from pathlib import Path

import pytest

OFFLINE = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    """Run a command, failing the test with its output if it fails; return stdout."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_install_over_upstream_and_uninstall(tmp_path: Path, upstream_wheel: Path, fork_wheel: Path, pin):
    """pip replaces upstream with the fork; yolo/ultralytics run; uninstall leaves nothing of either behind."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    (purelib,) = {Path(p) for p in _run(python, "-c", "import site; print(site.getsitepackages()[0])").split()}
    before = set(os.listdir(purelib))
    # torch & co. come from this test's environment, after the fresh venv's own site-packages
    (purelib / "zz_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "install", "--no-deps", "--no-index"]

    _run(*pip, upstream_wheel)
    version = [python, "-c", "from importlib.metadata import version; print(version('ultralytics'))"]
    assert _run(*version).strip() == pin.version
    _run(*pip, fork_wheel)
    assert _run(*version).strip() == pin.fork_version
    assert (purelib / "ultralytics" / "nn" / "AddModules" / "__init__.py").is_file()
    assert [p.name for p in purelib.glob("ultralytics-*.dist-info")] == [f"ultralytics-{pin.fork_version}.dist-info"]

    env = {**os.environ, **OFFLINE, "YOLO_CONFIG_DIR": str(tmp_path / "config")}
    for entry_point in ("yolo", "ultralytics"):
        assert _run(bin_dir / entry_point, "version", env=env).strip().splitlines()[-1] == pin.version
    imported = [python, "-c", "import ultralytics.nn.tasks as t; print(t.__file__)"]
    assert Path(_run(*imported, env=env).strip()).is_relative_to(purelib)

    _run(python, "-m", "pip", "uninstall", "--yes", "ultralytics")
    leftover = set(os.listdir(purelib)) - before - {"zz_test_dependencies.pth"}
    assert not leftover, f"uninstall left {sorted(leftover)}"
    assert not (bin_dir / "yolo").exists() and not (bin_dir / "ultralytics").exists()
