# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Benchmark bi-level routing attention (BRA): module time and memory, and whole-model RT-DETR ratios.

Usage:
    python benchmarks/bench.py [--quick] [--out benchmarks/results] [--threads 1] [--tag NAME]

Module benchmark: `BiLevelRoutingAttention_nchw(1024, n_win=7, topk=4)` against (b) its unavoidable parts alone
(`variants.UnavoidableParts`), (c) dense attention with the same projections (`variants.DenseAttention`) and (d) the
original gather-based algorithm (`bra_baseline.GatherBRA`), all on the same weights. Whole-model benchmark:
rtdetr-l-HGBlock_Biformer train step and inference against its floor model (each BRA replaced by its unavoidable
parts) and plain rtdetr-l (nc=1). Every time is a median over repeats taken interleaved in one process after a
warm-up; see docs/benchmarks.md for what each column and the memory figure mean.

Writes `<out>/<tag>.json` (environment, every figure, target verdicts) and `<out>/<tag>.png` (module time and peak
memory against map size) and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import inspect
import json
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from bra_baseline import GatherBRA
from variants import DenseAttention, UnavoidableParts, floor_model

MIB = 2**20
MS_PER_S = 1e3
SEED = 0
BRA = "bra"
FLOOR = "floor"
DENSE = "dense"
BASELINE = "baseline"
VARIANTS = (BRA, FLOOR, DENSE, BASELINE)
FP32 = "fp32"
WALL_CLOCK = ""  # suffix of wall-time figures: fwd_ms, fwd_x_floor
CPU_CLOCK = "_cpu"  # suffix of process-CPU-time figures (CPU device only): fwd_ms_cpu, fwd_x_floor_cpu
CLOCKS = (WALL_CLOCK, CPU_CLOCK)
CLOCK_NAMES = {WALL_CLOCK: "wall-clock time", CPU_CLOCK: "process CPU time"}
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}  # CUDA only
SANITY_DIM = 64  # float64 check of the baseline against our module: small, divisible map, both head counts
SANITY_SIZE = 14  # a multiple of the region size 14 // n_win = 2
SANITY_BATCH = 2
SANITY_HEADS = (1, 8)
SANITY_TOL_FP64 = 1e-6
SANITY_TOL_FP32 = 1e-4  # max abs difference relative to the output's max abs value, fp32 at benchmark size
MODEL_BRA = "rtdetr-l-HGBlock_Biformer.yaml"
MODEL_PLAIN = "rtdetr-l.yaml"
MODEL_NC = 1
MODEL_BOXES = 4  # random ground-truth boxes per image in the training batch
MODEL_MIN_WH = 0.05  # random box width/height range, normalized
MODEL_MAX_WH = 0.5
KINETO_LOG_LEVEL = "5"  # the profiler's C++ log: fatal messages only (read when the profiler first starts)
NOISE_NOTE = (
    "Measured on a machine shared with other jobs; absolute times are noisy. Ratios come from one process with the "
    "variants interleaved in every repeat (medians), which cancels most of the contention."
)


@dataclass(frozen=True)
class Plan:
    """What to measure.

    Attributes:
        name (str): "full", "quick" or a caller's name.
        dim (int): BRA channels.
        n_win (int): BRA regions per side.
        topk (int): BRA routed regions per query region.
        sizes (tuple[int, ...]): Square map sides.
        batches (tuple[int, ...]): Batch sizes of the module benchmark.
        heads (tuple[int, ...]): Head counts of the module benchmark.
        repeats (int): Timed repeats per case at sides <= small_side (medians).
        repeats_large (int): Timed repeats per case at larger sides.
        small_side (int): Largest side timed with `repeats`.
        large_batches (tuple[int, ...]): Batch sizes at sides > small_side.
        large_heads (tuple[int, ...]): Head counts at sides > small_side.
        dense_max_tokens (int): Dense attention (O(tokens^2)) runs only up to this many tokens per map.
        baseline_max_bytes (int): The baseline runs only while its estimated expanded K/V gradient fits this.
        model_sizes (tuple[int, ...]): Image sizes of the whole-model benchmark; empty skips it.
        model_repeats (int): Timed training steps per model and image size (warm-up excluded).
        infer_per_step (int): Timed inferences per training step (inference is short, so noisier).
        train_batch (int): Whole-model training batch.
        infer_batch (int): Whole-model inference batch.
    """

    name: str
    dim: int = 1024
    n_win: int = 7
    topk: int = 4
    sizes: tuple[int, ...] = (20, 40, 60, 80, 100)
    batches: tuple[int, ...] = (1, 2)
    heads: tuple[int, ...] = (1, 8)
    repeats: int = 5
    repeats_large: int = 3
    small_side: int = 40
    large_batches: tuple[int, ...] = (1,)
    large_heads: tuple[int, ...] = (8,)
    dense_max_tokens: int = 60 * 60
    baseline_max_bytes: int = 2 * 2**30
    model_sizes: tuple[int, ...] = (320, 640)
    model_repeats: int = 3
    infer_per_step: int = 3
    train_batch: int = 2
    infer_batch: int = 1

    def case_repeats(self, side: int) -> int:
        """Return the number of timed repeats for a map side."""
        return self.repeats if side <= self.small_side else self.repeats_large

    def case_batches(self, side: int) -> tuple[int, ...]:
        """Return the batch sizes measured at a map side."""
        return self.batches if side <= self.small_side else self.large_batches

    def case_heads(self, side: int) -> tuple[int, ...]:
        """Return the head counts measured at a map side."""
        return self.heads if side <= self.small_side else self.large_heads


