# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Run a comparison: check inputs, train and validate each model in turn, time them together, write the report."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch

import ultralytics
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import get_cpu_info, get_gpu_info, select_device

from .evaluate import cost, training_log, validate
from .inputs import (
    DEFAULT_MODELS,
    CompareError,
    ModelEntry,
    check_data,
    check_model,
    check_train_args,
    entries,
    load_model,
)
from .latency import WARMUP_ROUNDS, measure
from .plot import write_figure
from .report import RANKING_MIN_EPOCHS, run_notes, settings_line, write_csv, write_json, write_markdown
from .train import BEST, PREFIX, RESULT_FILE, check_settings, finished_result, train

__all__ = ("RANKING_MIN_EPOCHS", "compare")

DEFAULT_SEED = 0  # upstream's default, set explicitly: every model of a comparison trains with the same seed


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
    """Require positive ints for the arguments compare uses itself (a square image size, latency rounds)."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CompareError(f"{key}: a positive int, got {value!r}")


def _run_one(entry: ModelEntry, run_dir: Path, train_args: dict[str, Any]) -> dict[str, Any]:
    """Train, measure and validate one model; store its result in the run folder, which marks it finished."""
    best = train(entry, run_dir, train_args)
    LOGGER.info(f"{PREFIX}{entry.name}: validating {best} (save_json=True: AP by object size)")
    model = load_model(str(best))
    size = cost(model, train_args["imgsz"])
    metrics = validate(
        model, train_args["data"], train_args["imgsz"], train_args["batch"], train_args["device"], run_dir / "val"
    )
    result = {"name": entry.name, "model": entry.spec, "weights": str(BEST), **size, **metrics}  # relative to run_dir
    result.update(training_log(run_dir / "results.csv"))
    (run_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


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
    **train_args: Any,
) -> Path:
    """Train ``models`` one after the other on ``data`` with identical arguments and seed, and compare them.

    Every input is checked before any training. Models whose run folder holds a finished run with the same settings
    are not trained again; an unfinished one is trained afresh.

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
        **train_args (Any): Any other upstream train argument (``seed`` defaults to 0), the same for every model.

    Returns:
        (Path): The report folder ``project/compare`` (compare.md, compare.csv, compare.json, compare.png).

    Raises:
        CompareError: If an input is invalid (before any training).
    """
    start = time.perf_counter()
    _check_ints(imgsz=imgsz, latency_rounds=latency_rounds)
    out = Path(project).resolve() / "compare"
    model_entries = entries(models)
    args = {"epochs": epochs, "imgsz": imgsz, "batch": batch, "device": device, "workers": workers}
    args.update({"seed": DEFAULT_SEED, **train_args})
    check_train_args(args)
    data_yaml, dataset = check_data(data)
    args = {"data": data_yaml, **args}
    for entry in model_entries:
        check_model(entry, dataset["nc"])
        check_settings(entry, out / entry.name, args)

    rows = []
    for i, entry in enumerate(model_entries, 1):
        run_dir, step = out / entry.name, f"{PREFIX}[{i}/{len(model_entries)}] {entry.name}"
        if (result := finished_result(run_dir)) is not None:
            LOGGER.info(f"{step}: finished earlier with the same settings, not trained again ({run_dir})")
        else:
            LOGGER.info(f"{step}: training {entry.spec}, {epochs} epochs -> {run_dir}")
            result = _run_one(entry, run_dir, args)
        rows.append(result)

    LOGGER.info(f"{PREFIX}latency: {latency_rounds} interleaved rounds of {len(rows)} models at {imgsz}x{imgsz}")
    weights = [out / r["name"] / r["weights"] for r in rows]  # recorded relative: a moved project still works
    for row, ms in zip(rows, measure(weights, imgsz, device, latency_rounds)):
        row["latency_ms"] = ms

    notes = run_notes(epochs)
    environment = _environment(device)
    wall = time.perf_counter() - start
    settings = {"models": [e.spec for e in model_entries], **args, "latency_rounds": latency_rounds}
    settings["latency_warmup_rounds"] = WARMUP_ROUNDS
    out.mkdir(parents=True, exist_ok=True)
    line = settings_line(data_yaml, dataset["nc"], rows[0]["val_images"], args, environment, wall)
    write_markdown(out / "compare.md", rows, notes, line)
    write_csv(out / "compare.csv", rows)
    document = {"notes": notes, "baseline": rows[0]["name"], "settings": settings, **environment}
    document.update(dataset={"yaml": data_yaml, "nc": dataset["nc"], "names": dataset["names"]}, wall_time_s=wall)
    write_json(out / "compare.json", {**document, "models": rows})
    title = f"{len(rows)} models, {epochs} epochs at {imgsz} px on {Path(data_yaml).name}"
    write_figure(out / "compare.png", rows, title)
    LOGGER.info(f"{PREFIX}report in {out} (compare.md, compare.csv, compare.json, compare.png)\n")
    LOGGER.info((out / "compare.md").read_text(encoding="utf-8"))
    for note in notes:
        LOGGER.warning(f"{PREFIX}{note}")
    return out
