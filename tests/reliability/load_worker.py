# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Load runs for test_load.py: many eval passes of a model, or training steps of one BRA layer, at random non-square
sizes and batch sizes, RSS sampled.

Run as ``python load_worker.py eval MODEL_YAML OUT_JSON`` or ``python load_worker.py train - OUT_JSON`` in a process
of its own, so that its resident memory is the run's alone. The size and batch sequence comes from a fixed seed (the
same run every time).

glibc's malloc keeps freed memory in its heaps (and raises its mmap threshold after large frees), so plain RSS
follows the largest input seen so far, not the memory in use. After the warm-up passes and after the last one the worker
therefore calls ``malloc_trim(0)``, which hands every free heap page back to the system, before reading RSS: what
stays resident is memory still in use, so a leak shows and the allocator's high-water mark does not. Trimming only at
these two points keeps the passes themselves at full speed.

Writes a JSON object: the (batch, height, width) of every pass, plain RSS after every pass, the trimmed RSS after
the warm-up passes and at the end, the passes whose output (eval: a finite (batch, queries, 6) tensor, queries: see
``decoder_queries``; train: a finite loss and finite gradients) was bad, and the seconds the passes took.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw
from ultralytics.nn.tasks import RTDETRDetectionModel

PASSES = 60
WARMUP = 10  # passes before the reference memory sample
SEQUENCE_SEED = 0
MODEL_SEED = 0
STRIDE = 32  # the model's largest stride: input sizes are multiples of it
MIN_SIDE, MAX_SIDE = 32, 640  # 32 px: P5 is 1x1, smaller than BRA's region grid
MAX_BATCH = 4
DETECTION = 6  # cx, cy, w, h, score, class index (RTDETRDecoder's eval output)
DECODER_STRIDES = (8, 16, 32)  # the maps RTDETRDecoder takes its queries from, one anchor per cell
CI_CORES = 2
# the CI machine's cores, shared with the other pytest-xdist process under `make test`: 2 threads beside a busy process
# took 7x as long (327 s against 45)
THREADS = max(1, CI_CORES // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
TRAIN_DIM, TRAIN_HEADS = 256, 4  # the BRA layer of the training run
TRAIN_SHAPES, TRAIN_CYCLES = 12, 5  # distinct map sizes, repeated: oneDNN's per-shape caches fill in the first cycles
TRAIN_STEPS = TRAIN_SHAPES * TRAIN_CYCLES
TRAIN_WARMUP = 2 * TRAIN_SHAPES
TRAIN_STRIDE, TRAIN_MIN_SIDE, TRAIN_MAX_SIDE = 1, 1, 48  # map sizes in tokens: 1x1 up to P4 of a 768 px input
LIBC = ctypes.CDLL(None)  # the C library this process runs on (glibc on the Linux CI machines)


def shapes(
    count: int, seed: int, stride: int = STRIDE, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE
) -> list[tuple[int, int, int]]:
    """The pass sequence: (batch, height, width) with batch in 1..MAX_BATCH and unequal sides, multiples of stride.

    Args:
        count (int): Number of passes.
        seed (int): Seed of the sequence.
        stride (int): Sides are multiples of this.
        min_side (int): Smallest side.
        max_side (int): Largest side.

    Returns:
        (list[tuple[int, int, int]]): One (batch, height, width) per pass; the first pass takes the smallest and the
            largest side, so both ends of the range are always covered.
    """
    rng = random.Random(seed)
    sides = range(min_side, max_side + 1, stride)
    sequence = [(MAX_BATCH, min_side, max_side)]
    for _ in range(count - 1):
        h = rng.choice(sides)
        w = rng.choice([s for s in sides if s != h])
        sequence.append((rng.randint(1, MAX_BATCH), h, w))
    return sequence


def decoder_queries(num_queries: int, h: int, w: int) -> int:
    """The number of detections RTDETRDecoder returns for an (h, w) input: num_queries, or one per anchor if fewer."""
    return min(num_queries, sum((h // s) * (w // s) for s in DECODER_STRIDES))


def memory_in_use(process: psutil.Process) -> int:
    """Return the process's RSS in bytes after glibc has returned its free heap pages to the system."""
    LIBC.malloc_trim(0)
    return process.memory_info().rss


def measure(sequence: list[tuple[int, int, int]], warmup: int, step: Callable[[int, int, int], bool]) -> dict:
    """Run step(batch, height, width) for each shape of sequence, sampling memory.

    Args:
        sequence (list[tuple[int, int, int]]): The (batch, height, width) of each pass.
        warmup (int): Passes before the reference memory sample.
        step (Callable[[int, int, int], bool]): One pass; returns whether its result was good.

    Returns:
        (dict): shapes, plain rss after each pass, in_use_after_warmup, in_use_at_end, bad (indices of passes whose
            step returned False), seconds.
    """
    process = psutil.Process()
    rss, bad = [], []
    start = time.perf_counter()
    for i, shape in enumerate(sequence):
        if not step(*shape):
            bad.append(i)
        if i + 1 == warmup:
            after_warmup = memory_in_use(process)
        rss.append(process.memory_info().rss)
    seconds = time.perf_counter() - start
    return {"shapes": sequence, "rss": rss, "in_use_after_warmup": after_warmup,
            "in_use_at_end": memory_in_use(process), "bad": bad, "seconds": seconds}  # fmt: skip


def run_eval(model_yaml: str) -> dict:
    """PASSES eval passes of the model under inference_mode; a pass is good if its output is a finite
    (batch, queries, 6) tensor. Returns `measure`'s report."""
    torch.manual_seed(MODEL_SEED)
    model = RTDETRDetectionModel(model_yaml, verbose=False).eval()
    num_queries = model.model[-1].num_queries

    def step(batch: int, h: int, w: int) -> bool:
        with torch.inference_mode():
            y = model(torch.rand(batch, 3, h, w))[0]
        return y.shape == (batch, decoder_queries(num_queries, h, w), DETECTION) and bool(torch.isfinite(y).all())

    return measure(shapes(PASSES, SEQUENCE_SEED), WARMUP, step)


def run_train() -> dict:
    """TRAIN_CYCLES cycles over TRAIN_SHAPES random map sizes (1x1 included) of forward+backward+SGD steps of one BRA
    layer; a step is good if its loss and gradients are finite. Returns `measure`'s report."""
    torch.manual_seed(MODEL_SEED)
    layer = BiLevelRoutingAttention_nchw(TRAIN_DIM, num_heads=TRAIN_HEADS)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1e-3)

    def step(batch: int, h: int, w: int) -> bool:
        optimizer.zero_grad(set_to_none=True)
        loss = layer(torch.randn(batch, TRAIN_DIM, h, w)).square().mean()
        loss.backward()
        optimizer.step()
        return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(p.grad).all()) for p in layer.parameters())

    sequence = shapes(TRAIN_SHAPES, SEQUENCE_SEED, TRAIN_STRIDE, TRAIN_MIN_SIDE, TRAIN_MAX_SIDE) * TRAIN_CYCLES
    return measure(sequence, TRAIN_WARMUP, step)


if __name__ == "__main__":
    torch.set_num_threads(THREADS)
    mode, model_yaml, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.write_text(json.dumps(run_eval(model_yaml) if mode == "eval" else run_train()))