FULL = Plan("full")
QUICK = replace(FULL, name="quick", sizes=(20, 40), batches=(1,), repeats=3, model_sizes=(320,))


@dataclass(frozen=True)
class Target:
    """One target of issue 5: `metric` of rows matching `where` compared with `limit`.

    Attributes:
        name (str): Human-readable statement of the target.
        section (str): "module" or "model".
        metric (str): Key of the comparison row.
        limit (float): The bound.
        upper (bool): True when the metric must be <= limit, False when >= limit.
        where (dict): Row fields that select the rows the target applies to.
    """

    name: str
    section: str
    metric: str
    limit: float
    upper: bool = True
    where: dict = field(default_factory=dict)


TARGET_SIDE = 40
DENSE_TARGET_SIDE = 20
TARGETS = (
    Target("forward <= 1.25x unavoidable parts at 40x40", "module", "fwd_x_floor", 1.25, where={"size": TARGET_SIDE}),
    Target("fwd+bwd <= 1.4x unavoidable parts at 40x40", "module", "fwdbwd_x_floor", 1.4, where={"size": TARGET_SIDE}),
    Target("peak memory <= 2x unavoidable parts at 40x40", "module", "mem_x_floor", 2.0, where={"size": TARGET_SIDE}),
    Target(
        "fwd+bwd >= 2.5x faster than the gather baseline at 40x40",
        "module",
        "speedup_vs_baseline",
        2.5,
        upper=False,
        where={"size": TARGET_SIDE},
    ),
    Target(
        "fwd+bwd no slower than dense SDPA at 1x20x20",
        "module",
        "fwdbwd_x_dense",
        1.0,
        where={"size": DENSE_TARGET_SIDE, "batch": 1},
    ),
    Target("train step <= 1.08x floor model", "model", "train_x_floor", 1.08, where={"model": "bra"}),
    Target("inference <= 1.05x floor model", "model", "infer_x_floor", 1.05, where={"model": "bra"}),
)


def bra_class() -> type[nn.Module]:
    """Import the fork's BRA module (kept out of module import so `--help` works without the fork)."""
    from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw

    return BiLevelRoutingAttention_nchw


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def host_tag(device: torch.device, threads: int, plan: Plan) -> str:
    """Default result name: device model, logical CPU count, threads and plan, e.g. `amd-epyc-2cpu-1t`.

    Args:
        device (torch.device): Benchmark device.
        threads (int): Torch intra-op threads.
        plan (Plan): The plan; non-full plans get their name appended so they never overwrite full results.

    Returns:
        (str): A file-name-safe tag.
    """
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_model()}-{os.cpu_count()}cpu"
    tag = re.sub(r"[^a-z0-9]+", "-", f"{name}-{threads}t".lower()).strip("-")
    return tag if plan.name == FULL.name else f"{tag}-{plan.name}"


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


def ratio(a: dict, b: dict, key: str) -> float:
    """a[key] / b[key], rounded to 3 decimals."""
    return round(a[key] / b[key], 3)


def median_ms(samples: list[float]) -> float:
    """Median of timing samples, rounded to 0.01 ms."""
    return round(statistics.median(samples), 2)


