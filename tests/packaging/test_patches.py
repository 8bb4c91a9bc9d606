# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The patch series and the review tools: make check-patches, make diff, make fork / export-patches."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fork_build.assemble import overlay_files
from fork_build.patches import REQUIRED_FIELDS, Patch, series
from fork_build.pin import ROOT
from fork_build.review import check_patches, export_patches, make_fork


def _fork_build(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m fork_build`` in the repository."""
    return subprocess.run([sys.executable, "-m", "fork_build", *args], cwd=ROOT, capture_output=True, text=True)


def test_every_patch_has_a_dep3_header():
    """Each patch in the series names why, who, when, and whether it went upstream."""
    patches = series()
    assert patches
    for patch in patches:
        assert not patch.missing_fields(), patch.name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", patch.header["Last-Update"]), patch.name
        assert patch.files, f"{patch.name} changes no file"


def test_header_check_flags_missing_fields(tmp_path: Path):
    """A patch without a header is reported, field by field."""
    bare = tmp_path / "bare.patch"
    bare.write_text("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    assert Patch.read(bare).missing_fields() == list(REQUIRED_FIELDS)


def test_check_patches_passes(tmp_path: Path):
    """The series applies exactly, in order, to pristine upstream; none applies in reverse."""
    assert check_patches(tmp_path) == 0


def test_check_patches_rejects_a_patch_already_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A patch whose change upstream already has (it applies in reverse) fails the check."""
    fork = make_fork(tmp_path / "fork")  # its package is upstream with every patch applied

    def already_patched(dest: Path, pin=None) -> Path:
        shutil.copytree(fork / "ultralytics", dest / "ultralytics")
        shutil.rmtree(dest / "ultralytics" / "nn" / "AddModules")  # the overlay is added again by the check
        for name in overlay_files():
            (dest / name).unlink(missing_ok=True)
        return dest

    monkeypatch.setattr("fork_build.review.pristine", already_patched)
    assert check_patches(tmp_path / "check") == 1


PATCHED_FILES = {
    "ultralytics/nn/tasks.py",
    "ultralytics/engine/exporter.py",
    "ultralytics/engine/predictor.py",
    "ultralytics/utils/checks.py",
}


def test_diff_lists_only_our_files_and_the_patched_ones(ours: set[str]):
    """make diff: the file list shows exactly our files and the upstream files the series patches, then the hunks."""
    result = _fork_build("diff")
    assert result.returncode == 0, result.stderr
    stat, _, hunks = result.stdout.partition("\ndiff --git ")
    listed = set(re.findall(r"^ (\S+) +\| ", stat, re.M))
    assert listed == ours | PATCHED_FILES
    assert all(f"+++ b/{name}" in hunks for name in PATCHED_FILES)


@pytest.mark.slow
def test_review_repository_round_trip(tmp_path: Path):
    """make fork builds upstream -> ours -> one commit per patch; exporting it back reproduces patches/."""
    fork = make_fork(tmp_path / "fork")
    log = subprocess.run(["git", "log", "--format=%s"], cwd=fork, capture_output=True, text=True, check=True)
    subjects = log.stdout.splitlines()[::-1]
    assert subjects[0] == "upstream 8.4.190"
    assert len(subjects) == 2 + len(series())
    exported = tmp_path / "patches"
    exported.mkdir()
    written = export_patches(fork, exported)
    assert [p.name for p in written] == [p.name for p in series()]
    for path in written:
        assert path.read_text() == (ROOT / "patches" / path.name).read_text(), path.name
    assert (exported / "series").read_text().split() == (ROOT / "patches" / "series").read_text().split()


def test_rebase_reports_each_patch_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture):
    """make rebase UPSTREAM=<pinned version>: every patch reported as applying; upstream.toml untouched."""
    from fork_build.review import rebase_report

    pin_before = (ROOT / "upstream.toml").read_bytes()
    assert rebase_report("8.4.190", tmp_path) == 0
    report = capsys.readouterr().out
    for patch in series():
        assert f"applies  {patch.name}" in report
    assert (ROOT / "upstream.toml").read_bytes() == pin_before
