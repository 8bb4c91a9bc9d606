# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Obtain a pinned upstream file through pip (so the user's index, proxy and certificate settings apply), verified."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

from .pin import ROOT, Artifact, Pin

CACHE_DIR = ROOT / "build" / "upstream"
LOCAL_FILE_ENV = {"wheel": "ULTRALYTICS_BIFORMER_UPSTREAM_WHEEL", "sdist": "ULTRALYTICS_BIFORMER_UPSTREAM_SDIST"}
PIP_OUTPUT_TAIL = 2000  # characters of pip's output quoted in an error


class UpstreamError(RuntimeError):
    """The pinned upstream file could not be obtained or does not match its pin."""


def sha256_of(path: Path) -> str:
    """Return the hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, artifact: Artifact) -> Path:
    """Check a file against its pinned sha256.

    Args:
        path (Path): The file.
        artifact (Artifact): What it must be.

    Returns:
        (Path): ``path``, when it matches (or the artifact has no pinned hash).

    Raises:
        UpstreamError: If the digest differs from the pin.
    """
    if artifact.sha256 is not None and (actual := sha256_of(path)) != artifact.sha256:
        raise UpstreamError(
            f"{path} does not match the pin for {artifact.filename}: sha256 {actual}, expected {artifact.sha256} "
            "(upstream.toml). Delete the file if it is a stale download."
        )
    return path


def _pip_command() -> list[str]:
    """Return a command that runs pip, preferring the running interpreter's own."""
    if find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if found := shutil.which(name):
            return [found]
    raise UpstreamError("pip is needed to fetch the upstream release, and none was found")


def _download(pin: Pin, kind: str, dest: Path) -> Path:
    """Download one upstream file with ``pip download``, hash-checked by pip when the pin has a hash.

    Args:
        pin (Pin): The upstream pin.
        kind (str): ``"wheel"`` or ``"sdist"``.
        dest (Path): Folder to save into.

    Returns:
        (Path): The downloaded file.
    """
    artifact = getattr(pin, kind)
    requirement = f"{pin.name}=={pin.version}"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["download", "--no-deps", "--disable-pip-version-check", "-d", tmp]
        args += ["--only-binary=:all:"] if kind == "wheel" else ["--no-binary=:all:"]
        if artifact.sha256:
            requirements = Path(tmp) / "requirements.txt"
            requirements.write_text(f"{requirement} --hash=sha256:{artifact.sha256}\n")
            args += ["--require-hashes", "-r", str(requirements)]
        else:
            args.append(requirement)
        result = subprocess.run([*_pip_command(), *args], capture_output=True, text=True)
        found = Path(tmp) / artifact.filename
        if result.returncode or not found.is_file():
            output = (result.stdout + result.stderr).strip()[-PIP_OUTPUT_TAIL:]
            raise UpstreamError(
                f"could not download upstream {artifact.filename} with pip (exit {result.returncode}). Check the "
                f"package index settings, or point {LOCAL_FILE_ENV[kind]} at a local copy.\n{output}"
            )
        verify(found, artifact)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(found), dest / artifact.filename))


def upstream_file(pin: Pin, kind: str = "wheel", cache_dir: Path = CACHE_DIR) -> Path:
    """Return the verified upstream wheel or sdist: a local file named by the environment, the cache, or a download.

    Args:
        pin (Pin): The upstream pin.
        kind (str): ``"wheel"`` or ``"sdist"``.
        cache_dir (Path): Download cache.

    Returns:
        (Path): A file whose sha256 matches the pin.

    Raises:
        UpstreamError: If the file cannot be obtained or does not match the pin.
    """
    if kind not in LOCAL_FILE_ENV:
        raise ValueError(f"kind must be one of {sorted(LOCAL_FILE_ENV)}, got {kind!r}")
    artifact = getattr(pin, kind)
    if local := os.environ.get(LOCAL_FILE_ENV[kind]):
        path = Path(local)
        if not path.is_file():
            raise UpstreamError(f"{LOCAL_FILE_ENV[kind]}={local} is not a file")
        return verify(path, artifact)
    cached = cache_dir / artifact.filename
    if cached.is_file() and artifact.sha256:
        return verify(cached, artifact)
    return _download(pin, kind, cache_dir)
