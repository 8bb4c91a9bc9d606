# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Restricted loading (ULTRALYTICS_SAFE_LOAD=1) accepts the fork's checkpoints and still refuses any other global.

Patch 0003 adds exactly the classes ``ultralytics.nn.AddModules`` exports to upstream's allow-list. Each checkpoint
below is loaded with ``RTDETR(path)`` in a fresh process (Ultralytics reads the variable at import), once restricted
and once not: the unrestricted run shows that the hostile checkpoints are live (the payload runs, the classes load),
so their refusal under restricted loading is the allow-list's doing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from ultralytics import RTDETR
from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw, HGBlock_Biformer, regional_routing_attention_torch
from ultralytics.nn.AddModules.regions import region_grid

from .conftest import HGBLOCK_YAML, NARROW_YAML, output_tail, run_python

REFUSED = "references types outside the supported Ultralytics checkpoint format"  # upstream 8.4.190's message
FORK_MODELS = {"fork-hgblock": HGBLOCK_YAML, "fork-bra": "rtdetr-l-Biformer.yaml", "fork-narrow": str(NARROW_YAML)}
FORK_LAYERS = {HGBlock_Biformer.__name__, BiLevelRoutingAttention_nchw.__name__}
LOADER = """
import json, sys
from ultralytics import RTDETR
from ultralytics.utils import SAFE_LOAD

report = {"safe_load": SAFE_LOAD, "checkpoints": {}}
for path in sys.argv[2:]:
    try:
        model = RTDETR(path).model
    except Exception as e:
        outcome = {"loaded": False, "error": type(e).__name__, "message": str(e)}
    else:
        outcome = {
            "loaded": True,
            "parameters": sum(p.numel() for p in model.parameters()),
            "layers": sorted({type(m).__name__ for m in model.modules()}),
        }
    report["checkpoints"][path] = outcome
with open(sys.argv[1], "w") as f:
    json.dump(report, f)
"""


class Payload:
    """Pickles as a call of ``os.system``: unpickling it runs a shell command (here: create a marker file)."""

    def __init__(self, marker: Path):
        """Remember the marker file the command creates."""
        self.marker = marker

    def __reduce__(self) -> tuple:
        """Tell pickle to rebuild this object by calling os.system on the marker command."""
        return os.system, (f"touch '{self.marker}'",)


class Foreign(nn.Module):
    """A layer class of neither torch, Ultralytics nor the fork, as a hostile model would carry."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity."""
        return x


HOSTILE = {  # name -> (the global its pickle must reference, a function adding it to a narrow checkpoint)
    "os-system": (f"{os.system.__module__}.system", lambda ckpt, marker: ckpt.update(payload=Payload(marker))),
    "foreign-layer": (f"{Foreign.__module__}.Foreign", lambda ckpt, marker: ckpt["model"].model.append(Foreign())),
    "addmodules-function": (
        "ultralytics.nn.AddModules.Biformer.regional_routing_attention_torch",
        lambda ckpt, marker: ckpt.update(attn_fn=regional_routing_attention_torch),
    ),
    "addmodules-private-class": (
        "ultralytics.nn.AddModules.regions.RegionGrid",
        lambda ckpt, marker: ckpt.update(grid=region_grid(4, 4, 2, 2)),
    ),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fork's own checkpoints, saved by RTDETR.save, and hostile variants of the narrow one."""
    folder = tmp_path_factory.mktemp("safe-load")
    paths = {}
    for name, cfg in FORK_MODELS.items():
        torch.manual_seed(0)
        RTDETR(cfg).save(folder / f"{name}.pt")
        paths[name] = folder / f"{name}.pt"
    for name, (_, add) in HOSTILE.items():
        ckpt = torch.load(paths["fork-narrow"], weights_only=False)  # our own file, loaded in full to extend it
        add(ckpt, folder / f"{name}.ran")
        torch.save(ckpt, folder / f"{name}.pt")
        paths[name] = folder / f"{name}.pt"
    return paths


def _load_all(checkpoints: dict[str, Path], out: Path, safe: bool) -> dict:
    """Load every checkpoint with RTDETR in a fresh process, restricted or not; return its report by name."""
    env = {"ULTRALYTICS_SAFE_LOAD": "1" if safe else "0"}
    # the unrestricted run must be able to import this module's Foreign class by its pickled name
    package_root = Path(__file__).parents[len(__name__.split(".")) - 1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))
    result = run_python("-c", LOADER, out, *checkpoints.values(), env=env)
    assert result.returncode == 0, output_tail(result)
    report = json.loads(out.read_text())
    assert report["safe_load"] is safe
    by_path = report["checkpoints"]
    return {name: by_path[str(path)] for name, path in checkpoints.items()}


@pytest.fixture(scope="module")
def restricted(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Outcome of loading every checkpoint under ULTRALYTICS_SAFE_LOAD=1 (run before the unrestricted control)."""
    return _load_all(checkpoints, tmp_path_factory.mktemp("restricted") / "report.json", safe=True)


@pytest.fixture(scope="module")
def unrestricted(restricted: dict, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Outcome of loading every checkpoint with the default loader, after the restricted run."""
    return _load_all(checkpoints, tmp_path_factory.mktemp("unrestricted") / "report.json", safe=False)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_checkpoint_references_its_global(checkpoints: dict[str, Path], name: str):
    """Each hostile checkpoint's pickle names the global it is about (torch's own scan of the file)."""
    expected, _ = HOSTILE[name]
    assert expected in torch.serialization.get_unsafe_globals_in_checkpoint(checkpoints[name])


@pytest.mark.parametrize("name", list(HOSTILE))
def test_restricted_load_refuses_other_globals(restricted: dict, checkpoints: dict[str, Path], name: str):
    """Under ULTRALYTICS_SAFE_LOAD=1 every hostile checkpoint is refused with upstream's error, and nothing ran."""
    outcome = restricted[name]
    assert not outcome["loaded"], f"{name} loaded under restricted loading"
    assert outcome["error"] == "TypeError"
    assert f"{checkpoints[name]} {REFUSED}" in outcome["message"]
    assert not (checkpoints[name].parent / f"{name}.ran").exists(), "the os.system payload ran"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FORK_MODELS))
def test_restricted_load_accepts_fork_checkpoints(restricted: dict, unrestricted: dict, name: str):
    """The fork's own checkpoints load under ULTRALYTICS_SAFE_LOAD=1 into the same model as without restriction."""
    outcome = restricted[name]
    assert outcome["loaded"], outcome.get("message")
    assert FORK_LAYERS & set(outcome["layers"])
    assert outcome == unrestricted[name]  # same layer classes and parameter count


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_checkpoints_are_live_without_restriction(unrestricted: dict, checkpoints: dict[str, Path], name: str):
    """Control: the default loader loads every hostile checkpoint, and the os.system payload runs."""
    assert unrestricted[name]["loaded"], unrestricted[name].get("message")
    if name == "os-system":
        assert (checkpoints[name].parent / f"{name}.ran").exists()
