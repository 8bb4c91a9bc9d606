# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Write wheels reproducibly: sorted entries, fixed timestamps and permissions, RECORD regenerated."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from zipfile import ZipInfo

from wheel.wheelfile import WheelFile

# 2020-01-01T00:00:00Z: used for every entry unless SOURCE_DATE_EPOCH says otherwise.
DEFAULT_EPOCH = 1577836800
FILE_MODE = 0o644


@contextmanager
def _source_date_epoch() -> Iterator[int]:
    """Pin SOURCE_DATE_EPOCH for the duration (WheelFile stamps RECORD with it), restoring the caller's value."""
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = previous or str(DEFAULT_EPOCH)
    try:
        yield int(os.environ["SOURCE_DATE_EPOCH"])
    finally:
        if previous is None:
            del os.environ["SOURCE_DATE_EPOCH"]


def wheel_name(name: str, version: str) -> str:
    """Return the file name of a pure-Python wheel."""
    return f"{name}-{version}-py3-none-any.whl"


def write_wheel(path: Path, entries: dict[str, bytes]) -> Path:
    """Write a wheel whose bytes depend only on ``entries``.

    Args:
        path (Path): Wheel file to write.
        entries (dict[str, bytes]): Archive name -> contents, RECORD excluded (it is regenerated).

    Returns:
        (Path): ``path``.
    """
    dist_info = [name for name in entries if name.split("/")[0].endswith(".dist-info")]
    ordered = sorted(set(entries) - set(dist_info)) + sorted(dist_info)  # metadata last, as installers expect
    with _source_date_epoch() as epoch, WheelFile(path, "w") as archive:
        date_time = time.gmtime(epoch)[:6]
        for name in ordered:
            info = ZipInfo(name, date_time=date_time)
            info.external_attr = (FILE_MODE | stat.S_IFREG) << 16
            info.compress_type = archive.compression
            archive.writestr(info, entries[name])
    return path


def tree_entries(tree: Path) -> dict[str, bytes]:
    """Read every file of a staged tree (following symlinks) as wheel entries, skipping RECORD and bytecode.

    Args:
        tree (Path): The staged folder.

    Returns:
        (dict[str, bytes]): Archive name -> contents.
    """
    entries = {}
    for path in tree.rglob("*"):
        name = path.relative_to(tree).as_posix()
        if path.is_file() and "__pycache__" not in name and not name.endswith((".dist-info/RECORD", ".pyc")):
            entries[name] = path.read_bytes()
    return entries
