# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Fixtures of the deployment parity matrix: briefly trained (and resumed) checkpoints of each model, their exports.

Each model is trained one epoch, interrupted, and resumed for a second (the `resume` cell of the matrix). Four steps
barely move BatchNorm's running statistics from their initial values (momentum 0.03), and with those the features
fade layer by layer: the output no longer depends on the image and every score is a near-tie, so there would be
nothing ranked to compare (on some CPUs not one clearly ranked detection). The exported checkpoint therefore has its
BatchNorm statistics recomputed on the training images at the export size (`torch.optim.swa_utils.update_bn`), and
every reference output is checked to have material to compare (`assert_comparable`).
"""

from __future__ import annotations

import copy
import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.optim.swa_utils import update_bn

from ultralytics import RTDETR
from ultralytics.nn.autobackend import AutoBackend
from detections import assert_comparable
from synthetic_dataset import generate

PARITY_MODELS = ("rtdetr-l.yaml", "rtdetr-l-Biformer.yaml", "rtdetr-l-HGBlock_Biformer.yaml")
BASELINE = PARITY_MODELS[0]
EXPORT_IMGSZ = 320
# (batch, height, width) every dynamic export must serve: the traced size, larger batches, non-square inputs and
# 416x352 (stride-16 map 26x22: not a multiple of BRA's 3x3 regions)
DYNAMIC_INPUTS = [(1, 320, 320), (2, 320, 320), (4, 320, 320), (1, 640, 640), (1, 480, 640), (1, 640, 480), (1, 416, 352)]
# nbs=batch and no warm-up: every step updates the weights at the full rate (Ultralytics would otherwise accumulate
# 32 batches and warm up for 100 steps, so nothing but BatchNorm statistics would move, and `resume` would restore an
# empty optimizer state)
TRAIN_ARGS = dict(
    imgsz=96, batch=2, nbs=2, warmup_epochs=0, workers=0, device="cpu", seed=0, deterministic=True, plots=False, amp=False
)
EPOCHS = 2
CALIBRATION_BATCH = 2  # images per BatchNorm-statistics batch (train mode needs more than one value per channel)


class Interrupted(Exception):
    """Raised from a callback to stop a training run after its first epoch, as a crash would."""


@dataclass
class ResumedRun:
    """A training run interrupted after epoch 1 and resumed to the end."""

    weights: Path  # last.pt at the end of the resumed run
    results: list[dict[str, str]]  # rows of results.csv
    interrupted_epoch: int  # "epoch" stored in last.pt at the interruption
    start_epoch: int  # where the resumed trainer started
    epochs: int  # the resumed trainer's epoch count
    optimizer_restored: bool  # the resumed optimizer's state equals the one saved at the interruption


def _interrupt_after_first_epoch(trainer) -> None:
    """on_fit_epoch_end callback: stop after epoch 1, once last.pt is written."""
    if trainer.epoch == 0:
        raise Interrupted


def _optimizer_state(state: dict) -> list[torch.Tensor]:
    """The per-parameter tensors of an optimizer state_dict, in a fixed order."""
    return [t for _, s in sorted(state["state"].items()) for _, t in sorted(s.items()) if isinstance(t, torch.Tensor)]


def train_interrupted_and_resumed(cfg: str, data: Path, project: Path) -> ResumedRun:
    """Train cfg for EPOCHS epochs, interrupting after the first and resuming from last.pt."""
    model = RTDETR(cfg)
    model.add_callback("on_fit_epoch_end", _interrupt_after_first_epoch)
    with pytest.raises(Interrupted), torch.enable_grad():
        model.train(data=str(data), epochs=EPOCHS, project=str(project), name=Path(cfg).stem, **TRAIN_ARGS)
    last = project / Path(cfg).stem / "weights" / "last.pt"
    saved = torch.load(last, weights_only=False)
    seen = {}

    def record(trainer) -> None:
        """on_train_start: what the resumed trainer starts from."""
        restored = _optimizer_state(trainer.optimizer.state_dict())
        expected = _optimizer_state(saved["optimizer"])
        seen.update(
            start_epoch=trainer.start_epoch,
            epochs=trainer.epochs,
            optimizer_restored=len(expected) > 0
            and len(restored) == len(expected)
            and all(torch.equal(a, b) for a, b in zip(restored, expected)),  # torch.equal compares across dtypes
        )

    resumed = RTDETR(last)
    resumed.add_callback("on_train_start", record)
    with torch.enable_grad():
        resumed.train(resume=True)
    with open(last.parent.parent / "results.csv") as f:
        results = list(csv.DictReader(f))
    return ResumedRun(last, results, saved["epoch"], **seen)


@pytest.fixture(scope="session")
def deploy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset (4 train, 4 val images at 320 px)."""
    return generate(tmp_path_factory.mktemp("deploy-data"), train=4, val=4, imgsz=320, seed=0)


@pytest.fixture(scope="session")
def resumed_runs(tmp_path_factory: pytest.TempPathFactory, deploy_data: Path) -> dict[str, ResumedRun]:
    """One interrupted-and-resumed run per model, all trained before anything is exported."""
    project = tmp_path_factory.mktemp("deploy-runs")
    return {cfg: train_interrupted_and_resumed(cfg, deploy_data, project) for cfg in PARITY_MODELS}


