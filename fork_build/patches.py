# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The patch series: DEP-3 headers, and exact application with `git apply`."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .pin import ROOT

PATCH_DIR = ROOT / "patches"
REQUIRED_FIELDS = ("Description", "Author", "Last-Update", "Forwarded")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s?(.*)$")


class PatchError(RuntimeError):
    """A patch is malformed or does not apply exactly."""


@dataclass(frozen=True)
class Patch:
    """One patch of the series.

    Attributes:
        path (Path): The patch file.
        header (dict[str, str]): DEP-3 fields (continuation lines joined with newlines).
        files (tuple[str, ...]): Package-relative paths the patch changes, e.g. ``ultralytics/nn/tasks.py``.
    """

    path: Path
    header: dict[str, str] = field(hash=False)
    files: tuple[str, ...]

    @property
    def name(self) -> str:
        """File name of the patch, as listed in ``series``."""
        return self.path.name

    @classmethod
    def read(cls, path: Path) -> Patch:
        """Parse a patch file's DEP-3 header and the files its hunks touch.

        Args:
            path (Path): The patch file.

        Returns:
            (Patch): The parsed patch.
        """
        header: dict[str, str] = {}
        last = None
        files = []
        in_header = True
        for line in path.read_text().splitlines():
            if line.startswith(("--- ", "diff --git ")) or line == "---":
                in_header = False
            if in_header:
                if (match := _FIELD.match(line)) and not line.startswith(" "):
                    last = match[1]
                    header[last] = match[2]
                elif line.startswith(" ") and last:
                    header[last] += "\n" + line.strip()
            elif line.startswith("+++ b/"):
                files.append(line[len("+++ b/") :].split("\t")[0])
        return cls(path, header, tuple(files))

    def missing_fields(self) -> list[str]:
        """Return the required DEP-3 fields this patch's header lacks or leaves empty."""
        return [name for name in REQUIRED_FIELDS if not self.header.get(name, "").strip()]


def series(patch_dir: Path = PATCH_DIR) -> list[Patch]:
    """Read the series file: patch names in application order (blank lines and ``#`` comments ignored).

    Args:
        patch_dir (Path): Folder holding ``series`` and the patches.

    Returns:
        (list[Patch]): The patches, in order.
    """
    names = [line.split("#")[0].strip() for line in (patch_dir / "series").read_text().splitlines()]
    return [Patch.read(patch_dir / name) for name in names if name]


def git_apply(tree: Path, patch: Patch, *options: str) -> subprocess.CompletedProcess:
    """Run ``git apply`` on a plain folder, never on an enclosing repository.

    Args:
        tree (Path): The folder the patch's ``a/`` and ``b/`` paths are relative to.
        patch (Patch): The patch.
        *options (str): Extra options, e.g. ``--check`` or ``--reverse``.

    Returns:
        (subprocess.CompletedProcess): The finished command.
    """
    tree = tree.resolve()
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}  # no repository discovery above the tree
    command = ["git", "apply", "--whitespace=nowarn", *options, str(patch.path.resolve())]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)


def apply_series(tree: Path, patches: list[Patch]) -> None:
    """Apply every patch exactly (no fuzz, whole series or an error naming the patch).

    Args:
        tree (Path): Folder holding the ``ultralytics`` package.
        patches (list[Patch]): The series, in order.

    Raises:
        PatchError: If a patch does not apply exactly.
    """
    for patch in patches:
        result = git_apply(tree, patch)
        if result.returncode:
            raise PatchError(f"patch {patch.name} does not apply exactly:\n{result.stderr.strip()}")
