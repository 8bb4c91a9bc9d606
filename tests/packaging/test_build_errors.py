# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""A build that cannot get the pinned upstream wheel stops with a clear error and writes no wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fork_build.fetch import LOCAL_FILE_ENV

WRONG_SHA256 = "0" * 64
UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"  # discard port on loopback: refused at once


def _build(src: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the PEP 517 build_wheel hook of the source copy in a fresh interpreter."""
    code = f"import fork_build; fork_build.build_wheel({str(out)!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True)


def _with_wrong_wheel_hash(src: Path) -> None:
    """Change the pinned wheel sha256 in the copy's upstream.toml."""
    pin = src / "upstream.toml"
    text = pin.read_text()
    assert "wheel_sha256 = " in text
    lines = [
        f'wheel_sha256 = "{WRONG_SHA256}"' if line.startswith("wheel_sha256") else line for line in text.splitlines()
    ]
    pin.write_text("\n".join(lines) + "\n")


def _offline_pip_env(**extra: str) -> dict[str, str]:
    """An environment in which pip can reach no index and reads no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in LOCAL_FILE_ENV.values()}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": UNREACHABLE_INDEX, "PIP_RETRIES": "0", **extra}


def test_local_wheel_with_wrong_hash_is_refused(source_copy: Path, tmp_path: Path, upstream_wheel: Path):
    """A local upstream wheel that does not match the pin stops the build, naming both digests."""
    _with_wrong_wheel_hash(source_copy)
    out = tmp_path / "out"
    out.mkdir()
    result = _build(source_copy, out, {**os.environ, LOCAL_FILE_ENV["wheel"]: str(upstream_wheel)})
    assert result.returncode != 0
    assert "does not match the pin" in result.stderr and WRONG_SHA256 in result.stderr
    assert not list(out.iterdir())


@pytest.mark.slow
def test_download_with_wrong_hash_is_refused(source_copy: Path, tmp_path: Path):
    """pip's --require-hashes refuses the real upstream wheel when the pin is wrong."""
    _with_wrong_wheel_hash(source_copy)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_FILE_ENV.values()}
    result = _build(source_copy, out, env)
    assert result.returncode != 0
    assert "could not download upstream ultralytics-8.4.190-py3-none-any.whl" in result.stderr
    assert "HASH" in result.stderr.upper()
    assert not list(out.iterdir())
    assert not (source_copy / "build" / "upstream" / "ultralytics-8.4.190-py3-none-any.whl").exists()


def test_unreachable_index_gives_clear_error(source_copy: Path, tmp_path: Path):
    """With no reachable index and no cache, the build names the file and how to build offline."""
    out = tmp_path / "out"
    out.mkdir()
    result = _build(source_copy, out, _offline_pip_env())
    assert result.returncode != 0
    assert "could not download upstream ultralytics-8.4.190-py3-none-any.whl" in result.stderr
    assert LOCAL_FILE_ENV["wheel"] in result.stderr
    assert not list(out.iterdir())


def test_offline_build_from_local_wheel(source_copy: Path, tmp_path: Path, upstream_wheel: Path, fork_wheel: Path):
    """Pointing the environment at a local upstream wheel builds with no index at all, to the same bytes."""
    out = tmp_path / "out"
    out.mkdir()
    result = _build(source_copy, out, _offline_pip_env(**{LOCAL_FILE_ENV["wheel"]: str(upstream_wheel)}))
    assert result.returncode == 0, result.stderr
    assert (out / fork_wheel.name).read_bytes() == fork_wheel.read_bytes()