def calibrate(weights: Path, images: list[np.ndarray], out: Path) -> Path:
    """Save weights with BatchNorm running statistics recomputed on images at EXPORT_IMGSZ (Ultralytics' Model.save).

    Args:
        weights (Path): A trained checkpoint.
        images (list[np.ndarray]): BGR images, fed in batches of CALIBRATION_BATCH.
        out (Path): The checkpoint to write.

    Returns:
        (Path): out.
    """
    model = RTDETR(weights)
    starts = range(0, len(images), CALIBRATION_BATCH)
    loader = [batch(images[i:], CALIBRATION_BATCH, EXPORT_IMGSZ, EXPORT_IMGSZ) for i in starts]
    with torch.no_grad():
        update_bn(loader, model.model.float())  # train mode only while it runs; cumulative averages
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out


@pytest.fixture(scope="session")
def calibrated(resumed_runs: dict[str, ResumedRun], deploy_data: Path, tmp_path_factory) -> dict[str, Path]:
    """Per model, its resumed run's last.pt with BatchNorm statistics recomputed on the training images."""
    folder = tmp_path_factory.mktemp("deploy-calibrated")
    train = [cv2.imread(str(p)) for p in sorted((deploy_data.parent / "images" / "train").glob("*.png"))]
    return {cfg: calibrate(run.weights, train, folder / f"{Path(cfg).stem}.pt") for cfg, run in resumed_runs.items()}


@pytest.fixture(scope="session")
def exports(calibrated: dict[str, Path], tmp_path_factory) -> dict[tuple[str, str, bool], str]:
    """Lazily exported files, keyed by (model, format, dynamic), of the calibrated checkpoints at EXPORT_IMGSZ.

    Each key exports from a copy of the checkpoint in a folder of its own: Ultralytics names an export after its
    checkpoint, so a static and a dynamic export of one file would overwrite each other.
    """
    folder = tmp_path_factory.mktemp("deploy-exports")

    def export(key: tuple[str, str, bool]) -> str:
        model, fmt, dynamic = key
        checkpoint = folder / f"{fmt}-{'dynamic' if dynamic else 'static'}" / calibrated[model].name
        checkpoint.parent.mkdir(exist_ok=True)
        shutil.copyfile(calibrated[model], checkpoint)
        batch_size = 4 if dynamic else 1
        return RTDETR(checkpoint).export(format=fmt, imgsz=EXPORT_IMGSZ, dynamic=dynamic, batch=batch_size, device="cpu")

    return Lazy(export)


@pytest.fixture(scope="session")
def backends(exports: dict) -> dict[tuple[str, str, bool], AutoBackend]:
    """Lazily loaded Ultralytics AutoBackends (default settings) of the exports, same keys."""
    return Lazy(lambda key: AutoBackend(exports[key], device=torch.device("cpu"), verbose=False))


@pytest.fixture(scope="session")
def references(calibrated: dict[str, Path], images: list[np.ndarray]) -> dict[tuple, tuple]:
    """Lazily computed (input batch, fused fp32 PyTorch output), keyed by (model, batch, height, width); each output
    is checked to have material to compare (`assert_comparable`)."""

    def reference(key: tuple[str, int, int, int]) -> tuple[torch.Tensor, np.ndarray]:
        model, n, h, w = key
        x = batch(images, n, h, w)
        with torch.inference_mode():
            expected = eager_models[model](x)[0].numpy()
        assert_comparable(expected, f"{model} at {(n, h, w)}")
        return x, expected

    eager_models = Lazy(lambda model: eager(calibrated[model]))
    return Lazy(reference)


@pytest.fixture(scope="session")
def compile_backend(request: pytest.FixtureRequest) -> str:
    """The torch.compile backend of the compile=True tests (--compile-backend)."""
    return request.config.getoption("--compile-backend")


@pytest.fixture(scope="session")
def images(deploy_data: Path) -> list[np.ndarray]:
    """The generated validation images (BGR), different scenes for the images of a batch."""
    return [cv2.imread(str(p)) for p in sorted((deploy_data.parent / "images" / "val").glob("*.png"))]


def batch(images: list[np.ndarray], n: int, h: int, w: int) -> torch.Tensor:
    """n images resized to (h, w), as the (n, 3, h, w) RGB float input in [0, 1] the exported models take."""
    rgb = [cv2.resize(images[i % len(images)], (w, h))[..., ::-1] for i in range(n)]
    return torch.from_numpy(np.stack(rgb).transpose(0, 3, 1, 2).copy()).float() / 255


def eager(weights: Path) -> torch.nn.Module:
    """The fused fp32 PyTorch model, as the exporter builds it."""
    return copy.deepcopy(RTDETR(weights).model).float().eval().fuse(verbose=False)


def run_backend(backend: AutoBackend, x: torch.Tensor) -> np.ndarray:
    """Run an exported model through Ultralytics' own AutoBackend and return its first output as numpy."""
    out = backend(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


class Lazy(dict):
    """A dict that computes a missing value with `make(key)` on first access and keeps it."""

    def __init__(self, make):
        """Remember the factory."""
        super().__init__()
        self.make = make

    def __missing__(self, key):
        """Compute, store and return the value of key."""
        self[key] = value = self.make(key)
        return value
