# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""A paired bootstrap over validation images: an interval for each variant's mAP50-95 difference from the baseline.

Every resample draws N of the N validation images with replacement, the same draw for every model and seed, and
recomputes each run's mAP50-95 on it with upstream's ``ap_per_class`` (``PerImageStats.map50_95``). A variant's
difference on a resample is the mean over seeds k of (variant seed k - baseline seed k); the interval is the 2.5th
and 97.5th percentile of those differences. It covers the sampling of the validation images, not the training seed
(except through the mean over the seeds given).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ultralytics.utils import LOGGER

from .per_image import PerImageStats

__all__ = ("CONFIDENCE", "Interval", "paired_bootstrap", "verdict")

CONFIDENCE = 0.95  # two-sided: the 2.5th and 97.5th percentiles
PROGRESS_EVERY_S = 30.0  # a progress line at most this often


@dataclass(frozen=True)
class Interval:
    """A variant's mAP50-95 difference from the baseline and its bootstrap interval (mAP as a 0-1 fraction).

    Attributes:
        difference (float): Mean over seeds of variant minus baseline on all validation images: the table's figure.
        low (float): Lower bound of the interval.
        high (float): Upper bound of the interval.
        verdict (str): The plain reading, e.g. ``better: +1.8 [+0.9, +2.7]`` (mAP50-95 points).
    """

    difference: float
    low: float
    high: float
    verdict: str

    def as_dict(self) -> dict[str, float | str]:
        """The fields as a dict, for compare.json."""
        return asdict(self)


def verdict(difference: float, low: float, high: float) -> str:
    """Say what an interval shows, in mAP50-95 points (hundredths).

    Args:
        difference (float): The point estimate (0-1).
        low (float): Lower bound (0-1).
        high (float): Upper bound (0-1).

    Returns:
        (str): ``better`` if the interval lies above zero, ``worse`` if below it, else ``no difference shown``;
            then the figures, e.g. ``better: +1.8 [+0.9, +2.7]``.
    """
    word = "better" if low > 0 else "worse" if high < 0 else "no difference shown"
    return f"{word}: {difference * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"  # -0.0: below zero, rounded


def _maps(runs: Sequence[Sequence[PerImageStats]], images: np.ndarray | None) -> np.ndarray:
    """mAP50-95 of every (model, seed) run on a sample of images (all of them for None), shape (models, seeds)."""
    return np.array([[(r if images is None else r.take(images)).map50_95() for r in model] for model in runs])


def paired_bootstrap(
    runs: Sequence[Sequence[PerImageStats]], resamples: int, seed: int, confidence: float = CONFIDENCE
) -> list[Interval]:
    """Bootstrap each variant's mAP50-95 difference from the baseline, pairing seed k with seed k.

    Args:
        runs (Sequence[Sequence[PerImageStats]]): Per model (the baseline first), the statistics of each seed's run,
            seeds in the same order for every model, all on the same validation images.
        resamples (int): Bootstrap resamples.
        seed (int): Seed of the resampling's random generator.
        confidence (float): Two-sided coverage of the percentile interval.

    Returns:
        (list[Interval]): One per variant (``runs[1:]``), in order.

    Raises:
        ValueError: If the runs differ in image count or seed count, or ``resamples`` < 1.
    """
    sizes = {r.images for model in runs for r in model}
    if len(sizes) != 1 or len({len(model) for model in runs}) != 1:
        raise ValueError(
            f"paired_bootstrap: every model needs one run per seed on the same images, got image counts {sorted(sizes)}"
            f" and seed counts {[len(m) for m in runs]}"
        )
    if resamples < 1:
        raise ValueError(f"paired_bootstrap: resamples must be a positive int, got {resamples}")
    (images,) = sizes
    full = _maps(runs, None)
    point = (full[1:] - full[0]).mean(1)  # (variants,)
    generator = np.random.default_rng(seed)
    differences = np.empty((resamples, len(runs) - 1))
    start = last = time.perf_counter()
    for i in range(resamples):
        maps = _maps(runs, generator.integers(0, images, images))
        differences[i] = (maps[1:] - maps[0]).mean(1)
        if time.perf_counter() - last > PROGRESS_EVERY_S:
            last, done = time.perf_counter(), i + 1
            left = (last - start) / done * (resamples - done)
            LOGGER.info(f"compare: bootstrap {done}/{resamples} resamples, about {left:.0f} s left")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail], axis=0)
    return [Interval(float(d), float(a), float(b), verdict(d, a, b)) for d, a, b in zip(point, low, high)]
