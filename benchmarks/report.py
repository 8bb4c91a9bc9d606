# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Reporting of the BRA benchmark: target verdicts, plain-text tables, the plot and the environment of a result."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from measure import CLOCK_NAMES, CLOCKS, CPU_CLOCK, WALL_CLOCK
from plan import BASELINE, BRA_VARIANTS, DENSE, FLOOR, FP32, FULL, VARIANTS, Plan, Target, bra_class

NOISE_NOTE = (
    "Measured on a machine shared with other jobs; absolute times are noisy. Ratios come from one process with the "
    "variants interleaved in every repeat (medians), which cancels most of the contention."
)


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


def evaluate_targets(targets: tuple[Target, ...], sections: dict[str, list[dict] | str]) -> list[dict]:
    """Compare the measured figures with targets (fp32 rows unless a target's `where` names another precision).

    Args:
        targets (tuple[Target, ...]): The targets, e.g. plan.TARGETS.
        sections (dict[str, list[dict] | str]): Rows per Target.section, or a skip message where nothing was measured.

    Returns:
        (list[dict]): Per target: name, metric, limit, and per clock suffix the worst measured value ("worst",
            "worst_cpu") and whether it meets the limit ("met", "met_cpu"; None when nothing was measured).
            Memory has no clock: its "_cpu" entries repeat the plain ones.
    """
    verdicts = []
    for t in targets:
        rows = sections[t.section] if isinstance(sections[t.section], list) else []
        where = {"precision": FP32, **t.where}
        rows = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
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
    "path",
    "path_train",
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
    "variant",
    "path",
    "path_train",
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


DEPLOY_COLUMNS = [
    "runtime",
    "export",
    "runtime_precision",
    "model",
    "latency_ms",
    "latency_x_floor",
    "latency_x_rtdetr_l",
    "max_abs_error_vs_pytorch",
    "runtime_max_abs_error_vs_pytorch",
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
    for variant in (*BRA_VARIANTS, DENSE, BASELINE):
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
        path (Path): The folder of the BRA code (every file in it counts).

    Returns:
        (dict): {"git_head": str, "bra_source_modified": bool}, or {}.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git_head": head.stdout.strip(), "bra_source_modified": bool(status.stdout.strip())}


def environment(device: torch.device, threads: int) -> dict:
    """Versions, device, thread count, date, load and the sha256 of the measured BRA source (every Python file of
    ultralytics/nn/AddModules, in name order): kept with every result."""
    import ultralytics

    source = Path(inspect.getsourcefile(bra_class())).resolve().parent
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(source.glob("*.py"))))
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
        "bra_source_sha256": digest.hexdigest(),
        **git_state(source),
        "load_avg_start": os.getloadavg(),
        "noise": NOISE_NOTE,
    }
