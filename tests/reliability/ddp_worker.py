# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""One rank of the DDP check in test_distributed.py: two optimizer steps of an RT-DETR model under DDP on CPU.

Run by the test as ``python ddp_worker.py MODEL_YAML OUT_FILE`` with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. Every rank builds the model from the same seed, wraps it in ``DistributedDataParallel`` with
``find_unused_parameters=False`` (gloo) and trains it with the model's own loss on random boxes of its own (the data
is seeded by the rank). It saves the parameters before and after, the losses, and the names of the parameters that
got no gradient, for the test to compare across ranks.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ultralytics.nn.tasks import RTDETRDetectionModel

MODEL_SEED = 0  # same initial weights on every rank (DDP also broadcasts rank 0's)
DATA_SEED = 1000  # + rank: every rank trains on different images and boxes
STEPS = 2
BATCH = 2
IMGSZ = 224  # P4/16 map 14x14: a whole 7x7 grid of 2x2 regions for BRA
BOXES_PER_IMAGE = 3
LR = 0.01
MOMENTUM = 0.9
THREADS_PER_RANK = 1  # the two ranks share the CI machine's two cores
TIMEOUT = timedelta(seconds=120)  # a missing peer fails the collective instead of hanging


def random_batch(generator: torch.Generator, nc: int) -> dict[str, torch.Tensor]:
    """Build a training batch in the layout the RT-DETR trainer feeds ``RTDETRDetectionModel.loss``.

    Args:
        generator (torch.Generator): Source of the images, boxes and classes.
        nc (int): Number of classes.

    Returns:
        (dict[str, torch.Tensor]): ``img`` (B, 3, H, W) in [0, 1], ``cls`` (N, 1), ``bboxes`` (N, 4) normalized
            xywh and ``batch_idx`` (N,), with BOXES_PER_IMAGE boxes per image.
    """
    n = BATCH * BOXES_PER_IMAGE
    centers = 0.25 + 0.5 * torch.rand(n, 2, generator=generator)
    sizes = 0.1 + 0.3 * torch.rand(n, 2, generator=generator)
    return {
        "img": torch.rand(BATCH, 3, IMGSZ, IMGSZ, generator=generator),
        "cls": torch.randint(0, nc, (n, 1), generator=generator).float(),
        "bboxes": torch.cat([centers, sizes], 1),
        "batch_idx": torch.arange(BATCH).repeat_interleave(BOXES_PER_IMAGE).float(),
    }


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached copy of every parameter by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def main(model_yaml: str, out: Path) -> None:
    """Train for STEPS steps under DDP and save what the test compares.

    Args:
        model_yaml (str): Model YAML to build.
        out (Path): File for ``torch.save`` of the initial and final parameters, losses and gradient-less names.
    """
    rank = int(os.environ["RANK"])
    torch.set_num_threads(THREADS_PER_RANK)
    dist.init_process_group("gloo", timeout=TIMEOUT)
    torch.manual_seed(MODEL_SEED)
    model = RTDETRDetectionModel(model_yaml, verbose=False).train()
    model.nc = model.yaml["nc"]  # as the trainer sets it from the dataset; the loss reads it
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=MOMENTUM)
    generator = torch.Generator().manual_seed(DATA_SEED + rank)
    initial = parameters(model)
    losses, no_grad = [], set()
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = ddp(random_batch(generator, model.nc))
        loss.backward()
        no_grad |= {name for name, p in model.named_parameters() if p.grad is None}
        optimizer.step()
        losses.append(loss.item())
    dist.barrier()
    torch.save({"initial": initial, "final": parameters(model), "losses": losses, "no_grad": sorted(no_grad)}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
