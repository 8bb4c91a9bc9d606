# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""GPU acceptance run of the fork: correctness of every attention path, module and whole-model ratios, one epoch.

Usage:
    python tools/gpu_check.py --device 0 --report DIR [--quick] [--runs DIR]
    make gpu-check GPU=0 REPORT=build/gpu-check          # the development venv
    make gpu-check GPU=cpu QUICK=1                       # the dry run `make test` runs: every section, smallest sizes

Runs wherever the fork's wheel is installed (docs/gpu.md: which wheels a GPU machine needs and how to bring them),
from a checkout of this repository: it builds on benchmarks/ (module and whole-model benchmark) and on the float64
reference of tests/references.py. Sections, each recorded in the report even when it fails:
1. correctness: each attention path against the float64 reference, fp32 and fp16/bf16 autocast (bf16 only on CPU),
   output, input and parameter gradients, with the CPU tests' tolerances; routing affinities at >= fp32;
2. module: `benchmarks/module_bench.py` on the kit's plan (every precision, every path, floor, dense, baseline);
3. model: the train step and inference of both BiFormer YAMLs against their floor models and rtdetr-l, under AMP
   (fp16 autocast; fp32 on CPU), with Ultralytics' `deterministic` on and off, and peak memory;
4. training: `yolo detect train`'s Python twin for one epoch with upstream defaults (AMP on) on generated data, for
   rtdetr-l and both BiFormer YAMLs: finite losses, epoch time and memory ratios.
Writes `<report>/gpu-check.json` and `<report>/gpu-check.md` (and nothing else there: the GPU machine returns 8
files); training run folders go to `--runs` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests"), str(REPO / "tests" / "modules"), str(REPO / "tools")]

import torch  # noqa: E402

from measure import AUTOCAST_DTYPES, MIB, synchronize  # noqa: E402
from plan import BRA, FP32, FULL, MODEL_PLAIN, QUICK, SEED, Plan, Target  # noqa: E402

REQUIRED = ("torch", "torchvision", "ultralytics", "einops", "polars", "cv2", "matplotlib", "yaml", "PIL", "psutil")
OPTIONAL = ("thop",)  # Ultralytics reports 0 GFLOPs without it
BIFORMER_YAMLS = ("rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml")
TRAIN_YAMLS = (MODEL_PLAIN, *BIFORMER_YAMLS)
# Ultralytics' `deterministic=True` sets this (init_seeds), but cuBLAS reads it once per process, at its first GEMM:
# set from the start, so that the deterministic runs measure what `yolo train` runs
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
REPORT_JSON, REPORT_MD = "gpu-check.json", "gpu-check.md"
AMP = "fp16"  # Ultralytics' AMP: fp16 autocast with a gradient scaler


@dataclass(frozen=True)
class KitPlan:
    """What the kit measures.

    Attributes:
        name (str): "full" or "quick".
        module (Plan): Module benchmark plan (`benchmarks/plan.py`); its model fields drive the whole-model section.
        correctness_dim (int): Channels of the correctness modules.
        correctness_sizes (tuple[tuple[int, int], ...]): Map sizes of the correctness section (a padded one first).
        train_imgsz (int): Image size of the one-epoch training runs.
        train_images (int): Generated training images (validation gets a quarter).
        train_batch (int): Training batch; 16 is upstream's default.
    """

    name: str
    module: Plan
    correctness_dim: int = 64
    correctness_sizes: tuple[tuple[int, int], ...] = ((20, 15), (40, 40))
    train_imgsz: int = 640
    train_images: int = 64
    train_batch: int = 16


GPU_MODULE = replace(
    FULL,
    name="gpu",
    sizes=(20, 40, 80, 120, 160),
    batches=(1, 8),
    heads=(1, 8),
    small_side=160,
    dense_max_tokens=80 * 80,  # dense attention at 1 head (head dim 1024) has no fused kernel: N^2 memory
    model_sizes=(640,),
    train_batch=8,
    infer_batch=8,
)
FULL_KIT = KitPlan("full", GPU_MODULE)
QUICK_KIT = KitPlan(
    "quick",
    replace(QUICK, sizes=(20,), repeats=2, model_sizes=(64,), model_repeats=1, infer_per_step=1, train_batch=2),
    correctness_dim=16,
    correctness_sizes=((10, 7),),
    train_imgsz=64,
    train_images=8,
    train_batch=4,
)
AMP_BRA = {"precision": AMP, "model": BRA}


