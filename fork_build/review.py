# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Reviewing and maintaining the patch series: diff, review repository, export, checks and rebase reports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .assemble import PACKAGE, add_overlay, unpack
from .fetch import upstream_file
from .patches import PATCH_DIR, Patch, apply_series, git_apply, series
from .pin import PIN_FILE, Pin

FORK_IDENTITY = {"GIT_AUTHOR_NAME": "ultralytics-biformer", "GIT_AUTHOR_EMAIL": "biformer@invalid"}
PATCH_NAME_FIELD = "Patch-Name"
OVERLAY_SUBJECT = "BiFormer fork: add the fork's own files"


def pristine(dest: Path, pin: Pin | None = None) -> Path:
    """Unpack the pinned upstream wheel into an empty ``dest``."""
    pin = pin or Pin.load()
    if dest.exists():
        shutil.rmtree(dest)
    unpack(upstream_file(pin, "wheel"), dest)
    return dest


def print_diff(workdir: Path) -> int:
    """Print the changed-file list, then the unified diff, of the fork's package against pristine upstream.

    Args:
        workdir (Path): Scratch folder for a review repository (see :func:`make_fork`).

    Returns:
        (int): git's exit status.
    """
    repo = make_fork(workdir)
    return subprocess.run(
        ["git", "--no-pager", "diff", "--stat=200", "--summary", "--patch", "upstream", "HEAD"], cwd=repo
    ).returncode


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    """Run git in ``repo`` with a fixed identity and return its stdout."""
    env = {**os.environ, **FORK_IDENTITY, "GIT_COMMITTER_NAME": FORK_IDENTITY["GIT_AUTHOR_NAME"]}
    env["GIT_COMMITTER_EMAIL"] = FORK_IDENTITY["GIT_AUTHOR_EMAIL"]
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{date}T12:00:00Z"
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def _commit_message(patch: Patch) -> str:
    """Return a commit message holding a patch's DEP-3 header, its first Description line as subject."""
    fields = "\n".join(f"{k}: {v}".replace("\n", "\n ") for k, v in patch.header.items() if k != "Last-Update")
    return f"{patch.header['Description'].splitlines()[0]}\n\n{fields}\n{PATCH_NAME_FIELD}: {patch.name}\n"


def make_fork(repo: Path) -> Path:
    """Create a review repository: "upstream <version>", our files, then one commit per patch.

    ``git log -p`` or ``git diff upstream..HEAD`` there reviews the fork; amend the patch commits and run
    ``make export-patches`` to write them back to ``patches/``.

    Args:
        repo (Path): Folder for the repository (replaced).

    Returns:
        (Path): ``repo``.
    """
    pin = Pin.load()
    if repo.exists():
        shutil.rmtree(repo)
    pristine(repo / "tree", pin)
    for info in (repo / "tree").glob("*.dist-info"):
        shutil.rmtree(info)
    shutil.move(str(repo / "tree" / PACKAGE), repo / PACKAGE)
    (repo / "tree").rmdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"upstream {pin.version}")
    _git(repo, "tag", "upstream")
    add_overlay(repo)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", OVERLAY_SUBJECT)
    for patch in series():
        apply_series(repo, [patch])
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", _commit_message(patch), date=patch.header.get("Last-Update"))
    return repo


def export_patches(repo: Path, patch_dir: Path = PATCH_DIR) -> list[Path]:
    """Write every commit after the overlay commit of a review repository back as a DEP-3 patch, and the series.

    Last-Update is the commit date, so an amended commit gets a new date and an untouched one keeps its own.

    Args:
        repo (Path): A repository made by :func:`make_fork`.
        patch_dir (Path): Folder to write ``series`` and the patches into.

    Returns:
        (list[Path]): The patches written, in order.
    """
    log = _git(repo, "log", "--reverse", "--format=%H", "upstream..HEAD").split()
    written = []
    for commit in log[1:]:  # log[0] is the overlay commit
        message = _git(repo, "log", "-1", "--format=%B", commit).partition("\n\n")[2]  # fields follow the subject
        date = _git(repo, "log", "-1", "--format=%cs", commit).strip()
        fields = dict(re.findall(rf"^((?!{PATCH_NAME_FIELD})[A-Z][A-Za-z-]+): (.*(?:\n .*)*)", message, re.M))
        name = re.search(rf"^{PATCH_NAME_FIELD}: (\S+)", message, re.M)
        if not (fields and name):
            raise ValueError(f"commit {commit[:12]} has no DEP-3 fields and {PATCH_NAME_FIELD}: header")
        fields["Last-Update"] = date
        header = "".join(f"{k}: {v}\n" for k, v in fields.items())
        body = _git(repo, "diff", "--no-color", "--src-prefix=a/", "--dst-prefix=b/", f"{commit}^", commit)
        path = patch_dir / name[1]
        path.write_text(f"{header}---\n{body}")
        written.append(path)
    (patch_dir / "series").write_text("".join(f"{path.name}\n" for path in written))
    return written


def check_patches(workdir: Path) -> int:
    """Check the series: complete DEP-3 headers, exact application in order, nothing already upstream.

    Args:
        workdir (Path): Scratch folder.

    Returns:
        (int): 0 when every check passes, else 1 (each failure is printed).
    """
    failures = []
    tree = pristine(workdir / "tree")
    add_overlay(tree)
    for patch in series():
        if missing := patch.missing_fields():
            failures.append(f"{patch.name}: DEP-3 header lacks {', '.join(missing)}")
        if git_apply(tree, patch, "--check", "--reverse").returncode == 0:
            failures.append(f"{patch.name}: applies in reverse, so upstream already has it")
        result = git_apply(tree, patch)
        if result.returncode:
            failures.append(f"{patch.name}: does not apply exactly: {result.stderr.strip()}")
        else:
            print(f"ok  {patch.name}")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


def rebase_report(version: str, workdir: Path, write: bool = False) -> int:
    """Report, per patch, whether the series applies to another upstream release; optionally move the pin there.

    Args:
        version (str): The other upstream version.
        workdir (Path): Scratch folder (the release is downloaded here, not into the pinned cache).
        write (bool): Rewrite ``upstream.toml`` to pin that release (with the hashes of the files downloaded).

    Returns:
        (int): 0 when every patch applies, else 1.
    """
    from .fetch import sha256_of

    current = Pin.load()
    pin = current.unpinned(version)
    wheel = upstream_file(pin, "wheel", workdir)
    print(f"{pin.wheel.filename}  sha256 {sha256_of(wheel)}")
    tree = workdir / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    unpack(wheel, tree)
    add_overlay(tree)
    status = 0
    for patch in series():
        result = git_apply(tree, patch)
        print(f"{'applies' if result.returncode == 0 else 'FAILS  '}  {patch.name}")
        if result.returncode:
            print("         " + result.stderr.strip().replace("\n", "\n         "))
            status = 1
    if write and status == 0:
        sdist = upstream_file(pin, "sdist", workdir)
        text = PIN_FILE.read_text()
        for old, new in (
            (current.version, version),
            (current.wheel.sha256, sha256_of(wheel)),
            (current.sdist.sha256, sha256_of(sdist)),
        ):
            text = text.replace(old, new)
        PIN_FILE.write_text(text)
        print(f"upstream.toml now pins {version}; run `make check-patches` and `make test`")
    elif write:
        print("upstream.toml unchanged: refresh the failing patches first (make fork, fix, make export-patches)")
    return status
