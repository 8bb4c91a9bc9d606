# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Developer commands behind the make targets: ``python -m fork_build {develop,wheel,diff,fork,export-patches,...}``."""

from __future__ import annotations

import argparse
import sys

from . import develop
from .pin import ROOT
from .review import check_patches, export_patches, make_fork, print_diff, rebase_report

BUILD_DIR = ROOT / "build"


def main(argv: list[str] | None = None) -> int:
    """Run one developer command and return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m fork_build", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("develop", help="stage build/editable (development mode) unless it is current")
    commands.add_parser("diff", help="unified diff of the built fork against pristine upstream")
    commands.add_parser("fork", help="review repository build/fork: upstream, our files, one commit per patch")
    commands.add_parser("export-patches", help="regenerate patches/ and series from the build/fork repository")
    commands.add_parser("check-patches", help="the series applies exactly to pristine upstream; headers complete")
    rebase = commands.add_parser("rebase", help="report whether each patch applies to another upstream release")
    rebase.add_argument("version", help="upstream version, e.g. 8.4.191")
    rebase.add_argument("--write", action="store_true", help="also move upstream.toml's pin to that release")
    args = parser.parse_args(argv)

    if args.command == "develop":
        print(develop())
        return 0
    if args.command == "diff":
        return print_diff(BUILD_DIR / "diff")
    if args.command == "fork":
        print(make_fork(BUILD_DIR / "fork"))
        return 0
    if args.command == "export-patches":
        for path in export_patches(BUILD_DIR / "fork"):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if args.command == "check-patches":
        return check_patches(BUILD_DIR / "check")
    return rebase_report(args.version, BUILD_DIR / "rebase", write=args.write)


if __name__ == "__main__":
    sys.exit(main())