def module_targets(side: int) -> tuple[Target, Target]:
    """The auto path's fwd+bwd time and peak memory against the gather baseline at one map side, fp16."""
    where = {"precision": AMP, "size": side, "variant": BRA}
    return (
        Target(
            f"auto fwd+bwd time <= 0.5x gather baseline at {side}x{side}", "module", "time_x_baseline", 0.5, where=where
        ),
        Target(
            f"auto peak memory <= 0.5x gather baseline at {side}x{side}", "module", "mem_x_baseline", 0.5, where=where
        ),
    )


GPU_TARGETS = (
    Target(
        "AMP train step <= 1.15x floor model", "model", "train_x_floor", 1.15, where={**AMP_BRA, "deterministic": False}
    ),
    *module_targets(20),  # the BRA maps at 640 px: rtdetr-l-Biformer's stride 32,
    *module_targets(40),  # rtdetr-l-HGBlock_Biformer's stride 16
    Target(
        "deterministic=True adds <= 10% to the AMP train step",
        "model",
        "train_x_nondeterministic",
        1.10,
        where={**AMP_BRA, "deterministic": True},
    ),
)


def preflight() -> None:
    """Check, without importing them, that the modules the run imports besides torch (imported first) are installed.

    Raises:
        SystemExit: Naming the missing modules and the docs section that says how to bring their wheels.
    """
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"gpu_check: missing {missing}; see docs/gpu.md, 'Bringing the fork to a GPU machine'")


