# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Check a comparison's inputs before any training: model names, the dataset, the train arguments."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ultralytics import RTDETR, YOLO
from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg
from ultralytics.data.utils import check_det_dataset
from ultralytics.engine.model import Model
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import ROOT
from ultralytics.utils.checks import check_file

__all__ = (
    "DEFAULT_MODELS",
    "CompareError",
    "ModelEntry",
    "check_data",
    "check_model",
    "check_seeds",
    "check_train_args",
    "entries",
    "load_model",
)

DEFAULT_MODELS = ("rtdetr-l.yaml", "rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml")
MODEL_SUFFIXES = (".yaml", ".yml", ".pt")
# Train arguments compare sets itself: one run per model, in PROJECT/compare/<name>, started afresh.
RESERVED_ARGS = frozenset({"model", "data", "project", "name", "exist_ok", "resume", "mode", "task"})
COCO_EVAL_PIN = "faster-coco-eval==1.8.0"


class CompareError(ValueError):
    """A comparison's input is invalid; raised before any training starts."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of a comparison.

    Attributes:
        name (str): Run name, unique within the comparison (the file stem, ``-2``, ``-3``... for repeats).
        spec (str): The model as the user gave it, e.g. ``rtdetr-l.yaml`` or ``runs/best.pt``.
        source (str): The resolved YAML or checkpoint path.
    """

    name: str
    spec: str
    source: str


def _builtin_rtdetr_yamls() -> list[str]:
    """Return the RT-DETR model YAML names this Ultralytics ships (upstream's and the fork's)."""
    return sorted(p.name for p in (ROOT / "cfg" / "models" / "rt-detr").glob("*.yaml"))


def entries(models: Sequence[str]) -> list[ModelEntry]:
    """Resolve model names and paths, giving each a unique run name.

    Args:
        models (Sequence[str]): Model YAMLs (built-in names or paths) or checkpoint paths; the first is the baseline.

    Returns:
        (list[ModelEntry]): One entry per model, in order.

    Raises:
        CompareError: If the list is empty, a suffix is not allowed or a model cannot be found.
    """
    if not models:
        raise CompareError(f"models: give at least one model, e.g. models={','.join(DEFAULT_MODELS)}")
    result, taken = [], set()
    for spec in (str(m).strip() for m in models):
        suffix = Path(spec).suffix.lower()
        if suffix not in MODEL_SUFFIXES:
            raise CompareError(
                f"models: {spec!r} is neither a model YAML nor a checkpoint "
                f"(allowed suffixes: {', '.join(MODEL_SUFFIXES)})"
            )
        if Path(spec).is_file():
            source = str(Path(spec).resolve())
        elif suffix == ".pt":
            raise CompareError(f"models: checkpoint {spec!r} not found (give the path of a local .pt file)")
        else:
            try:
                yaml_model_load(spec)  # finds built-in YAMLs as upstream does, scale letters included (yolov8n.yaml)
            except FileNotFoundError as e:
                raise CompareError(
                    f"models: unknown model {spec!r}: no such file, and no model YAML of that name ships with "
                    f"Ultralytics (RT-DETR YAMLs: {', '.join(_builtin_rtdetr_yamls())})"
                ) from e
            source = spec
        result.append(ModelEntry(_unique_name(Path(spec).stem, taken), spec, source))
    return result


