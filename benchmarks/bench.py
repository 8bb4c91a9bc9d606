# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Benchmark bi-level routing attention (BRA): module time and memory, whole-model RT-DETR ratios, deployed latency.

Usage:
    python benchmarks/bench.py [--quick] [--part all|pytorch|deploy] [--out DIR] [--threads 1] [--tag NAME]

PyTorch part (`run`, module_bench.py and model_bench.py): `BiLevelRoutingAttention_nchw(1024, n_win=7, topk=4)`
against (b) its unavoidable parts alone (`variants.UnavoidableParts`), (c) dense attention with the same projections
(`variants.DenseAttention`) and (d) the original gather-based algorithm (`bra_baseline.GatherBRA`), all on the same
weights; then rtdetr-l-HGBlock_Biformer train step and inference against its floor model (each BRA replaced by its
unavoidable parts) and plain rtdetr-l (nc=1). Deployment part (`run_deploy`, deploy_bench.py): the same three models
exported with Ultralytics' exporter, their onnxruntime and OpenVINO CPU latency. Every time is a median over repeats
taken interleaved in one process after a warm-up; see docs/benchmarks.md for what each column and figure mean.

Writes `<out>/<tag>.json` (environment, every figure, target verdicts) and `<out>/<tag>.png` (module time and peak
memory against map size), and `<out>/<tag>-deploy.json` (deployed latency, its environment and verdicts), and prints
the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch

from deploy_bench import INPUT_NOTE, bench_deploy, runtime_versions
from measure import AUTOCAST_DTYPES, CLOCK_NAMES, CLOCKS, WALL_CLOCK, default_device
from model_bench import bench_models, build_models
from module_bench import bench_module_case, check_baseline_matches, module_comparisons
from plan import DEPLOY_FULL, DEPLOY_QUICK, DEPLOY_TARGETS, FP32, FULL, QUICK, TARGETS, DeployPlan, Plan
from report import (
    COMPARISON_COLUMNS,
    DEPLOY_COLUMNS,
    MODEL_COLUMNS,
    MODULE_COLUMNS,
    environment,
    evaluate_targets,
    format_table,
    host_tag,
    plot,
)

PARTS = ("all", "pytorch", "deploy")
VERDICT_COLUMNS = ["target", "limit", "worst", "met"]


def run(plan: Plan, out: Path, threads: int, tag: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the PyTorch part (module and whole-model benchmarks) and write `<out>/<tag>.json` and `<out>/<tag>.png`.

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
    device = default_device()
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
    sections = {"module": results["module_comparisons"], "model": results["model"]}
    results["targets"] = evaluate_targets(TARGETS, sections)
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
        log(format_table(results["targets"], VERDICT_COLUMNS, clock))
    log(f"wrote {out / tag}.json and .png in {results['env']['seconds']} s")
    return results


def run_deploy(
    plan: DeployPlan, out: Path, tag: str, log: Callable[[str], None] = print, export_dir: Path | None = None
) -> dict:
    """Run the deployment benchmark and write `<out>/<tag>.json`.

    Args:
        plan (DeployPlan): What to measure.
        out (Path): Output folder (created).
        tag (str): Result name.
        log (Callable[[str], None]): Progress and table printer.
        export_dir (Path, optional): Folder for the exported models, kept; defaults to a temporary folder, removed.

    Returns:
        (dict): The results written to the JSON file: tag, env (with runtime versions), plan, input, rows, targets.
    """
    torch.set_num_threads(plan.threads)
    start = time.perf_counter()
    env = {**environment(torch.device("cpu"), plan.threads), **runtime_versions()}
    results = {"tag": tag, "env": env, "plan": asdict(plan), "input": INPUT_NOTE}
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as temporary:
        results["rows"] = bench_deploy(plan, export_dir or Path(temporary), log)
    results["targets"] = evaluate_targets(DEPLOY_TARGETS, {"deploy": results["rows"]})
    results["env"]["load_avg_end"] = os.getloadavg()
    results["env"]["seconds"] = round(time.perf_counter() - start)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(results, indent=1) + "\n")
    if isinstance(results["rows"], str):
        log(f"deploy: {results['rows']}")
    for clock in CLOCKS:
        log(f"-- deployed latency by {CLOCK_NAMES[clock]} --")
        if isinstance(results["rows"], list):
            log(format_table(results["rows"], DEPLOY_COLUMNS, clock))
        log(format_table(results["targets"], VERDICT_COLUMNS, clock))
    log(f"wrote {out / tag}.json in {results['env']['seconds']} s")
    return results


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark's parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20x20 and 40x40 maps at batch 1, whole model at imgsz 320, deployment static 320 only (a few minutes)",
    )
    parser.add_argument("--part", choices=PARTS, default="all", help="pytorch, deploy or both (default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="torch, onnxruntime and OpenVINO threads (default 1)")
    parser.add_argument("--tag", help="result file name (default: device, CPU count, threads; '-quick' appended)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    tag = args.tag or host_tag(default_device(), args.threads, plan)
    if args.part in {"all", "pytorch"}:
        run(plan, args.out, args.threads, tag)
    if args.part in {"all", "deploy"}:
        deploy_plan = replace(DEPLOY_QUICK if args.quick else DEPLOY_FULL, threads=args.threads)
        run_deploy(deploy_plan, args.out, f"{tag}-deploy")


if __name__ == "__main__":
    main()
