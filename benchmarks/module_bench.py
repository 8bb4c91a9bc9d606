# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Module benchmark: BRA against its unavoidable parts, dense attention and the gather baseline on one set of weights.

Every variant of one case runs interleaved with the others in each repeat; before timing, the gather baseline is
checked to compute our module's output (float64 on a small map, fp32 at benchmark size where the map divides).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn

from bra_baseline import GatherBRA
from measure import (
    CLOCKS,
    MIB,
    add_samples,
    autocast,
    max_relative_error,
    median_ms,
    peak_extra_bytes,
    ratio,
    rotation,
    timed,
)
from plan import BASELINE, BRA, BRA_VARIANTS, DENSE, FLOOR, FP32, PATH_VARIANTS, SEED, VARIANTS, Plan, bra_class
from variants import DenseAttention, UnavoidableParts

from ultralytics.nn.AddModules.regions import bra_grid

SANITY_DIM = 64  # float64 check of the baseline against our module: small, divisible map, both head counts
SANITY_SIZE = 14  # a multiple of the region size 14 // n_win = 2
SANITY_BATCH = 2
SANITY_HEADS = (1, 8)
SANITY_TOL_FP64 = 1e-6
SANITY_TOL_FP32 = 1e-4  # max abs difference relative to the output's max abs value, fp32 at benchmark size


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
        (dict[str, nn.Module | str]): Variant name to module (float32, train mode) or skip reason: BRA ("auto"), BRA
            on each attention path, the floor, dense attention and the gather baseline.
    """
    torch.manual_seed(SEED)
    ours = bra_class()(plan.dim, num_heads=heads, n_win=plan.n_win, topk=plan.topk)
    modules: dict[str, nn.Module | str] = {BRA: ours}
    for variant, path in PATH_VARIANTS.items():
        modules[variant] = bra_class()(plan.dim, num_heads=heads, n_win=plan.n_win, topk=plan.topk, attn_backend=path)
        modules[variant].load_state_dict(ours.state_dict())
    modules[FLOOR] = UnavoidableParts.like(ours)
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
        for row, module in rotation(entries, repeat):
            add_samples(samples[id(row)], "fwd", timed(lambda m=module: forward(m), device))
            clear_grads(module)
            add_samples(samples[id(row)], "fwdbwd", timed(lambda m=module: forward_backward(m), device))
    floor_row = None
    for row, module in entries:
        row.update({key: median_ms(values) for key, values in samples[id(row)].items()})
        if row["variant"] in BRA_VARIANTS:  # what the forward (inference) and the fwd+bwd (training) calls ran
            grid = bra_grid(side, side, module.n_win)
            row["path"] = module.attention_path(grid, device, need_weights=False, training=False).path
            row["path_train"] = module.attention_path(grid, device, need_weights=False, training=True).path
        rows.append(row)
        floor_row = row if row["variant"] == FLOOR else floor_row
    rows += [{**floor_row, "heads": heads} for heads in heads_measured[1:]]
    rows.sort(key=lambda r: (r["heads"], VARIANTS.index(r["variant"])))
    return rows, checks


def module_comparisons(rows: list[dict]) -> list[dict]:
    """Ratios of our BRA (auto and each attention path) to the other variants for every (size, batch, heads, precision).

    Args:
        rows (list[dict]): Rows from `bench_module_case`.

    Returns:
        (list[dict]): variant, path and path_train (the attention paths forward and fwd+bwd ran), mem_x_floor,
            and per clock suffix (wall "", CPU "_cpu"): fwd_x_floor, fwdbwd_x_floor, fwdbwd_x_dense (when dense ran),
            speedup_vs_baseline (baseline fwd+bwd time over ours) and its inverse time_x_baseline, and mem_x_baseline
            (our peak memory over the baseline's), when the baseline ran.
    """
    index = {(r["size"], r["batch"], r["heads"], r["precision"], r["variant"]): r for r in rows if "skipped" not in r}
    out = []
    for (size, batch, heads, precision, variant), ours in index.items():
        if variant not in BRA_VARIANTS:
            continue
        key = (size, batch, heads, precision)
        floor = index[(*key, FLOOR)]
        row = {"size": size, "batch": batch, "heads": heads, "precision": precision, "variant": variant}
        row["path"], row["path_train"] = ours["path"], ours["path_train"]
        row["mem_x_floor"] = ratio(ours, floor, "peak_mib")
        for clock in (c for c in CLOCKS if f"fwd_ms{c}" in ours):
            row[f"fwd_x_floor{clock}"] = ratio(ours, floor, f"fwd_ms{clock}")
            row[f"fwdbwd_x_floor{clock}"] = ratio(ours, floor, f"fwdbwd_ms{clock}")
            if (*key, DENSE) in index:
                row[f"fwdbwd_x_dense{clock}"] = ratio(ours, index[(*key, DENSE)], f"fwdbwd_ms{clock}")
            if (*key, BASELINE) in index:
                row[f"speedup_vs_baseline{clock}"] = ratio(index[(*key, BASELINE)], ours, f"fwdbwd_ms{clock}")
                row[f"time_x_baseline{clock}"] = ratio(ours, index[(*key, BASELINE)], f"fwdbwd_ms{clock}")
        if (*key, BASELINE) in index:
            row["mem_x_baseline"] = ratio(ours, index[(*key, BASELINE)], "peak_mib")
        out.append(row)
    return out
