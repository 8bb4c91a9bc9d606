# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Run a comparison: check inputs, train and validate each model in turn, time them together, write the report."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch

import ultralytics
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import get_cpu_info, get_gpu_info, select_device

from .bootstrap import CONFIDENCE, paired_bootstrap
from .evaluate import cost, training_log, validate
from .exports import check_formats, export_result, export_summary, flag_tolerance
from .inputs import (
    DEFAULT_MODELS,
    CompareError,
    ModelEntry,
    check_data,
    check_model,
    check_seeds,
    check_train_args,
    entries,
    load_model,
)
from .latency import WARMUP_ROUNDS, measure
from .per_image import PER_IMAGE_FILE, PerImageStats
from .plot import write_figure
from .report import (
    RANKING_MIN_EPOCHS,
    run_notes,
    settings_line,
    summarize,
    write_csv,
    write_json,
    write_markdown,
)
from .train import BEST, PREFIX, RESULT_FILE, check_settings, finished_result, train

__all__ = ("RANKING_MIN_EPOCHS", "compare")


def _version(distribution: str) -> str | None:
    """Return an installed distribution's version, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _environment(device: str | int) -> dict[str, Any]:
    """Describe the device and the versions a comparison ran with."""
    torch_device = select_device(device, verbose=False)
    name = get_gpu_info(torch_device.index or 0) if torch_device.type == "cuda" else get_cpu_info()
    return {
        "device": {"arg": device, "torch": str(torch_device), "name": name, "torch_threads": torch.get_num_threads()},
        "versions": {
            "ultralytics": ultralytics.__version__,
            "ultralytics-biformer": _version("ultralytics"),
            "torch": torch.__version__,
            "faster-coco-eval": _version("faster-coco-eval"),
            "python": platform.python_version(),
        },
    }


def _check_ints(**values: Any) -> None:
    """Require positive ints for the arguments compare uses itself (a square image size, latency and bootstrap
    rounds).
    """
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CompareError(f"{key}: a positive int, got {value!r}")


@dataclass(frozen=True)
class Run:
    """One (model, seed) training of a comparison.

    Attributes:
        entry (ModelEntry): The model.
        seed (int): Its training seed.
        folder (Path): Its upstream run folder, ``PROJECT/compare/<name>/seed<k>``.
    """

    entry: ModelEntry
    seed: int
    folder: Path


def _run_one(run: Run, train_args: dict[str, Any]) -> dict[str, Any]:
    """Train, measure and validate one run; store its result in the run folder, which marks it finished."""
    best = train(run.entry, run.folder, train_args)
    LOGGER.info(f"{PREFIX}{run.entry.name} seed {run.seed}: validating {best} (save_json=True: AP by object size)")
    model = load_model(str(best))
    size = cost(model, train_args["imgsz"])
    metrics, per_image = validate(
        model, train_args["data"], train_args["imgsz"], train_args["batch"], train_args["device"], run.folder / "val"
    )
    per_image.save(run.folder / PER_IMAGE_FILE)
    result = {"name": run.entry.name, "model": run.entry.spec, "seed": run.seed, "weights": str(BEST), **size}
    result.update(metrics)  # "weights" is relative to the run folder
    result.update(training_log(run.folder / "results.csv"))
    (run.folder / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def _bootstrap(runs: list[Run], names: list[str], seeds: list[int], resamples: int, seed: int) -> dict[str, Any]:
    """Every variant's paired-bootstrap interval against the baseline, as compare.json records it."""
    stats = [[PerImageStats.load(r.folder / PER_IMAGE_FILE) for r in runs if r.entry.name == n] for n in names]
    images = stats[0][0].images
    LOGGER.info(f"{PREFIX}paired bootstrap: {resamples} resamples of {images} val images, {len(seeds)} seed pair(s)")
    intervals = paired_bootstrap(stats, resamples, seed)
    return {
        "metric": "mAP50-95",
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "seed": seed,
        "images": images,
        "pairs": seeds,
        "variants": {name: interval.as_dict() for name, interval in zip(names[1:], intervals)},
    }