def max_relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference of a and b relative to b's max abs value."""
    return ((a - b).abs().max() / b.abs().max().clamp(min=torch.finfo(b.dtype).tiny)).item()


def check_baseline_matches(
    dim: int = SANITY_DIM, n_win: int = 7, topk: int = 4, size: int = SANITY_SIZE, batch: int = SANITY_BATCH
) -> float:
    """Check in float64 that the gather baseline and our BRA compute the same output on a divisible map.

    Args:
        dim (int): Channels.
        n_win (int): Regions per side.
        topk (int): Routed regions per query region.
        size (int): Map side, a multiple of size // n_win.
        batch (int): Batch size.

    Returns:
        (float): The largest max abs difference over SANITY_HEADS.

    Raises:
        AssertionError: When the difference exceeds SANITY_TOL_FP64.
    """
    worst = 0.0
    for heads in SANITY_HEADS:
        torch.manual_seed(SEED)
        ours = bra_class()(dim, num_heads=heads, n_win=n_win, topk=topk).double()
        baseline = GatherBRA(dim, num_heads=heads, n_win=n_win, topk=topk).double()
        baseline.load_state_dict(ours.state_dict())
        x = torch.randn(batch, dim, size, size, dtype=torch.float64)
        with torch.no_grad():
            worst = max(worst, (ours(x) - baseline(x)).abs().max().item())
    assert worst <= SANITY_TOL_FP64, f"gather baseline differs from BiLevelRoutingAttention_nchw by {worst:.3g}"
    return worst


def module_variants(plan: Plan, side: int, batch: int, heads: int) -> dict[str, nn.Module | str]:
    """Build the compared modules on one set of weights, or the reason a variant is skipped.

    Args:
        plan (Plan): The plan.
        side (int): Map side.
        batch (int): Batch size.
        heads (int): Number of heads.

    Returns:
        (dict[str, nn.Module | str]): Variant name to module (float32, train mode) or skip reason.
    """
    torch.manual_seed(SEED)
    ours = bra_class()(plan.dim, num_heads=heads, n_win=plan.n_win, topk=plan.topk)
    modules: dict[str, nn.Module | str] = {BRA: ours, FLOOR: UnavoidableParts.like(ours)}
    if side * side <= plan.dense_max_tokens:
        modules[DENSE] = DenseAttention(plan.dim, num_heads=heads)
        modules[DENSE].load_state_dict(ours.state_dict())
    else:
        modules[DENSE] = f"skipped: {side * side} tokens > dense_max_tokens={plan.dense_max_tokens}"
    region = side // plan.n_win
    regions = math.ceil(side / region) ** 2
    expanded = batch * regions * regions * region * region * plan.dim * torch.finfo(torch.float32).bits // 8
    if expanded <= plan.baseline_max_bytes:
        modules[BASELINE] = GatherBRA(plan.dim, num_heads=heads, n_win=plan.n_win, topk=plan.topk)
        modules[BASELINE].load_state_dict(ours.state_dict())
    else:
        modules[BASELINE] = f"skipped: expanded K/V gradient {expanded / MIB:.0f} MiB > baseline_max_bytes"
    return modules


