# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Load run for test_load.py: many eval forward passes at random non-square sizes and batch sizes, RSS sampled.

Run as ``python load_worker.py MODEL_YAML OUT_JSON`` in a process of its own, so that its resident memory is the
model's alone. The size and batch sequence comes from a fixed seed (the same run every time).

glibc's malloc keeps freed memory in its heaps (and raises its mmap threshold after large frees), so plain RSS
follows the largest input seen so far, not the memory in use. After WARMUP passes and after the last one the worker
therefore calls ``malloc_trim(0)``, which hands every free heap page back to the system, before reading RSS: what
stays resident is memory still in use, so a leak shows and the allocator's high-water mark does not. Trimming only at
these two points keeps the passes themselves at full speed.

Writes a JSON object: the (batch, height, width) of every pass, plain RSS after every pass, the trimmed RSS after
WARMUP passes and at the end, the passes whose output was not a finite (batch, queries, 6) tensor (queries: see
``decoder_queries``), and the seconds the passes took.
"""

from __future__ import annotations

import ctypes
import json
import random
import sys
import time
from pathlib import Path

import psutil
import torch

from ultralytics.nn.tasks import RTDETRDetectionModel

PASSES = 200
WARMUP = 20  # passes before the reference memory sample
SEQUENCE_SEED = 0
MODEL_SEED = 0
STRIDE = 32  # the model's largest stride: input sizes are multiples of it
MIN_SIDE, MAX_SIDE = 32, 1024
MAX_BATCH = 4
DETECTION = 6  # cx, cy, w, h, score, class index (RTDETRDecoder's eval output)
DECODER_STRIDES = (8, 16, 32)  # the maps RTDETRDecoder takes its queries from, one anchor per cell
THREADS = 2  # the CI machine's cores
LIBC = ctypes.CDLL(None)  # the C library this process runs on (glibc on the Linux CI machines)


def shapes(count: int, seed: int) -> list[tuple[int, int, int]]:
    """The pass sequence: (batch, height, width) with batch in 1..MAX_BATCH and unequal sides, multiples of STRIDE.

    Args:
        count (int): Number of passes.
        seed (int): Seed of the sequence.

    Returns:
        (list[tuple[int, int, int]]): One (batch, height, width) per pass.
    """
    rng = random.Random(seed)
    sides = range(MIN_SIDE, MAX_SIDE + 1, STRIDE)
    sequence = []
    for _ in range(count):
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


def main(model_yaml: str, out: Path) -> None:
    """Build the model, run the passes under inference_mode and write the report.

    Args:
        model_yaml (str): Model YAML to build.
        out (Path): JSON report file.
    """
    torch.set_num_threads(THREADS)
    torch.manual_seed(MODEL_SEED)
    model = RTDETRDetectionModel(model_yaml, verbose=False).eval()
    num_queries = model.model[-1].num_queries
    process = psutil.Process()
    sequence = shapes(PASSES, SEQUENCE_SEED)
    rss, bad = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for i, (batch, h, w) in enumerate(sequence):
            y = model(torch.rand(batch, 3, h, w))[0]
            if y.shape != (batch, decoder_queries(num_queries, h, w), DETECTION) or not torch.isfinite(y).all():
                bad.append(i)
            del y
            if i + 1 == WARMUP:
                after_warmup = memory_in_use(process)
            rss.append(process.memory_info().rss)
    seconds = time.perf_counter() - start
    report = {
        "shapes": sequence,
        "rss": rss,
        "in_use_after_warmup": after_warmup,
        "in_use_at_end": memory_in_use(process),
        "bad": bad,
        "seconds": seconds,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