def _exports(
    runs: list[Run],
    firsts: list[Run],
    summary: dict[str, dict[str, dict[str, float | None]]],
    formats: list[str],
    args: dict[str, Any],
    tolerances: dict[str, float],
    rounds: int,
) -> list[dict[str, Any]]:
    """Export and validate every run in every format; summarize per (model, format) against its PyTorch figure.

    ``firsts`` holds each model's first-seed run (the one timed), ``summary`` the PyTorch figures (`summarize`).
    """
    names = [r.entry.name for r in firsts]
    exported = {(r.entry.name, r.seed, f): export_result(r.folder, f, args) for r in runs for f in formats}
    summaries = []
    for fmt in formats:
        files = [r.folder / exported[(r.entry.name, r.seed, fmt)]["file"] for r in firsts]
        LOGGER.info(f"{PREFIX}latency of the {fmt} exports: {rounds} interleaved rounds of {len(names)} models")
        latencies = measure(files, args["imgsz"], args["device"], rounds)
        for name, ms in zip(names, latencies):
            per_seed = [{"seed": s, **e} for (n, s, f), e in exported.items() if n == name and f == fmt]
            tolerance = flag_tolerance(tolerances, name, names[0])
            pytorch_map = summary[name]["mAP50-95"]["mean"]
            summaries.append(export_summary(name, fmt, per_seed, pytorch_map, tolerance, ms))
    return summaries


