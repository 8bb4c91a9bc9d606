# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Train one model of a comparison with upstream's trainer, or find it already finished with the same settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ultralytics.utils import LOGGER

from .inputs import CompareError, ModelEntry, load_model
from .per_image import PER_IMAGE_FILE

__all__ = ("BEST", "PREFIX", "RESULT_FILE", "SETTINGS_FILE", "check_settings", "finished_result", "train")

PREFIX = "compare: "
SETTINGS_FILE = "compare-settings.json"  # written before training: the model and train arguments of the run
RESULT_FILE = "compare-result.json"  # written after validation: the run is finished
BEST = Path("weights") / "best.pt"  # a run's best checkpoint, relative to its run folder (as results record it)


def _run_settings(entry: ModelEntry, train_args: dict[str, Any]) -> dict[str, Any]:
    """Return what identifies a run: the model as given, its resolved source and the train arguments."""
    return {"model": entry.spec, "source": entry.source, "train_args": train_args}


def check_settings(entry: ModelEntry, run_dir: Path, train_args: dict[str, Any]) -> None:
    """Refuse to reuse a run folder that holds a run of another model or other train arguments.

    Args:
        entry (ModelEntry): The model.
        run_dir (Path): Its run folder, ``PROJECT/compare/<name>/seed<k>``.
        train_args (dict[str, Any]): The comparison's train arguments.

    Raises:
        CompareError: If ``run_dir`` holds settings that differ, naming each difference; a finished result without
            the settings it was trained with or without its per-image validation statistics; or a result recorded
            for another model.
    """
    file = run_dir / SETTINGS_FILE
    result = finished_result(run_dir)
    if result is not None and not file.is_file():
        raise CompareError(
            f"{run_dir} holds a finished result but not the settings it was trained with ({SETTINGS_FILE}), so it "
            "cannot be checked: delete that folder to train it again"
        )
    if result is not None and not (run_dir / PER_IMAGE_FILE).is_file():
        raise CompareError(
            f"{run_dir} holds a finished result without its per-image validation statistics ({PER_IMAGE_FILE}), "
            "which the bootstrap needs: delete that folder to train it again"
        )
    if result is not None and result.get("model") != entry.spec:
        raise CompareError(
            f"{run_dir} holds the result of model {result.get('model')!r}, not of {entry.spec!r}: give another "
            "project, or delete that folder to train it again"
        )
    if not file.is_file():
        return
    old, new = json.loads(file.read_text()), json.loads(json.dumps(_run_settings(entry, train_args)))
    old_args, new_args = old.get("train_args", {}), new["train_args"]
    changes = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in ("model", "source") if old.get(k) != new[k]]
    changes += [
        f"{k}: {old_args.get(k)!r} -> {new_args.get(k)!r}"
        for k in sorted(set(old_args) | set(new_args))
        if old_args.get(k) != new_args.get(k)
    ]
    if changes:
        raise CompareError(
            f"{run_dir} holds a run with other settings ({'; '.join(changes)}): "
            "give another project, or delete that folder to train it again"
        )


def finished_result(run_dir: Path) -> dict[str, Any] | None:
    """Return the stored result of a finished run, or None if the run did not finish."""
    file = run_dir / RESULT_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def train(entry: ModelEntry, run_dir: Path, train_args: dict[str, Any]) -> Path:
    """Train one model afresh in ``run_dir`` with upstream's trainer; a part-way run there is discarded first.

    Restarting from scratch rather than resuming keeps the run bit-for-bit what an uninterrupted one would have been.

    Args:
        entry (ModelEntry): The model.
        run_dir (Path): Its run folder, ``PROJECT/compare/<name>/seed<k>``.
        train_args (dict[str, Any]): The comparison's train arguments (data, epochs, imgsz, seed, ...).

    Returns:
        (Path): The best checkpoint, ``run_dir/weights/best.pt``.
    """
    if run_dir.exists():
        LOGGER.info(f"{PREFIX}{entry.name}: discarding the unfinished run in {run_dir}")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps(_run_settings(entry, train_args), indent=2))
    model = load_model(entry.source)
    model.train(**train_args, project=str(run_dir.parent), name=run_dir.name, exist_ok=True)
    best = run_dir / BEST
    if not best.is_file():
        raise RuntimeError(f"{entry.name}: training wrote no {best}")
    return best
