# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Distributed training: the narrow HGBlock_Biformer model under DDP (gloo, two CPU processes, no unused parameters).

ddp_worker.py runs each rank. With ``find_unused_parameters=False`` a parameter that takes no part in the loss makes
DDP fail at the next step ("Expected to have finished reduction in the prior iteration"), so two steps are enough to
catch one; the ranks train on different data, so equal parameters afterwards mean the gradients were all-reduced.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from ultralytics.nn.AddModules import HGBlock_Biformer
from ultralytics.nn.tasks import RTDETRDetectionModel

from .conftest import HERE, NARROW_YAML, OUTPUT_TAIL
from .ddp_worker import STEPS

WORLD_SIZE = 2
MASTER_ADDR = "127.0.0.1"
RUN_TIMEOUT = 300  # seconds for both ranks together


def _free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((MASTER_ADDR, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Run ddp_worker.py as the ranks of one process group; return what each rank saved."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "MASTER_ADDR": MASTER_ADDR, "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(WORLD_SIZE)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "ddp_worker.py"), str(NARROW_YAML), str(out / f"rank{rank}.pt")],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(WORLD_SIZE)
    ]
    try:
        outputs = [proc.communicate(timeout=RUN_TIMEOUT)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()  # only a rank still running after a timeout; a finished one is left alone
    for rank, (proc, output) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{output[-OUTPUT_TAIL:]}"
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.mark.slow
def test_every_parameter_gets_a_gradient(ranks: list[dict]):
    """Both ranks finish both steps (no unused-parameter error) and every parameter had a gradient on every step."""
    for rank, saved in enumerate(ranks):
        assert len(saved["losses"]) == STEPS
        assert saved["no_grad"] == [], f"rank {rank}: parameters without a gradient: {saved['no_grad']}"


@pytest.mark.slow
def test_ranks_train_on_different_data(ranks: list[dict]):
    """The ranks' losses differ at every step, so their local gradients differed before the all-reduce."""
    for step, losses in enumerate(zip(*(saved["losses"] for saved in ranks))):
        assert len(set(losses)) == WORLD_SIZE, f"step {step}: the ranks computed the same loss {losses}"


@pytest.mark.slow
def test_parameters_identical_across_ranks_and_changed(ranks: list[dict]):
    """After training every rank holds bit-identical parameters, and every parameter moved from its initial value."""
    reference = ranks[0]
    model = RTDETRDetectionModel(str(NARROW_YAML), verbose=False)
    expected = {name for name, _ in model.named_parameters()}
    assert set(reference["final"]) == expected
    blocks = [m for m in model.model if isinstance(m, HGBlock_Biformer)]
    bra = {f"model.{m.i}.cv.{name}" for m in blocks for name, _ in m.cv.named_parameters()}
    assert bra and bra <= expected  # the attention layers are among the compared parameters
    for rank, saved in enumerate(ranks[1:], start=1):
        differ = [name for name in expected if not torch.equal(saved["final"][name], reference["final"][name])]
        assert not differ, f"rank {rank} differs from rank 0 in {len(differ)} parameters, e.g. {differ[:5]}"
    unchanged = [name for name in expected if torch.equal(reference["final"][name], reference["initial"][name])]
    assert not unchanged, f"{len(unchanged)} parameters did not change, e.g. {unchanged[:5]}"
