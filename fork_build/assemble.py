# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Assemble the fork's package tree: pristine upstream wheel contents + our overlay + the patch series."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from wheel.wheelfile import WheelFile

from .patches import PATCH_DIR, apply_series, series
from .pin import ROOT, Pin

PACKAGE = "ultralytics"
OVERLAY_DIR = ROOT / PACKAGE
IGNORED_PARTS = {"__pycache__", ".pytest_cache"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}


class OverlayError(RuntimeError):
    """An overlay file would replace an upstream file (edits to upstream files belong in patches/)."""


def overlay_files(overlay_dir: Path = OVERLAY_DIR) -> list[str]:
    """List the fork's own files as package-relative POSIX paths, e.g. ``ultralytics/nn/AddModules/Biformer.py``.

    Args:
        overlay_dir (Path): The repository's top-level ``ultralytics/`` folder.

    Returns:
        (list[str]): Sorted paths.
    """
    files = []
    for path in overlay_dir.rglob("*"):
        relative = path.relative_to(overlay_dir.parent)
        if path.is_file() and not IGNORED_PARTS & set(relative.parts) and path.suffix not in IGNORED_SUFFIXES:
            files.append(relative.as_posix())
    return sorted(files)


def unpack(wheel: Path, dest: Path) -> None:
    """Extract a wheel, checking every file against its RECORD.

    Args:
        wheel (Path): The wheel.
        dest (Path): Folder to extract into.
    """
    with WheelFile(wheel) as archive:
        for name in archive.namelist():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def add_overlay(tree: Path, link: bool = False, overlay_dir: Path = OVERLAY_DIR) -> None:
    """Add the fork's own files to a package tree.

    Args:
        tree (Path): Folder holding the unpacked ``ultralytics`` package.
        link (bool): Symlink instead of copy, so edits to the overlay show through (development mode).
        overlay_dir (Path): The repository's top-level ``ultralytics/`` folder.

    Raises:
        OverlayError: If an overlay file already exists upstream.
    """
    for name in overlay_files(overlay_dir):
        source, target = overlay_dir.parent / name, tree / name
        if target.exists() and not (link and target.resolve() == source.resolve()):
            raise OverlayError(f"{name} exists upstream: change it with a patch in patches/, not in the overlay")
        if link:
            _link_topmost_new(tree, Path(name), overlay_dir.parent)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def _link_topmost_new(tree: Path, name: Path, source_root: Path) -> None:
    """Symlink the outermost folder (or the file) of ``name`` that upstream lacks, so files added there show up too.

    Args:
        tree (Path): The staged tree.
        name (Path): Package-relative path of an overlay file.
        source_root (Path): Folder holding the repository's ``ultralytics/`` overlay.
    """
    for depth in range(1, len(name.parts) + 1):
        part = Path(*name.parts[:depth])
        if not (tree / part).exists() and not (tree / part).is_symlink():
            (tree / part).symlink_to(source_root / part)
            return


def rewrite_metadata(text: str, pin: Pin) -> str:
    """Change only the version in METADATA and add the fork's requirements after upstream's unconditional ones.

    Args:
        text (str): Upstream's METADATA.
        pin (Pin): The pin (fork version and added requirements).

    Returns:
        (str): The fork's METADATA.
    """
    lines = text.split("\n")
    version_line = f"Version: {pin.version}"
    if version_line not in lines:
        raise ValueError(f"upstream METADATA has no {version_line!r} line")
    lines[lines.index(version_line)] = f"Version: {pin.fork_version}"
    plain = [i for i, line in enumerate(lines) if line.startswith("Requires-Dist:") and "extra ==" not in line]
    insert_at = plain[-1] + 1 if plain else next(i for i, line in enumerate(lines) if not line)
    lines[insert_at:insert_at] = [f"Requires-Dist: {requirement}" for requirement in pin.requires]
    return "\n".join(lines)


def dist_info_name(name: str, version: str) -> str:
    """Return the ``.dist-info`` folder name of a distribution version."""
    return f"{name}-{version}.dist-info"


def stage(tree: Path, pin: Pin, wheel: Path, link: bool = False, patch_dir: Path = PATCH_DIR) -> Path:
    """Build the fork's installed layout in an empty folder.

    Args:
        tree (Path): Destination; replaced if it exists.
        pin (Pin): The upstream pin.
        wheel (Path): The verified upstream wheel.
        link (bool): Symlink overlay files (development mode).
        patch_dir (Path): Folder holding the series.

    Returns:
        (Path): The fork's ``.dist-info`` folder inside ``tree``.
    """
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    unpack(wheel, tree)
    add_overlay(tree, link=link)
    apply_series(tree, series(patch_dir))
    upstream_info = tree / dist_info_name(pin.name, pin.version)
    fork_info = upstream_info.rename(tree / dist_info_name(pin.name, pin.fork_version))
    (fork_info / "RECORD").unlink()
    metadata = fork_info / "METADATA"
    metadata.write_text(rewrite_metadata(metadata.read_text(encoding="utf-8"), pin), encoding="utf-8")
    return fork_info


def fingerprint(pin: Pin, patch_dir: Path = PATCH_DIR, overlay_dir: Path = OVERLAY_DIR) -> str:
    """Return a digest of everything a development tree depends on except overlay file contents (those are linked).

    Args:
        pin (Pin): The upstream pin.
        patch_dir (Path): Folder holding the series.
        overlay_dir (Path): The repository's top-level ``ultralytics/`` folder.

    Returns:
        (str): Hex digest.
    """
    digest = hashlib.sha256(repr(pin).encode())
    for path in sorted(patch_dir.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    for name in overlay_files(overlay_dir):
        digest.update(name.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()
