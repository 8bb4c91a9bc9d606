# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The upstream pin (`upstream.toml`): which release the fork is built from and how it is versioned."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN_FILE = ROOT / "upstream.toml"


@dataclass(frozen=True)
class Artifact:
    """One pinned upstream file on the package index.

    Attributes:
        filename (str): File name on the index, e.g. ``ultralytics-8.4.190-py3-none-any.whl``.
        sha256 (str | None): Expected hex digest; None only for an unpinned release probed by ``rebase``.
    """

    filename: str
    sha256: str | None


@dataclass(frozen=True)
class Pin:
    """The pinned upstream release and the fork's version label.

    Attributes:
        name (str): Upstream distribution name.
        version (str): Upstream version.
        wheel (Artifact): The upstream wheel the fork is built from.
        sdist (Artifact): The upstream sdist (its ``tests/`` folder is the upstream suite).
        local (str): Local version label, e.g. ``biformer.1``.
        requires (tuple[str, ...]): Requirements the fork adds to upstream's.
    """

    name: str
    version: str
    wheel: Artifact
    sdist: Artifact
    local: str
    requires: tuple[str, ...]

    @property
    def fork_version(self) -> str:
        """Distribution version of the fork, e.g. ``8.4.190+biformer.1``."""
        return f"{self.version}+{self.local}"

    @classmethod
    def load(cls, path: Path = PIN_FILE) -> Pin:
        """Read a pin file.

        Args:
            path (Path): The TOML file to read.

        Returns:
            (Pin): The pin it describes.
        """
        data = tomllib.loads(path.read_text())
        up, fork = data["upstream"], data["fork"]
        return cls(
            name=up["name"],
            version=up["version"],
            wheel=Artifact(up["wheel"], up["wheel_sha256"]),
            sdist=Artifact(up["sdist"], up["sdist_sha256"]),
            local=fork["local"],
            requires=tuple(fork.get("requires", ())),
        )

    def unpinned(self, version: str) -> Pin:
        """Return the same pin moved to another upstream release whose hashes are not known yet.

        Args:
            version (str): The other upstream version.

        Returns:
            (Pin): A pin without hashes, for probing only.
        """
        return Pin(
            name=self.name,
            version=version,
            wheel=Artifact(f"{self.name}-{version}-py3-none-any.whl", None),
            sdist=Artifact(f"{self.name}-{version}.tar.gz", None),
            local=self.local,
            requires=self.requires,
        )
