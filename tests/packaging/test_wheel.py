# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The fork's wheel: metadata, RECORD, entry points, and byte-identity with upstream outside our changes."""

from __future__ import annotations

import re
from pathlib import Path
from zipfile import ZipFile

from wheel.wheelfile import WheelFile

import fork_build
from fork_build.pin import Pin

FORK_VERSION = re.compile(r"8\.4\.190\+biformer\.\d+")


def _members(wheel: Path) -> dict[str, bytes]:
    """Read every member of a wheel, verifying each against RECORD (WheelFile raises on a mismatch)."""
    with WheelFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _dist_info(members: dict[str, bytes], filename: str) -> bytes:
    """Return one file of a wheel's .dist-info folder."""
    (name,) = [n for n in members if re.fullmatch(rf"[^/]+\.dist-info/{filename}", n)]
    return members[name]


def _metadata_lines(members: dict[str, bytes]) -> list[str]:
    """Return the METADATA header lines (up to the description body)."""
    return _dist_info(members, "METADATA").decode().split("\n\n")[0].splitlines()


def test_record_lists_every_file_with_its_hash(fork_wheel: Path):
    """RECORD names every archive member with a matching sha256 and size, and nothing else."""
    members = _members(fork_wheel)
    record = _dist_info(members, "RECORD").decode().splitlines()
    listed = {}
    for line in record:
        name, digest, size = line.rsplit(",", 2)
        listed[name] = (digest, size)
    assert set(listed) == set(members)
    for name, data in members.items():
        digest, size = listed[name]
        if not name.endswith("/RECORD"):
            assert size == str(len(data)), name
            assert digest.startswith("sha256="), name


def test_version_and_file_name(fork_wheel: Path, pin: Pin):
    """The distribution version is upstream's plus the local label, in METADATA and the file name."""
    members = _members(fork_wheel)
    versions = [line.split(": ", 1)[1] for line in _metadata_lines(members) if line.startswith("Version:")]
    assert versions == [pin.fork_version]
    assert FORK_VERSION.fullmatch(pin.fork_version)
    assert fork_wheel.name == f"ultralytics-{pin.fork_version}-py3-none-any.whl"
    assert f"ultralytics-{pin.fork_version}.dist-info/METADATA" in members


def test_metadata_is_upstreams_plus_einops(fork_wheel: Path, upstream_wheel: Path):
    """Only the version changes and einops is added to Requires-Dist; all other metadata is upstream's."""
    fork, upstream = _metadata_lines(_members(fork_wheel)), _metadata_lines(_members(upstream_wheel))
    requires = [line for line in fork if line.startswith("Requires-Dist:")]
    upstream_requires = [line for line in upstream if line.startswith("Requires-Dist:")]
    runtime = [line for line in upstream_requires if "extra ==" not in line]
    extras = [line for line in upstream_requires if "extra ==" in line]
    assert requires == [*runtime, "Requires-Dist: einops", *extras]
    assert [line for line in fork if not line.startswith(("Version:", "Requires-Dist:"))] == [
        line for line in upstream if not line.startswith(("Version:", "Requires-Dist:"))
    ]
    fork_body = _dist_info(_members(fork_wheel), "METADATA").decode().split("\n\n", 1)[1]
    assert fork_body == _dist_info(_members(upstream_wheel), "METADATA").decode().split("\n\n", 1)[1]


def test_entry_points_license_and_tags_are_upstreams(fork_wheel: Path, upstream_wheel: Path):
    """entry_points.txt (yolo, ultralytics), the license, top_level.txt and WHEEL are unchanged."""
    fork, upstream = _members(fork_wheel), _members(upstream_wheel)
    for filename in ("entry_points.txt", "licenses/LICENSE", "top_level.txt", "WHEEL"):
        assert _dist_info(fork, filename) == _dist_info(upstream, filename), filename
    assert b"yolo = ultralytics.cfg:entrypoint" in _dist_info(fork, "entry_points.txt")


def test_package_is_upstream_plus_ours_and_patched(
    fork_wheel: Path, upstream_wheel: Path, ours: set[str], patched_files: set[str]
):
    """Every package file that is neither ours nor patched is byte-identical to the pinned upstream wheel."""
    fork, upstream = _members(fork_wheel), _members(upstream_wheel)
    fork_package = {n for n in fork if n.startswith("ultralytics/")}
    upstream_package = {n for n in upstream if n.startswith("ultralytics/")}
    assert fork_package == upstream_package | ours
    assert not ours & upstream_package, "overlay files must be new files"
    assert patched_files and patched_files <= upstream_package
    for name in upstream_package - patched_files:
        assert fork[name] == upstream[name], name
    for name in patched_files:
        assert fork[name] != upstream[name], f"{name} is listed by a patch but unchanged"


def test_two_builds_are_byte_identical(tmp_path: Path, fork_wheel: Path):
    """Building again gives the same bytes (fixed timestamps, sorted entries)."""
    again = tmp_path / fork_build.build_wheel(str(tmp_path))
    assert again.read_bytes() == fork_wheel.read_bytes()
    with ZipFile(again) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2020, 1, 1, 0, 0, 0)}
