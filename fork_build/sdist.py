# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Write the fork's sdist: this repository's own files only, reproducibly."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from .assemble import overlay_files
from .patches import PATCH_DIR
from .pin import ROOT, Pin
from .wheelwriter import DEFAULT_EPOCH, FILE_MODE

TOP_LEVEL_FILES = ("pyproject.toml", "upstream.toml", "LICENSE", "NOTICE", "README.md", "CHANGELOG.md")
DOCS_DIR = ROOT / "docs"  # README links into it


def sdist_files() -> list[str]:
    """Return the repository-relative files an sdist carries: build inputs, overlay, patches, docs and legal texts."""
    files = [name for name in TOP_LEVEL_FILES if (ROOT / name).is_file()]
    files += [path.relative_to(ROOT).as_posix() for path in sorted(DOCS_DIR.rglob("*")) if path.is_file()]
    files += [path.relative_to(ROOT).as_posix() for path in sorted((ROOT / "fork_build").glob("*.py"))]
    files += [path.relative_to(ROOT).as_posix() for path in sorted(PATCH_DIR.iterdir()) if path.is_file()]
    return sorted(files + overlay_files())


def pkg_info(pin: Pin) -> str:
    """Return the sdist's PKG-INFO (the full metadata comes from upstream's wheel when the sdist is built)."""
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {pin.name}\n"
        f"Version: {pin.fork_version}\n"
        f"Summary: Ultralytics {pin.version} with BiFormer Bi-Level Routing Attention for RT-DETR\n"
        "License: AGPL-3.0\n"
    )


def write_sdist(directory: Path, pin: Pin) -> Path:
    """Write ``<name>-<fork version>.tar.gz`` into ``directory``.

    Args:
        directory (Path): Output folder.
        pin (Pin): The upstream pin.

    Returns:
        (Path): The sdist.
    """
    prefix = f"{pin.name}-{pin.fork_version}"
    members = {name: (ROOT / name).read_bytes() for name in sdist_files()}
    members["PKG-INFO"] = pkg_info(pin).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.mtime, info.mode = len(members[name]), DEFAULT_EPOCH, FILE_MODE
            tar.addfile(info, io.BytesIO(members[name]))
    path = Path(directory) / f"{prefix}.tar.gz"
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    return path
