# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The detection validator's per-image statistics, kept so that mAP50-95 can be recomputed on any image sample.

Upstream's ``DetMetrics`` appends one entry per validation image (true positives at ten IoU thresholds, confidences
and classes of the predictions, classes of the targets) and computes mAP with ``ap_per_class`` on their
concatenation. ``PerImageStats`` keeps those entries, and ``map50_95`` of the full sample is that same figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ultralytics.utils.metrics import ap_per_class

__all__ = ("PER_IMAGE_FILE", "PerImageStats", "keep_per_image_stats")

PER_IMAGE_FILE = Path("val") / "per-image.npz"  # relative to a run folder, beside the validator's predictions.json


def _flat_index(counts: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Indices into a concatenation of per-image arrays that select ``images``, in that order, repeats included.

    Args:
        counts (np.ndarray): Entries per image, shape (N,).
        images (np.ndarray): Image indices to take, shape (M,), each in [0, N).

    Returns:
        (np.ndarray): Flat indices, shape (counts[images].sum(),).
    """
    starts = np.cumsum(counts) - counts
    lengths = counts[images]
    taken_starts = np.cumsum(lengths) - lengths
    return np.repeat(starts[images] - taken_starts, lengths) + np.arange(lengths.sum())


@dataclass(frozen=True)
class PerImageStats:
    """The validator's statistics of N images, concatenated, with the count of each image's entries.

    Attributes:
        tp (np.ndarray): True positive flags of the predictions at the validator's IoU thresholds, shape (P, 10).
        conf (np.ndarray): Prediction confidences, shape (P,).
        pred_cls (np.ndarray): Predicted classes, shape (P,).
        target_cls (np.ndarray): Target classes, shape (T,).
        pred_counts (np.ndarray): Predictions per image, shape (N,), summing to P.
        target_counts (np.ndarray): Targets per image, shape (N,), summing to T.
    """

    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    target_cls: np.ndarray
    pred_counts: np.ndarray
    target_counts: np.ndarray

    @classmethod
    def from_validator(cls, stats: dict[str, list[np.ndarray]]) -> PerImageStats:
        """Build from ``DetMetrics.stats``: lists with one array per image (``tp``, ``conf``, ``pred_cls``,
        ``target_cls``), in validation order.
        """
        return cls(  # dtypes as the validator's: its own concatenation, so ties in confidence sort the same way
            tp=np.concatenate(stats["tp"], 0),
            conf=np.concatenate(stats["conf"], 0),
            pred_cls=np.concatenate(stats["pred_cls"], 0),
            target_cls=np.concatenate(stats["target_cls"], 0),
            pred_counts=np.array([len(c) for c in stats["conf"]], dtype=np.int64),
            target_counts=np.array([len(c) for c in stats["target_cls"]], dtype=np.int64),
        )

    @property
    def images(self) -> int:
        """Number of validation images."""
        return len(self.pred_counts)

    def take(self, images: np.ndarray) -> PerImageStats:
        """The statistics of a sample of images (with repeats, as a bootstrap resample draws them).

        Args:
            images (np.ndarray): Image indices, shape (M,).

        Returns:
            (PerImageStats): Statistics of M images, image k being ``images[k]``.
        """
        preds, targets = _flat_index(self.pred_counts, images), _flat_index(self.target_counts, images)
        return PerImageStats(
            self.tp[preds],
            self.conf[preds],
            self.pred_cls[preds],
            self.target_cls[targets],
            self.pred_counts[images],
            self.target_counts[images],
        )

    def map50_95(self) -> float:
        """mAP50-95 as upstream's validator computes it: ``ap_per_class`` over the classes with targets, averaged."""
        ap = ap_per_class(self.tp, self.conf, self.pred_cls, self.target_cls)[5]
        return float(ap.mean()) if len(ap) else 0.0

    def save(self, path: Path) -> None:
        """Write the statistics to an ``.npz`` file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> PerImageStats:
        """Read statistics written by ``save``."""
        with np.load(path) as arrays:
            return cls(**{key: arrays[key] for key in arrays.files})


def keep_per_image_stats(validator: Any) -> dict[str, list[np.ndarray]]:
    """Register a callback that keeps a validator's per-image statistics before its ``get_stats`` clears them.

    The callback runs after each batch's ``update_metrics`` and copies the lists (not the arrays), so after the last
    batch it holds every image's entries; ``PerImageStats.from_validator`` then builds the statistics.

    Args:
        validator (Any): An upstream detection validator (``DetectionValidator`` or a subclass), not yet run.

    Returns:
        (dict[str, list[np.ndarray]]): ``DetMetrics.stats`` as it stood after the last batch, once the validator ran.
    """
    kept: dict[str, list[np.ndarray]] = {}

    def keep(v: Any) -> None:
        kept.update({key: list(entries) for key, entries in v.metrics.stats.items()})

    validator.add_callback("on_val_batch_end", keep)
    return kept