def _unique_name(stem: str, taken: set[str]) -> str:
    """The file stem, or the first of ``stem-2``, ``stem-3``, ... not yet taken; recorded in ``taken``."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def load_model(source: str) -> Model:
    """Load a model YAML or checkpoint into upstream's wrapper for its head: RTDETR for an RT-DETR head, else YOLO.

    ``YOLO`` routes checkpoints by their head but builds every YAML as a YOLO model, so YAMLs are routed here by the
    module of their last head row (the ``yolo`` CLI routes them by an ``rtdetr`` in the file name).

    Args:
        source (str): A model YAML or checkpoint path.

    Returns:
        (Model): The built or loaded model.
    """
    if Path(source).suffix.lower() in {".yaml", ".yml"} and "RTDETR" in str(yaml_model_load(source)["head"][-1][2]):
        return RTDETR(source)
    return YOLO(source)


def check_model(entry: ModelEntry, nc: int) -> None:
    """Check that a model builds, is a detection model and takes the dataset's class count.

    Args:
        entry (ModelEntry): The model.
        nc (int): The dataset's class count.

    Raises:
        CompareError: If the model fails to build, is not a detection model, or its head ignores ``nc``.
    """
    try:
        model = load_model(entry.source)
        if model.task != "detect":
            raise CompareError(f"models: {entry.spec} is a {model.task} model; compare trains detection models")
        built = model.task_map["detect"]["model"](cfg=model.model.yaml, nc=nc, verbose=False)
    except CompareError:
        raise
    except Exception as e:
        raise CompareError(f"models: {entry.spec} cannot be built: {e}") from e
    head = built.model[-1]
    if getattr(head, "nc", None) != nc:
        raise CompareError(
            f"models: the class count of {entry.spec} cannot be set: its head {type(head).__name__} has "
            f"{getattr(head, 'nc', 'no')} classes whatever nc is, the dataset has {nc} "
            "(write `nc` instead of a number in the head row of the model YAML)"
        )


def check_data(data: str | Path | None) -> tuple[str, dict[str, Any]]:
    """Resolve and check a detection dataset YAML with upstream's ``check_det_dataset``.

    Args:
        data (str | Path | None): Dataset YAML, a path or a name that ships with Ultralytics.

    Returns:
        (tuple[str, dict[str, Any]]): The YAML's path and upstream's dataset dict (``nc``, ``names``, split paths).

    Raises:
        CompareError: If no YAML is given, it is not found or upstream rejects the dataset.
    """
    if not data:
        raise CompareError("data: give a detection dataset YAML, e.g. data=path/to/data.yaml")
    if Path(str(data)).suffix.lower() not in {".yaml", ".yml"}:
        raise CompareError(f"data: {data!r} is not a dataset YAML (allowed suffixes: .yaml, .yml)")
    path = check_file(str(data), hard=False)
    if not path:
        raise CompareError(f"data: dataset YAML {str(data)!r} not found")
    try:
        return str(Path(path).resolve()), check_det_dataset(path)
    except Exception as e:
        raise CompareError(f"data: {data} is not a usable detection dataset: {e}") from e


def _seed_list(seeds: str | Sequence[int]) -> list[int]:
    """Read an explicit seed list: ints, or a comma-separated string of them."""
    if not isinstance(seeds, (str, list, tuple)):
        raise CompareError(f"seeds: a count (seeds=3) or a list of seeds (seeds=0,3,7), got {seeds!r}")
    items = [s.strip() for s in seeds.split(",")] if isinstance(seeds, str) else list(seeds)
    try:
        values = [int(s) if isinstance(s, str) else s for s in items]
    except ValueError:
        values = None
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values):
        raise CompareError(f"seeds: a count (seeds=3) or a list of seeds (seeds=0,3,7), got {seeds!r}")
    if len(set(values)) != len(values):
        raise CompareError(f"seeds: each seed once, got {seeds!r}")
    return values


def check_seeds(seeds: int | str | Sequence[int], seed: int | None) -> list[int]:
    """Resolve the seeds every model trains with: a count N from ``seed`` (``seed``, ``seed+1``, ...) or a list.

    Args:
        seeds (int | str | Sequence[int]): A count (``3``), or an explicit list (``[0, 3, 7]`` or ``"0,3,7"``).
        seed (int | None): Upstream's ``seed`` train argument if given, the first seed of a count (default 0).

    Returns:
        (list[int]): The seeds, in order.

    Raises:
        CompareError: If the count is not positive, a seed is not a non-negative int or repeats, ``seed`` is not
            an int, or ``seed`` is given with an explicit list.
    """
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise CompareError(f"seed: a non-negative int, got {seed!r}")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise CompareError(f"seeds: a count (seeds=3) or a list of seeds (seeds=0,3,7), got {seeds!r}")
        first = 0 if seed is None else seed
        return list(range(first, first + seeds))
    if isinstance(seeds, str) and "," not in seeds and seeds.strip().isdigit():
        return check_seeds(int(seeds), seed)
    values = _seed_list(seeds)
    if seed is not None:
        raise CompareError(f"seed={seed} with seeds={seeds!r}: give a count from a first seed, or a list, not both")
    return values


def check_train_args(args: dict[str, Any]) -> None:
    """Check pass-through train arguments against upstream's defaults and value rules, and faster-coco-eval.

    Args:
        args (dict[str, Any]): Train arguments besides the ones compare sets.

    Raises:
        CompareError: If an argument is reserved, unknown or has a bad value, or faster-coco-eval is missing.
    """
    if reserved := sorted(RESERVED_ARGS & set(args)):
        raise CompareError(
            f"{', '.join(reserved)}: set by compare itself (each model trains afresh in PROJECT/compare/<name>)"
        )
    for key in args:
        if key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(key, DEFAULT_CFG_DICT)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise CompareError(f"{key}: not an Ultralytics train argument{hint}")
    try:
        check_cfg(dict(args))
    except (TypeError, ValueError) as e:
        raise CompareError(f"train arguments: {e}") from e
    if importlib.util.find_spec("faster_coco_eval") is None:
        raise CompareError(
            f"faster-coco-eval is needed for AP by object size: pip install {COCO_EVAL_PIN} (make venv installs it)"
        )
