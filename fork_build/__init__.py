# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""In-tree PEP 517 backend: the pinned upstream Ultralytics wheel + this fork's overlay + its patch series.

Hooks: ``build_wheel`` (a reproducible wheel of the patched package), ``build_editable`` (development mode: a
``.pth`` pointing at ``build/editable``, whose overlay files are symlinks into the repository) and ``build_sdist``
(only this repository's own files). Config setting ``upstream-wheel`` (or ``ULTRALYTICS_BIFORMER_UPSTREAM_WHEEL``)
names a local upstream wheel for fully offline builds; it is hash-checked like a download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .assemble import PACKAGE, dist_info_name, fingerprint, stage
from .fetch import LOCAL_FILE_ENV, upstream_file
from .pin import ROOT, Pin
from .sdist import write_sdist
from .wheelwriter import tree_entries, wheel_name, write_wheel

EDITABLE_DIR = ROOT / "build" / "editable"
FINGERPRINT_FILE = ".fingerprint"


def _upstream_wheel(pin: Pin, config_settings: dict | None) -> Path:
    """Resolve the upstream wheel, honouring the ``upstream-wheel`` config setting."""
    if config_settings and config_settings.get("upstream-wheel"):
        os.environ[LOCAL_FILE_ENV["wheel"]] = str(config_settings["upstream-wheel"])
    return upstream_file(pin, "wheel")


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    """PEP 517: nothing beyond ``build-system.requires``."""
    return []


get_requires_for_build_editable = get_requires_for_build_sdist = get_requires_for_build_wheel


def _staged_entries(config_settings: dict | None) -> tuple[Pin, dict[str, bytes]]:
    """Stage the fork (upstream wheel + overlay + patches) in a scratch folder and read it as wheel entries."""
    pin = Pin.load()
    wheel = _upstream_wheel(pin, config_settings)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        stage(tree, pin, wheel)
        return pin, tree_entries(tree)


def build_wheel(
    wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None
) -> str:
    """PEP 517: build the fork's wheel into ``wheel_directory`` and return its file name."""
    pin, entries = _staged_entries(config_settings)
    name = wheel_name(pin.name, pin.fork_version)
    write_wheel(Path(wheel_directory) / name, entries)
    return name


def develop(config_settings: dict | None = None) -> Path:
    """Stage the development tree ``build/editable/ultralytics`` unless it is current.

    Overlay files are symlinked, so editing them needs no rebuild; a changed pin, patch or set of overlay files
    restages the tree (``make test`` calls this on every run).

    Returns:
        (Path): The folder to put on ``sys.path``.
    """
    pin = Pin.load()
    digest = fingerprint(pin)
    stamp = EDITABLE_DIR / FINGERPRINT_FILE
    if not (stamp.is_file() and stamp.read_text() == digest):
        stage(EDITABLE_DIR, pin, _upstream_wheel(pin, config_settings), link=True)
        for info in EDITABLE_DIR.glob("*.dist-info"):  # the installed .dist-info lives in site-packages
            shutil.rmtree(info)
        stamp.write_text(digest)
    return EDITABLE_DIR


def build_editable(
    wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None
) -> str:
    """PEP 660: a wheel holding the fork's metadata and a ``.pth`` that puts ``build/editable`` on ``sys.path``."""
    pin, entries = _staged_entries(config_settings)
    info = dist_info_name(pin.name, pin.fork_version)
    entries = {name: data for name, data in entries.items() if name.startswith(info)}
    entries[f"__editable__.{PACKAGE}_biformer.pth"] = f"{develop(config_settings)}\n".encode()
    name = wheel_name(pin.name, pin.fork_version)
    write_wheel(Path(wheel_directory) / name, entries)
    return name


def build_sdist(sdist_directory: str, config_settings: dict | None = None) -> str:
    """PEP 517: an sdist of this repository's own files (upstream is fetched by pin when it is built)."""
    return write_sdist(Path(sdist_directory), Pin.load()).name