def bench_module_case(
    plan: Plan, side: int, batch: int, precision: str, device: torch.device
) -> tuple[list[dict], list[dict]]:
    """Time and measure every variant at one map size and batch, all head counts interleaved.

    Args:
        plan (Plan): The plan.
        side (int): Map side.
        batch (int): Batch size.
        precision (str): "fp32" or an AUTOCAST_DTYPES key.
        device (torch.device): Device.

    Returns:
        rows (list[dict]): One row per (heads, variant): fwd_ms, fwdbwd_ms, peak_mib, or skipped.
        checks (list[dict]): fp32 baseline-vs-ours output checks on divisible sizes.
    """
    entries, rows, checks = [], [], []
    floor_done = False
    heads_measured = plan.case_heads(side)
    for heads in heads_measured:
        for variant, module in module_variants(plan, side, batch, heads).items():
            row = {"size": side, "batch": batch, "heads": heads, "precision": precision, "variant": variant}
            if variant == FLOOR and floor_done:
                continue  # heads-independent: measured once, reported for every head count below
            floor_done |= variant == FLOOR
            if isinstance(module, str):
                rows.append({**row, "skipped": module})
            else:
                entries.append((row, module.to(device)))
    torch.manual_seed(SEED)
    x = torch.randn(batch, plan.dim, side, side, device=device, requires_grad=True)
    grad = torch.randn_like(x)

    def forward(module: nn.Module) -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):
            return module(x)

    def clear_grads(module: nn.Module) -> None:  # outside the measured window: every pass starts at one level
        module.zero_grad(set_to_none=True)
        x.grad = None

    def forward_backward(module: nn.Module) -> None:
        with autocast(device, precision):
            y = module(x)
        y.backward(grad.to(y.dtype))

    outputs = {}
    for row, module in entries:  # warm-up, memory and the fp32 output check
        clear_grads(module)
        row["peak_mib"] = round(peak_extra_bytes(lambda m=module: forward_backward(m), device) / MIB, 1)
        outputs[row["heads"], row["variant"]] = forward(module)
    region = side // plan.n_win
    if precision == FP32 and side % region == 0:
        for heads in heads_measured:
            if (heads, BASELINE) in outputs:
                error = max_relative_error(outputs[heads, BASELINE], outputs[heads, BRA])
                checks.append({"size": side, "batch": batch, "heads": heads, "max_rel_error": error})
                assert error <= SANITY_TOL_FP32, f"baseline differs from ours at {side}x{side}, heads={heads}: {error}"
    del outputs
    samples = {id(row): defaultdict(list) for row, _ in entries}
    for repeat in range(plan.case_repeats(side)):
        shift = repeat % len(entries)  # rotate the order so no variant always runs first
        for row, module in entries[shift:] + entries[:shift]:
            add_samples(samples[id(row)], "fwd", timed(lambda m=module: forward(m), device))
            clear_grads(module)
            add_samples(samples[id(row)], "fwdbwd", timed(lambda m=module: forward_backward(m), device))
    floor_row = None
    for row, _ in entries:
        row.update({key: median_ms(values) for key, values in samples[id(row)].items()})
        rows.append(row)
        floor_row = row if row["variant"] == FLOOR else floor_row
    rows += [{**floor_row, "heads": heads} for heads in heads_measured[1:]]
    rows.sort(key=lambda r: (r["heads"], VARIANTS.index(r["variant"])))
    return rows, checks


def module_comparisons(rows: list[dict]) -> list[dict]:
    """Ratios of our BRA to the other variants for every (size, batch, heads, precision).

    Args:
        rows (list[dict]): Rows from `bench_module_case`.

    Returns:
        (list[dict]): mem_x_floor, and per clock suffix (wall "", CPU "_cpu"): fwd_x_floor, fwdbwd_x_floor,
            fwdbwd_x_dense (when dense ran), speedup_vs_baseline (baseline fwd+bwd time over ours, when it ran).
    """
    index = {(r["size"], r["batch"], r["heads"], r["precision"], r["variant"]): r for r in rows if "skipped" not in r}
    out = []
    for (size, batch, heads, precision, variant), ours in index.items():
        if variant != BRA:
            continue
        key = (size, batch, heads, precision)
        floor = index[(*key, FLOOR)]
        row = {"size": size, "batch": batch, "heads": heads, "precision": precision}
        row["mem_x_floor"] = ratio(ours, floor, "peak_mib")
        for clock in (c for c in CLOCKS if f"fwd_ms{c}" in ours):
            row[f"fwd_x_floor{clock}"] = ratio(ours, floor, f"fwd_ms{clock}")
            row[f"fwdbwd_x_floor{clock}"] = ratio(ours, floor, f"fwdbwd_ms{clock}")
            if (*key, DENSE) in index:
                row[f"fwdbwd_x_dense{clock}"] = ratio(ours, index[(*key, DENSE)], f"fwdbwd_ms{clock}")
            if (*key, BASELINE) in index:
                row[f"speedup_vs_baseline{clock}"] = ratio(index[(*key, BASELINE)], ours, f"fwdbwd_ms{clock}")
        out.append(row)
    return out


def training_batch(batch: int, imgsz: int, device: torch.device) -> dict:
    """Build a batch in the layout RTDETRDetectionModel.loss reads: images and MODEL_BOXES random boxes per image.

    Args:
        batch (int): Images.
        imgsz (int): Square image side.
        device (torch.device): Device.

    Returns:
        (dict): img (B, 3, imgsz, imgsz) in [0, 1], cls (n, 1), bboxes (n, 4) normalized xywh, batch_idx (n,).
    """
    gen = torch.Generator().manual_seed(SEED)
    n = batch * MODEL_BOXES
    wh = MODEL_MIN_WH + (MODEL_MAX_WH - MODEL_MIN_WH) * torch.rand(n, 2, generator=gen)
    xy = wh / 2 + (1 - wh) * torch.rand(n, 2, generator=gen)
    return {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=gen).to(device),
        "cls": torch.zeros(n, 1),
        "bboxes": torch.cat([xy, wh], 1),
        "batch_idx": torch.arange(batch).repeat_interleave(MODEL_BOXES).float(),
    }