def versions() -> dict[str, str | None]:
    """Versions of the modules the run imports (None for a missing optional one)."""
    found = {}
    for name in (*REQUIRED, *OPTIONAL):
        try:
            found[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            found[name] = None
    return found


def run_section(name: str, fn: Callable[[], object], log: Callable[[str], None]) -> dict:
    """Run one section; record its result, its time, or the error that stopped it (the other sections still run)."""
    log(f"gpu_check: {name} ...")
    start = time.perf_counter()
    try:
        result = {"ok": True, "result": fn()}
    except Exception as e:  # a failing section is reported, not fatal: one GPU call must measure everything it can
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    result["seconds"] = round(time.perf_counter() - start, 1)
    log(f"gpu_check: {name} {'done' if result['ok'] else 'FAILED: ' + result['error']} in {result['seconds']} s")
    return result


@contextlib.contextmanager
def no_tf32():
    """Full fp32 matmuls and cuDNN convolutions (PyTorch allows TF32 in cuDNN by default), restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def correctness_case(path: str, precision: str, size: tuple[int, int], dim: int, device: torch.device, **args) -> dict:
    """One attention path at one precision against the float64 reference: output, input and parameter gradients.

    Args:
        path (str): Attention path (`attn_backend`).
        precision (str): FP32 or an AUTOCAST_DTYPES key.
        size (tuple[int, int]): Map size (H, W).
        dim (int): Channels.
        device (torch.device): Device.
        **args: Further BiLevelRoutingAttention_nchw arguments.

    Returns:
        (dict): The case, its worst error and what it was in, the routing affinities' dtype, and the routes' agreement
            with the reference (fp16/bf16 projections may flip near ties: then the errors are a routing difference).
    """
    from references import bra_nchw_reference
    from tolerances import ATTENTION_PEAKING, norm_relative_error

    from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw

    torch.manual_seed(SEED)
    m = BiLevelRoutingAttention_nchw(dim, attn_backend=path, **args).to(device)
    x = (ATTENTION_PEAKING * torch.randn(2, dim, *size, device=device)).requires_grad_()
    weights = torch.randn(2, dim, *size, device=device, dtype=torch.float64)
    routings = []  # what the forward routed: its affinities' dtype, its routes
    handle = m.register_routing_hook(lambda module, routing: routings.append(routing))
    dtype = AUTOCAST_DTYPES.get(precision)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = m(x)
    handle.remove()
    affinity_dtypes, routes = [r.affinity.dtype for r in routings], routings[0].routes
    names = ["output", "input grad", *(f"{n} grad" for n, _ in sorted(m.named_parameters()))]
    grads = torch.autograd.grad(out.double(), [x, *(p for _, p in sorted(m.named_parameters()))], weights)
    ref_m = copy.deepcopy(m).cpu().double()  # the reference builds its masks on the CPU
    x64 = x.detach().cpu().double().requires_grad_()
    ref = bra_nchw_reference(ref_m, x64)
    ref_params = [p for _, p in sorted(ref_m.named_parameters())]
    ref_grads = torch.autograd.grad(ref.out, [x64, *ref_params], weights.cpu())
    pairs = [(n, a.detach().cpu(), b) for n, a, b in zip(names, [out, *grads], [ref.out, *ref_grads], strict=True)]
    if precision == FP32:
        errors = {n: (a.double() - b).abs().max().item() for n, a, b in pairs}
    else:
        errors = {n: norm_relative_error(a, b) for n, a, b in pairs}
    return {
        "path": path,
        "precision": precision,
        "size": list(size),
        "measure": "max abs" if precision == FP32 else "norm-relative",
        "worst": max(errors.values()),
        "worst_of": max(errors, key=errors.get),
        "routing_dtypes": sorted({str(d) for d in affinity_dtypes}),
        "routing_fp32": bool(affinity_dtypes) and all(d in (torch.float32, torch.float64) for d in affinity_dtypes),
        "routes_as_reference": torch.equal(routes.sort(-1).values.cpu(), ref.routed.sort(-1).values),
    }


def correctness(kit: KitPlan, device: torch.device) -> list[dict]:
    """Every attention path against the float64 reference with the module tests' cases and tolerances.

    fp32 at the kit's sizes (max abs error, 1e-4; TF32 off, although PyTorch allows it in cuDNN by default); fp16 and
    bf16 autocast (bf16 only on CPU) on the module tests' autocast case, norm-wise with 6 roundings' worth of the
    format's unit roundoff (tests/modules/tolerances.py). Routing affinities must be at >= fp32 throughout.

    Args:
        kit (KitPlan): The plan.
        device (torch.device): Device.

    Returns:
        (list[dict]): One row per (path, precision, size) from `correctness_case`, with tolerance and passed.
    """
    from tolerances import (
        AUTOCAST_BRA_ARGS,
        AUTOCAST_MAP,
        BF16_RELATIVE_TOLERANCE,
        FP16_RELATIVE_TOLERANCE,
        FP32_ABS_TOLERANCE,
    )

    from ultralytics.nn.AddModules.attention_paths import PATHS

    tolerance = {FP32: FP32_ABS_TOLERANCE, "bf16": BF16_RELATIVE_TOLERANCE, "fp16": FP16_RELATIVE_TOLERANCE}
    autocast = tuple(AUTOCAST_DTYPES) if device.type == "cuda" else ("bf16",)
    rows = []
    with no_tf32():
        for path in PATHS:
            for size in kit.correctness_sizes:
                rows.append(correctness_case(path, FP32, size, kit.correctness_dim, device, num_heads=4))
            for precision in autocast:
                rows.append(correctness_case(path, precision, AUTOCAST_MAP, 16, device, **AUTOCAST_BRA_ARGS))
    for row in rows:
        row["tolerance"] = tolerance[row["precision"]]
        row["passed"] = row["routing_fp32"] and row["worst"] <= row["tolerance"]
    return rows


def module_section(kit: KitPlan, device: torch.device, log: Callable[[str], None]) -> dict:
    """The module benchmark of benchmarks/module_bench.py at every precision the device runs."""
    from module_bench import bench_module_case, module_comparisons

    precisions = (FP32, *AUTOCAST_DTYPES) if device.type == "cuda" else (FP32,)
    rows = []
    for precision in precisions:
        for side in kit.module.sizes:
            for batch in kit.module.case_batches(side):
                log(f"gpu_check: module {precision} {side}x{side} batch {batch}")
                rows += bench_module_case(kit.module, side, batch, precision, device)[0]
    return {"rows": rows, "comparisons": module_comparisons(rows)}


@contextlib.contextmanager
def deterministic_mode(enabled: bool):
    """Ultralytics' own `deterministic` setting (init_seeds), undone afterwards."""
    from ultralytics.utils.torch_utils import init_seeds, unset_deterministic

    init_seeds(SEED, deterministic=enabled)
    try:
        yield
    finally:
        unset_deterministic()


def model_section(kit: KitPlan, device: torch.device, log: Callable[[str], None]) -> list[dict]:
    """Train step and inference of each BiFormer YAML, its floor model and rtdetr-l, deterministic on and off."""
    from model_bench import bench_models, build_models, train_peak_mib, training_batch

    precision = AMP if device.type == "cuda" else FP32
    rows = []
    for yaml in BIFORMER_YAMLS:
        models = build_models(device, bra_yaml=yaml)
        if isinstance(models, str):
            raise RuntimeError(models)
        times = {}
        for deterministic in (False, True):
            log(f"gpu_check: model {yaml} deterministic={deterministic}")
            with deterministic_mode(deterministic), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                measured = bench_models(kit.module, precision, device, models)
                batch = training_batch(kit.module.train_batch, kit.module.model_sizes[0], device)
                peaks = train_peak_mib(models, batch, precision, device)
            messages = sorted({str(w.message).splitlines()[0][:200] for w in caught})  # e.g. no deterministic kernel
            for row in measured:
                times[deterministic, row["model"]] = row["train_ms"]
                peak = peaks[row["model"]]
                rows.append({"yaml": yaml, "deterministic": deterministic, "train_peak_mib": peak, **row})
                rows[-1]["warnings"] = messages
        for row in rows:
            if row["yaml"] == yaml:
                row["train_x_nondeterministic"] = round(row["train_ms"] / times[False, row["model"]], 3)
        del models
    return rows


def finite(losses: dict[str, float]) -> bool:
    """Whether an epoch reported losses and every one of them is finite."""
    return bool(losses) and all(math.isfinite(v) for v in losses.values())


def training_section(kit: KitPlan, device_arg: str, runs: Path, log: Callable[[str], None]) -> list[dict]:
    """One epoch of `yolo detect train` (upstream defaults: AMP, deterministic) per model on generated data.

    Args:
        kit (KitPlan): The plan.
        device_arg (str): "cpu" or a CUDA index, as Ultralytics' `device=` takes it.
        runs (Path): Folder for the generated data and the run folders.
        log (Callable[[str], None]): Progress printer.

    Returns:
        (list[dict]): Per model: epoch time, the epoch's mean losses, finite, AMP, peak allocated and reserved CUDA
            memory, and the time and memory ratios to rtdetr-l.
    """
    from synthetic_dataset import generate

    from ultralytics import RTDETR

    data = generate(runs / "data", train=kit.train_images, val=max(kit.train_images // 4, 2), imgsz=kit.train_imgsz)
    rows = []
    for yaml in TRAIN_YAMLS:
        log(f"gpu_check: training {yaml}")
        epoch = {}

        def on_epoch_start(trainer, record: dict = epoch) -> None:
            synchronize(trainer.device)
            record["start"] = time.perf_counter()

        def on_epoch_end(trainer, record: dict = epoch) -> None:
            synchronize(trainer.device)
            record["seconds"] = round(time.perf_counter() - record["start"], 2)
            record["losses"] = {k: float(v) for k, v in (trainer.tloss or {}).items()}
            record["amp"] = bool(trainer.amp)

        cuda = torch.cuda.is_available() and device_arg != "cpu"
        if cuda:  # each model's peak from an empty cache: nothing left over from the previous sections
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = RTDETR(yaml)
        model.add_callback("on_train_epoch_start", on_epoch_start)
        model.add_callback("on_train_epoch_end", on_epoch_end)
        model.train(
            data=str(data),
            epochs=1,
            imgsz=kit.train_imgsz,
            batch=kit.train_batch,
            device=device_arg,
            project=str(runs),
            name=Path(yaml).stem,
            exist_ok=True,
            plots=False,
            verbose=False,
        )
        del model  # its trainer holds the model, EMA and optimizer state on the device
        allocated = round(torch.cuda.max_memory_allocated() / MIB, 1) if cuda else None
        reserved = round(torch.cuda.max_memory_reserved() / MIB, 1) if cuda else None  # upstream's GPU_mem
        losses = epoch.get("losses", {})
        rows.append(
            {
                "yaml": yaml,
                "epoch_seconds": epoch.get("seconds"),
                "losses": losses,
                "finite": finite(losses),
                "amp": epoch.get("amp"),
                "peak_allocated_mib": allocated,
                "peak_reserved_mib": reserved,
            }
        )
    plain = rows[0]
    for row in rows:
        row["epoch_x_rtdetr_l"] = round(row["epoch_seconds"] / plain["epoch_seconds"], 3)
        if row["peak_allocated_mib"] is not None:
            row["memory_x_rtdetr_l"] = round(row["peak_allocated_mib"] / plain["peak_allocated_mib"], 3)
    return rows


def markdown(results: dict) -> str:
    """The report as markdown: environment, section status, correctness, targets and the key ratio tables."""
    from report import COMPARISON_COLUMNS, MODEL_COLUMNS, format_table

    lines = [f"# gpu_check ({results['plan']['name']})", "", f"- device: {results['env']['device_name']}"]
    lines += [f"- {k}: {v}" for k, v in results["env"]["versions"].items()]
    lines += ["", "| section | ok | seconds | error |", "|---|---|---|---|"]
    for name, section in results["sections"].items():
        lines.append(f"| {name} | {section['ok']} | {section['seconds']} | {section.get('error', '')} |")

    def table(title: str, rows: list[dict], columns: list[str]) -> None:
        lines.extend(["", f"## {title}", "", "```", format_table(rows, columns), "```"])

    sections = results["sections"]
    if sections["correctness"]["ok"]:
        columns = [
            "path",
            "precision",
            "size",
            "measure",
            "worst",
            "worst_of",
            "tolerance",
            "routing_dtypes",
            "routes_as_reference",
            "passed",
        ]
        table("Correctness against float64", sections["correctness"]["result"], columns)
    if results.get("targets"):
        table("Targets", results["targets"], ["target", "limit", "worst", "met"])
    if sections["module"]["ok"]:
        columns = [*COMPARISON_COLUMNS, "time_x_baseline", "mem_x_baseline"]
        table("Module ratios", sections["module"]["result"]["comparisons"], columns)
    if sections["model"]["ok"]:
        columns = ["yaml", "deterministic", *MODEL_COLUMNS, "train_x_nondeterministic", "train_peak_mib"]
        table("Whole model", sections["model"]["result"], columns)
        warned = sorted({w for row in sections["model"]["result"] if row["deterministic"] for w in row["warnings"]})
        lines.extend(["", "Warnings during the deterministic runs (all three models of a YAML):", ""])
        lines.extend(f"- {w}" for w in warned or ["none"])
    if sections["training"]["ok"]:
        columns = [
            "yaml",
            "epoch_seconds",
            "epoch_x_rtdetr_l",
            "peak_allocated_mib",
            "peak_reserved_mib",
            "memory_x_rtdetr_l",
            "amp",
            "finite",
        ]
        table("One epoch of training", sections["training"]["result"], columns)
    return "\n".join(lines) + "\n"


def run(kit: KitPlan, device_arg: str, report: Path, runs: Path, log: Callable[[str], None] = print) -> dict:
    """Run every section and write the JSON and markdown reports.

    Args:
        kit (KitPlan): What to measure.
        device_arg (str): "cpu" or a CUDA index, as Ultralytics' `device=` takes it.
        report (Path): Report folder (created); receives REPORT_JSON and REPORT_MD only.
        runs (Path): Folder for the generated data and the training runs.
        log (Callable[[str], None]): Progress printer.

    Returns:
        (dict): The results written to REPORT_JSON.
    """
    from report import environment, evaluate_targets
    from yolo_offline import prepare

    preflight()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    prepare(runs / "yolo-config")
    device = torch.device("cpu" if device_arg == "cpu" else f"cuda:{device_arg}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    start = time.perf_counter()
    results = {"plan": asdict(kit), "env": {**environment(device, torch.get_num_threads()), "versions": versions()}}
    results["sections"] = {
        "correctness": run_section("correctness", lambda: correctness(kit, device), log),
        "module": run_section("module", lambda: module_section(kit, device, log), log),
        "model": run_section("model", lambda: model_section(kit, device, log), log),
        "training": run_section("training", lambda: training_section(kit, device_arg, runs, log), log),
    }
    sections = results["sections"]
    measured = {
        "module": sections["module"]["result"]["comparisons"] if sections["module"]["ok"] else "failed",
        "model": sections["model"]["result"] if sections["model"]["ok"] else "failed",
    }
    results["targets"] = evaluate_targets(GPU_TARGETS, measured)
    results["seconds"] = round(time.perf_counter() - start, 1)
    report.mkdir(parents=True, exist_ok=True)
    (report / REPORT_JSON).write_text(json.dumps(results, indent=1, default=str) + "\n")
    (report / REPORT_MD).write_text(markdown(results))
    log(f"gpu_check: wrote {report / REPORT_JSON} and {REPORT_MD} in {results['seconds']} s")
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the kit; exit status 1 when a section failed or a correctness row did not pass."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="0", help="CUDA device index, or cpu for the dry run (default 0)")
    parser.add_argument("--report", type=Path, required=True, help="report folder (gpu-check.json, gpu-check.md)")
    parser.add_argument("--runs", type=Path, help="folder for generated data and training runs (default: temporary)")
    parser.add_argument("--quick", action="store_true", help="every section at the smallest sizes (the dry run)")
    args = parser.parse_args(argv)
    kit = QUICK_KIT if args.quick else FULL_KIT
    with contextlib.ExitStack() as stack:
        runs = args.runs or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        results = run(kit, args.device, args.report, runs.resolve())
    sections = results["sections"]
    failed = [name for name, s in sections.items() if not s["ok"]]
    failed += ["correctness"] * any(not r["passed"] for r in sections["correctness"].get("result") or [])
    if failed:
        print(f"gpu_check: failed sections: {sorted(set(failed))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
