# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Inference latency of several checkpoints, measured interleaved in one process so that they share conditions."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Sequence

import torch

from ultralytics.nn.autobackend import AutoBackend
from ultralytics.utils.torch_utils import select_device

__all__ = ("WARMUP_ROUNDS", "measure")

WARMUP_ROUNDS = 3  # untimed rounds first: allocator, cuDNN/oneDNN kernel selection


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(weights: Sequence[Path], imgsz: int, device: str | int, rounds: int) -> list[float]:
    """Return each checkpoint's median latency per image, in milliseconds.

    Every model is loaded as upstream's predictor loads it (``AutoBackend``, Conv+BN fused, fp32). Each round runs
    one forward pass of every model on the same (1, 3, imgsz, imgsz) input, starting with a different model each
    round, so slow drifts of the machine (clock, temperature, other jobs) reach all models alike. Model forward only:
    no pre- or post-processing.

    Args:
        weights (Sequence[Path]): Checkpoints.
        imgsz (int): Square input size.
        device (str | int): Device, as upstream takes it.
        rounds (int): Timed rounds (one forward of each model per round); the median is over these.

    Returns:
        (list[float]): Median milliseconds per image, in the order of ``weights``.
    """
    torch_device = select_device(device, verbose=False)
    models = [AutoBackend(model=str(w), device=torch_device, fuse=True, verbose=False) for w in weights]
    image = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0)).to(torch_device)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for round_index in range(WARMUP_ROUNDS + rounds):
            for offset in range(len(models)):
                index = (round_index + offset) % len(models)
                _synchronize(torch_device)
                start = time.perf_counter()
                models[index](image)
                _synchronize(torch_device)
                if round_index >= WARMUP_ROUNDS:
                    times[index].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]