def build_models(device: torch.device) -> dict[str, nn.Module] | str:
    """Build the BRA model, its floor model and plain rtdetr-l (nc=1), or return why they cannot be built.

    Returns:
        (dict[str, nn.Module] | str): "bra", "floor", "rtdetr-l" models on device, or a skip message.
    """
    try:
        from ultralytics.nn.tasks import RTDETRDetectionModel

        torch.manual_seed(SEED)
        bra = RTDETRDetectionModel(MODEL_BRA, verbose=False)
        plain = RTDETRDetectionModel(MODEL_PLAIN, nc=MODEL_NC, verbose=False)
    except Exception as e:  # the fork's tasks.py wiring or YAMLs missing: report, do not fail the module benchmark
        return f"skipped: cannot build {MODEL_BRA} ({type(e).__name__}: {e})"
    for model in (bra, plain):
        model.nc = model.yaml["nc"]  # set by the trainer in real training; the loss reads it
    floor, replaced = floor_model(bra, bra_class())
    if not replaced:
        return f"skipped: {MODEL_BRA} contains no BiLevelRoutingAttention_nchw"
    return {"bra": bra.to(device), "floor": floor.to(device), "rtdetr-l": plain.to(device)}


def measure_model(
    model: nn.Module,
    batch: dict,
    image: torch.Tensor,
    infers: int,
    precision: str,
    device: torch.device,
    samples: dict[str, list[float]],
) -> None:
    """Time one training step (loss + backward) and `infers` inferences of a detection model.

    Mode switches (train/eval) and gradient clearing happen outside the timed calls.

    Args:
        model (nn.Module): An RTDETRDetectionModel.
        batch (dict): Training batch from `training_batch`.
        image (torch.Tensor): Inference input of shape (B, 3, H, W).
        infers (int): Number of timed inferences.
        precision (str): "fp32" or an AUTOCAST_DTYPES key.
        device (torch.device): Device.
        samples (dict[str, list[float]]): Receives the times under train_ms, infer_ms (and *_ms_cpu on CPU).
    """

    def train_step() -> None:
        with autocast(device, precision):
            loss, _ = model.loss(batch)
        loss.backward()

    def infer() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(image)

    model.train()
    model.zero_grad(set_to_none=True)
    add_samples(samples, "train", timed(train_step, device))
    model.eval()
    for _ in range(infers):
        add_samples(samples, "infer", timed(infer, device))


def bench_models(plan: Plan, precision: str, device: torch.device, models: dict[str, nn.Module]) -> list[dict]:
    """Time a training step and inference of each model at every plan image size, interleaved.

    Args:
        plan (Plan): The plan.
        precision (str): "fp32" or an AUTOCAST_DTYPES key.
        device (torch.device): Device.
        models (dict[str, nn.Module]): From `build_models`.

    Returns:
        (list[dict]): Per (imgsz, model): train_ms, infer_ms and their ratios to the floor model and rtdetr-l
            (train_x_floor, infer_x_floor, train_x_rtdetr_l, infer_x_rtdetr_l), each also with the "_cpu" clock on CPU.
    """
    rows = []
    for imgsz in plan.model_sizes:
        batch = training_batch(plan.train_batch, imgsz, device)
        image = batch["img"][: plan.infer_batch]

        for model in models.values():  # warm-up
            measure_model(model, batch, image, 1, precision, device, defaultdict(list))
        samples = {name: defaultdict(list) for name in models}
        for repeat in range(plan.model_repeats):
            names = list(models)
            shift = repeat % len(names)  # rotate the order so no model always runs first
            for name in names[shift:] + names[:shift]:
                measure_model(models[name], batch, image, plan.infer_per_step, precision, device, samples[name])
        medians = {name: {key: median_ms(v) for key, v in s.items()} for name, s in samples.items()}
        for name, times in medians.items():
            row = {"imgsz": imgsz, "precision": precision, "model": name, **times}
            for ref, suffix in (("floor", "floor"), ("rtdetr-l", "rtdetr_l")):
                for clock in (c for c in CLOCKS if f"train_ms{c}" in times):
                    row[f"train_x_{suffix}{clock}"] = ratio(times, medians[ref], f"train_ms{clock}")
                    row[f"infer_x_{suffix}{clock}"] = ratio(times, medians[ref], f"infer_ms{clock}")
            rows.append(row)
    return rows