def compare(
    models: Sequence[str] = DEFAULT_MODELS,
    data: str | Path | None = None,
    epochs: int = 3,
    imgsz: int = 160,
    batch: int = 4,
    device: str | int = "cpu",
    workers: int = 0,
    project: str | Path = "runs",
    latency_rounds: int = 30,
    seeds: int | str | Sequence[int] = 1,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    formats: str | Sequence[str] | None = None,
    **train_args: Any,
) -> Path:
    """Train ``models`` one after the other on ``data`` with identical arguments, once per seed, and compare them.

    Every input is checked before any training. (Model, seed) runs whose folder holds a finished run with the same
    settings are not trained again; an unfinished one is trained afresh.

    Args:
        models (Sequence[str]): Model YAMLs or checkpoints; the first is the baseline.
        data (str | Path | None): Detection dataset YAML.
        epochs (int): Training epochs.
        imgsz (int): Square training, validation and latency image size; GFLOPs are counted at it.
        batch (int): Batch size (training and validation).
        device (str | int): Device as upstream takes it (``cpu``, ``0``, ``0,1``); latency is measured on the first.
        workers (int): Dataloader workers.
        project (str | Path): Output root; runs and report go to ``project/compare``.
        latency_rounds (int): Timed forward passes per model.
        seeds (int | str | Sequence[int]): A count N (seeds ``seed`` ... ``seed+N-1``, ``seed`` defaulting to 0) or
            an explicit list (``[0, 3, 7]`` or ``"0,3,7"``).
        bootstrap (int): Paired-bootstrap resamples of the validation images.
        bootstrap_seed (int): Seed of the bootstrap's resampling.
        formats (str | Sequence[str] | None): Parity-matrix export formats (``"onnx,openvino"``) whose exports of
            every best.pt are validated and timed too.
        **train_args (Any): Any other upstream train argument, the same for every model.

    Returns:
        (Path): The report folder ``project/compare`` (compare.md, compare.csv, compare.json, compare.png).

    Raises:
        CompareError: If an input is invalid (before any training).
    """
    start = time.perf_counter()
    _check_ints(imgsz=imgsz, latency_rounds=latency_rounds, bootstrap=bootstrap)
    if not isinstance(bootstrap_seed, int) or isinstance(bootstrap_seed, bool) or bootstrap_seed < 0:
        raise CompareError(f"bootstrap_seed: a non-negative int, got {bootstrap_seed!r}")
    seed_list = check_seeds(seeds, train_args.pop("seed", None))
    format_list = check_formats(formats)
    out = Path(project).resolve() / "compare"
    model_entries = entries(models)
    args = {"epochs": epochs, "imgsz": imgsz, "batch": batch, "device": device, "workers": workers, **train_args}
    check_train_args({**args, "seed": seed_list[0]})
    data_yaml, dataset = check_data(data)
    args = {"data": data_yaml, **args}
    runs = [Run(e, s, out / e.name / f"seed{s}") for e in model_entries for s in seed_list]
    for entry in model_entries:
        check_model(entry, dataset["nc"])
    for run in runs:
        check_settings(run.entry, run.folder, {**args, "seed": run.seed})

    rows = []
    for i, run in enumerate(runs, 1):
        step = f"{PREFIX}[{i}/{len(runs)}] {run.entry.name} seed {run.seed}"
        if (result := finished_result(run.folder)) is not None:
            LOGGER.info(f"{step}: finished earlier with the same settings, not trained again ({run.folder})")
        else:
            LOGGER.info(f"{step}: training {run.entry.spec}, {epochs} epochs -> {run.folder}")
            result = _run_one(run, {**args, "seed": run.seed})
        rows.append(result)

    names = [e.name for e in model_entries]
    firsts = [next(r for r in runs if r.entry.name == name) for name in names]
    LOGGER.info(f"{PREFIX}latency: {latency_rounds} interleaved rounds of {len(names)} models at {imgsz}x{imgsz}")
    for run, ms in zip(firsts, measure([r.folder / BEST for r in firsts], imgsz, device, latency_rounds)):
        for row in rows:
            if row["name"] == run.entry.name:
                row["latency_ms"] = ms  # per model: measured on the first seed's best.pt

    intervals = _bootstrap(runs, names, seed_list, bootstrap, bootstrap_seed) if len(names) > 1 else None
    half_widths = {n: (v["high"] - v["low"]) / 2 for n, v in intervals["variants"].items()} if intervals else {}
    summary = summarize(rows)
    exports = _exports(runs, firsts, summary, format_list, args, half_widths, latency_rounds) if format_list else None

    notes = run_notes(epochs)
    environment = _environment(device)
    wall = time.perf_counter() - start
    settings = {"models": [e.spec for e in model_entries], **args, "seeds": seed_list, "latency_rounds": latency_rounds}
    settings.update(latency_warmup_rounds=WARMUP_ROUNDS, formats=format_list)
    out.mkdir(parents=True, exist_ok=True)
    shown = {**args, "seeds": seed_list}
    line = settings_line(data_yaml, dataset["nc"], rows[0]["val_images"], shown, environment, wall)
    write_markdown(out / "compare.md", rows, notes, line, intervals, exports)
    write_csv(out / "compare.csv", rows)
    document = {"notes": notes, "baseline": names[0], "settings": settings, **environment}
    document.update(dataset={"yaml": data_yaml, "nc": dataset["nc"], "names": dataset["names"]}, wall_time_s=wall)
    document.update(summary=summary, bootstrap=intervals, exports=exports)
    write_json(out / "compare.json", {**document, "models": rows})
    seeds_text = f", {len(seed_list)} seeds" if len(seed_list) > 1 else ""
    title = f"{len(names)} models, {epochs} epochs at {imgsz} px on {Path(data_yaml).name}{seeds_text}"
    write_figure(out / "compare.png", rows, title)
    LOGGER.info(f"{PREFIX}report in {out} (compare.md, compare.csv, compare.json, compare.png)\n")
    LOGGER.info((out / "compare.md").read_text(encoding="utf-8"))
    for note in notes:
        LOGGER.warning(f"{PREFIX}{note}")
    return out
