# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Timing and memory measurement of the BRA benchmark: two clocks per call, peak extra memory, medians and ratios."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Callable

import torch

from plan import FP32

MIB = 2**20
MS_PER_S = 1e3
WALL_CLOCK = ""  # suffix of wall-time figures: fwd_ms, fwd_x_floor
CPU_CLOCK = "_cpu"  # suffix of process-CPU-time figures (CPU device only): fwd_ms_cpu, fwd_x_floor_cpu
CLOCKS = (WALL_CLOCK, CPU_CLOCK)
CLOCK_NAMES = {WALL_CLOCK: "wall-clock time", CPU_CLOCK: "process CPU time"}
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}  # CUDA only
KINETO_LOG_LEVEL = "5"  # the profiler's C++ log: fatal messages only (read when the profiler first starts)


def default_device() -> torch.device:
    """The benchmark's device: the current CUDA device where there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued work on device (CUDA); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for a precision name; fp32 runs without autocast."""
    if precision == FP32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def timed(fn: Callable[[], object], device: torch.device) -> dict[str, float]:
    """Run fn once and return its times in milliseconds, keyed by clock suffix.

    "" is wall time (device work included). On the CPU device CPU_CLOCK adds the process CPU time: it leaves out the
    time the process waits for a core, so it resists load from other jobs on a shared machine (with one thread it is
    the compute time; with more it sums the threads).

    Args:
        fn (Callable[[], object]): Work to time.
        device (torch.device): Device fn runs on.

    Returns:
        (dict[str, float]): {"": wall ms} plus {CPU_CLOCK: CPU ms} on CPU.
    """
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    times = {WALL_CLOCK: (time.perf_counter() - wall) * MS_PER_S}
    if device.type == "cpu":
        times[CPU_CLOCK] = (time.process_time() - cpu) * MS_PER_S
    return times


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by fn above the level at its start.

    CPU: the torch profiler's allocation events (every allocation and free through PyTorch's CPU allocator: tensors,
    autograd's saved tensors and gradients, kernel temporaries allocated as tensors; not scratch that oneDNN/MKL
    allocate themselves), summed in time order. CUDA: the caching allocator's peak statistics.

    Args:
        fn (Callable[[], object]): Work to measure (its result is dropped before the measurement ends).
        device (torch.device): Device fn runs on.

    Returns:
        (int): Peak extra bytes.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_LOG_LEVEL)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == "CPU"
    ]
    level = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        level += event.nbytes()
        peak = max(peak, level)
    return peak


def add_samples(samples: dict[str, list[float]], name: str, times: dict[str, float]) -> None:
    """Append one measurement from `timed` to samples under `<name>_ms<clock>` keys."""
    for clock, ms in times.items():
        samples[f"{name}_ms{clock}"].append(ms)


def rotation(items: list, repeat: int) -> list:
    """Items in the order of one repeat: rotated by the repeat number, so that no item always runs first."""
    shift = repeat % len(items)
    return items[shift:] + items[:shift]


def ratio(a: dict, b: dict, key: str) -> float:
    """a[key] / b[key], rounded to 3 decimals."""
    return round(a[key] / b[key], 3)


def median_ms(samples: list[float]) -> float:
    """Median of timing samples, rounded to 0.01 ms."""
    return round(statistics.median(samples), 2)


def max_relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference of a and b relative to b's max abs value."""
    return ((a - b).abs().max() / b.abs().max().clamp(min=torch.finfo(b.dtype).tiny)).item()