def evaluate_targets(results: dict) -> list[dict]:
    """Compare the measured figures with TARGETS (fp32 rows only).

    Args:
        results (dict): Results with "module_comparisons" and "model" lists.

    Returns:
        (list[dict]): Per target: name, metric, limit, and per clock suffix the worst measured value ("worst",
            "worst_cpu") and whether it meets the limit ("met", "met_cpu"; None when nothing was measured).
            Memory has no clock: its "_cpu" entries repeat the plain ones.
    """
    sections = {"module": results["module_comparisons"], "model": results["model"]}
    verdicts = []
    for t in TARGETS:
        rows = sections[t.section] if isinstance(sections[t.section], list) else []
        rows = [r for r in rows if r.get("precision") == FP32 and all(r.get(k) == v for k, v in t.where.items())]
        verdict = {"target": t.name, "metric": t.metric, "limit": t.limit}
        for clock in CLOCKS:
            values = [r.get(t.metric + clock, r.get(t.metric)) for r in rows]
            values = [v for v in values if v is not None]
            worst = (max if t.upper else min)(values) if values else None
            verdict[f"worst{clock}"] = worst
            verdict[f"met{clock}"] = None if worst is None else (worst <= t.limit if t.upper else worst >= t.limit)
        verdicts.append(verdict)
    return verdicts


