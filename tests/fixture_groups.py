# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The groups of tests `make test`'s pytest-xdist processes take whole, and the scheduler that hands them out.

`make test` runs pytest in two processes (`-n 2 --dist loadscope`; Ultralytics runs torch on one thread on a 2-core
machine, so one process leaves a core idle). A process computes its own session and module fixtures, so tests that
share an expensive one must run in the same process: one group per SHARED_FIXTURE_FOLDERS folder (its conftest.py's
session fixtures), one per file elsewhere (module-scoped fixtures: the deploy benchmark's run, the GPU kit's dry run).
The deployment matrix, about half of the suite's time, is handed out first; its compile cells, which use none of its
trained checkpoints or exports, run as a group of their own. xdist's own `--dist loadgroup` with
`xdist_group` marks would say the same, but pytest-xdist 3.8 under pytest 9 never applies the marks (the worker hook
that reads them is not called), so the groups are scopes of xdist's `loadscope` scheduler instead.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# folders whose files share session fixtures of their conftest.py (deploy: trained checkpoints and their exports;
# compare: one comparison run; packaging: the fork's wheel; integration, visualize: built models)
SHARED_FIXTURE_FOLDERS = {"deploy", "compare", "packaging", "integration", "visualize"}
# files of those folders that use none of the expensive ones (the compile cells train from the generated dataset)
OWN_GROUP_FILES = {"tests/deploy/test_compile.py"}
LONGEST_GROUP = "tests/deploy"


def fixture_group(nodeid: str) -> str:
    """The group of a test: its SHARED_FIXTURE_FOLDERS folder, elsewhere (and for OWN_GROUP_FILES) its file.

    Args:
        nodeid (str): pytest's node id, "tests/<folder>/<file>.py::<test>".

    Returns:
        (str): "tests/<folder>" or "tests/<folder>/<file>.py".
    """
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    shared = len(parts) > 2 and parts[1] in SHARED_FIXTURE_FOLDERS and path not in OWN_GROUP_FILES
    return "/".join(parts[:2]) if shared else path


class GroupScheduling(LoadScopeScheduling):
    """xdist's loadscope scheduling with `fixture_group`s as scopes, LONGEST_GROUP handed out first."""

    def _split_scope(self, nodeid: str) -> str:
        """The scope of a test: its fixture group."""
        return fixture_group(nodeid)

    def _assign_work_unit(self, node) -> None:
        """Hand node the next group, LONGEST_GROUP while it is unassigned."""
        if LONGEST_GROUP in self.workqueue:
            self.workqueue.move_to_end(LONGEST_GROUP, last=False)
        super()._assign_work_unit(node)