def format_table(rows: list[dict], columns: list[str], clock: str = WALL_CLOCK) -> str:
    """Plain-text table of the given columns, each read as `<column><clock>` if present, else `<column>`, else '-'.

    Args:
        rows (list[dict]): Rows.
        columns (list[str]): Column names without clock suffix.
        clock (str): Clock suffix, WALL_CLOCK or CPU_CLOCK.

    Returns:
        (str): The table.
    """
    cells = [[str(r.get(c + clock, r.get(c, "-"))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


MODULE_COLUMNS = [
    "size",
    "batch",
    "heads",
    "precision",
    "variant",
    "fwd_ms",
    "fwdbwd_ms",
    "fwd_ms_cpu",
    "fwdbwd_ms_cpu",
    "peak_mib",
    "skipped",
]
COMPARISON_COLUMNS = [
    "size",
    "batch",
    "heads",
    "precision",
    "fwd_x_floor",
    "fwdbwd_x_floor",
    "mem_x_floor",
    "fwdbwd_x_dense",
    "speedup_vs_baseline",
]
MODEL_COLUMNS = [
    "imgsz",
    "precision",
    "model",
    "train_ms",
    "infer_ms",
    "train_x_floor",
    "infer_x_floor",
    "train_x_rtdetr_l",
    "infer_x_rtdetr_l",
]


def plot(results: dict, path: Path) -> None:
    """Plot fp32 module fwd+bwd time and peak memory against map size (batch 1), one line per variant and heads.

    Time is process CPU time where it was measured (CPU device: steadier on a shared machine), else wall time.

    Args:
        results (dict): Results with "module" rows.
        path (Path): PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["module"] if r["precision"] == FP32 and r["batch"] == 1 and "skipped" not in r]
    heads = results["plan"]["heads"]
    lines = {(FLOOR, None): [r for r in rows if r["variant"] == FLOOR]}  # heads-independent
    for variant in (BRA, DENSE, BASELINE):
        lines.update({(variant, h): [r for r in rows if r["variant"] == variant and r["heads"] == h] for h in heads})
    clock = CPU_CLOCK if rows and f"fwdbwd_ms{CPU_CLOCK}" in rows[0] else WALL_CLOCK
    metrics = {
        f"fwdbwd_ms{clock}": f"forward+backward {CLOCK_NAMES[clock]} (ms)",
        "peak_mib": "peak extra memory (MiB)",
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (metric, label) in zip(axes, metrics.items()):
        for (variant, h), selected in lines.items():
            points = sorted({r["size"]: r[metric] for r in selected}.items())
            if points:
                sides, values = zip(*points)
                name = variant if h is None else f"{variant}, {h} head{'s' * (h > 1)}"
                style = "--" if h == min(heads) and len(heads) > 1 else "-"
                ax.plot(sides, values, style, color=f"C{VARIANTS.index(variant)}", marker="o", label=name)
        ax.set_xticks(sorted({r["size"] for r in rows}))
        ax.set_xlabel("map side (HxW = side x side), batch 1")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    env = results["env"]
    fig.suptitle(
        f"BRA dim={results['plan']['dim']} n_win={results['plan']['n_win']} topk={results['plan']['topk']} - "
        f"{env['device_name']}, torch {env['torch']}, {env['threads']} thread(s), fp32"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def git_state(path: Path) -> dict:
    """HEAD commit of the git checkout holding path and whether path differs from it; empty outside a checkout.

    Args:
        path (Path): A file.

    Returns:
        (dict): {"git_head": str, "bra_source_modified": bool}, or {}.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path.parent, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git_head": head.stdout.strip(), "bra_source_modified": bool(status.stdout.strip())}


def environment(device: torch.device, threads: int) -> dict:
    """Versions, device, thread count, date, load and the sha256 of the measured BRA source: kept with every result."""
    import ultralytics

    source = Path(inspect.getsourcefile(bra_class())).resolve()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "bra_source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        **git_state(source),
        "load_avg_start": os.getloadavg(),
        "noise": NOISE_NOTE,
    }


def run(plan: Plan, out: Path, threads: int, tag: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the benchmark and write `<out>/<tag>.json` and `<out>/<tag>.png`.

    Args:
        plan (Plan): What to measure.
        out (Path): Output folder (created).
        threads (int): Torch intra-op threads.
        tag (str, optional): Result name; defaults to `host_tag(...)`.
        log (Callable[[str], None]): Progress and table printer.

    Returns:
        (dict): The results written to the JSON file.
    """
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precisions = (FP32, *AUTOCAST_DTYPES) if device.type == "cuda" else (FP32,)
    tag = tag or host_tag(device, threads, plan)
    start, start_cpu = time.perf_counter(), time.process_time()
    results = {"tag": tag, "env": environment(device, threads), "plan": asdict(plan)}
    results["sanity_fp64_max_abs_error"] = check_baseline_matches(n_win=plan.n_win, topk=plan.topk)
    log(f"baseline == ours in float64 (max abs error {results['sanity_fp64_max_abs_error']:.2g})")
    results["module"], results["sanity_fp32"] = [], []
    for precision in precisions:
        for side in plan.sizes:
            for batch in plan.case_batches(side):
                log(f"module {precision} {side}x{side} batch {batch} ({time.perf_counter() - start:.0f} s)")
                rows, checks = bench_module_case(plan, side, batch, precision, device)
                results["module"] += rows
                results["sanity_fp32"] += checks
    results["module_comparisons"] = module_comparisons(results["module"])
    models = build_models(device) if plan.model_sizes else "skipped: no model sizes in the plan"
    if isinstance(models, str):
        log(f"whole model: {models}")
        results["model"] = models
    else:
        results["model"] = []
        for precision in precisions:
            log(f"whole model {precision} ({time.perf_counter() - start:.0f} s)")
            results["model"] += bench_models(plan, precision, device, models)
    results["targets"] = evaluate_targets(results)
    results["env"]["load_avg_end"] = os.getloadavg()
    results["env"]["seconds"] = round(time.perf_counter() - start)
    results["env"]["cpu_seconds"] = round(time.process_time() - start_cpu)  # wall on an idle machine, one thread
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out / f"{tag}.png")
    log(format_table(results["module"], MODULE_COLUMNS))
    for clock in CLOCKS if device.type == "cpu" else (WALL_CLOCK,):
        log(f"-- ratios by {CLOCK_NAMES[clock]} --")
        log(format_table(results["module_comparisons"], COMPARISON_COLUMNS, clock))
        if isinstance(results["model"], list):
            log(format_table(results["model"], MODEL_COLUMNS, clock))
        log(format_table(results["targets"], ["target", "limit", "worst", "met"], clock))
    log(f"wrote {out / tag}.json and .png in {results['env']['seconds']} s")
    return results


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20x20 and 40x40 maps at batch 1, imgsz 320 only (about a minute)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--tag", help="result file name (default: device, CPU count, threads; '-quick' appended)")
    args = parser.parse_args(argv)
    return run(QUICK if args.quick else FULL, args.out, args.threads, args.tag)


if __name__ == "__main__":
    main()
