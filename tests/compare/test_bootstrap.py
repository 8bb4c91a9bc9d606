# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The paired bootstrap on constructed per-image statistics whose mAP50-95 and its sampling spread are known."""

from __future__ import annotations

import numpy as np
import pytest

from ultralytics.biformer.compare.bootstrap import paired_bootstrap, verdict
from ultralytics.biformer.compare.per_image import PerImageStats
from ultralytics.utils.metrics import ap_per_class

IMAGES = 200
MISSED = frozenset(np.random.default_rng(1).permutation(IMAGES)[:100].tolist())  # half the images, drawn once


def _one_object_per_image(missed: frozenset[int]) -> PerImageStats:
    """Every image holds one object of class 0 and one prediction: a hit (all IoU thresholds, score 0.9), or on the
    images in ``missed`` a false positive scored 0.1, below every hit. mAP50-95 is then about the fraction of hits.
    """
    hit = [i not in missed for i in range(IMAGES)]
    return PerImageStats.from_validator(
        {
            "tp": [np.full((1, 10), h) for h in hit],
            "conf": [np.array([0.9 if h else 0.1]) for h in hit],
            "pred_cls": [np.zeros(1) for _ in hit],
            "target_cls": [np.zeros(1) for _ in hit],
        }
    )


PERFECT, HALF = _one_object_per_image(frozenset()), _one_object_per_image(MISSED)


def _upstream_map(missed: frozenset[int]) -> float:
    """mAP50-95 of a case straight from upstream's ap_per_class on the concatenated arrays (not PerImageStats)."""
    hit = np.array([i not in missed for i in range(IMAGES)])
    tp = np.repeat(hit[:, None], 10, 1)
    ap = ap_per_class(tp, np.where(hit, 0.9, 0.1), np.zeros(IMAGES), np.zeros(IMAGES))[5]
    return float(ap.mean())


def test_interval_covers_the_known_difference_with_the_binomial_width():
    """A variant that finds every object against a baseline that misses half: the interval holds upstream's figure
    for the difference (0.5 of the 101-point AP), and its width is the binomial one of the missed fraction."""
    (interval,) = paired_bootstrap([[HALF], [PERFECT]], resamples=2000, seed=0)
    known = _upstream_map(frozenset()) - _upstream_map(MISSED)
    assert known == pytest.approx(0.5, abs=0.01)
    assert interval.difference == pytest.approx(known, abs=1e-12)
    assert interval.low < known < interval.high
    # the difference on a resample is (about) the fraction of missed images in it: sd sqrt(0.25 / 200)
    binomial_width = 2 * 1.96 * np.sqrt(0.25 / IMAGES)
    assert interval.high - interval.low == pytest.approx(binomial_width, rel=0.15)
    assert interval.verdict.startswith("better: +50.0 [")


def test_identical_predictions_give_zero_interval():
    """A model against itself: the same resample for both, so every difference is 0 although mAP varies a lot."""
    (interval,) = paired_bootstrap([[HALF], [HALF]], resamples=200, seed=0)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.verdict == "no difference shown: +0.0 [+0.0, +0.0]"


def test_seeds_pair_k_with_k_under_one_resample():
    """Variant seeds (PERFECT, HALF) against baseline seeds (HALF, PERFECT): the pair differences cancel on every
    resample only if all pairs share it (separate resamples per pair would not cancel), so the interval is [0, 0].
    Two equal pairs give exactly one pair's interval: one resample for all pairs, not one each (which would narrow
    it). (The mean of paired differences is the difference of the means, so which seed pairs with which cannot
    matter to the figure; the pairing is of resamples.)"""
    (cancel,) = paired_bootstrap([[HALF, PERFECT], [PERFECT, HALF]], resamples=200, seed=0)
    assert (cancel.difference, cancel.low, cancel.high) == (0.0, 0.0, 0.0)  # the mean over both pairs
    (same,) = paired_bootstrap([[HALF, HALF], [PERFECT, PERFECT]], resamples=500, seed=0)
    (single,) = paired_bootstrap([[HALF], [PERFECT]], resamples=500, seed=0)
    assert (same.difference, same.low, same.high) == pytest.approx((single.difference, single.low, single.high))


def test_point_estimate_and_identity_resample_are_the_full_sample():
    """take() of every image in order reproduces the statistics; a permutation leaves mAP50-95 unchanged."""
    order = np.arange(IMAGES)
    taken = HALF.take(order)
    assert all(np.array_equal(getattr(taken, f), getattr(HALF, f)) for f in HALF.__dataclass_fields__)
    assert HALF.take(order[::-1]).map50_95() == pytest.approx(HALF.map50_95(), abs=1e-12)
    assert HALF.map50_95() == pytest.approx(_upstream_map(MISSED), abs=1e-12)


def test_take_keeps_each_images_entries_together():
    """Images with 0, 2 and 1 predictions: taking (2, 1, 1) returns image 2's then image 1's entries twice."""
    stats = PerImageStats.from_validator(
        {
            "tp": [np.zeros((0, 10), bool), np.ones((2, 10), bool), np.zeros((1, 10), bool)],
            "conf": [np.zeros(0), np.array([0.5, 0.6]), np.array([0.7])],
            "pred_cls": [np.zeros(0), np.array([1.0, 2.0]), np.array([0.0])],
            "target_cls": [np.array([0.0]), np.array([1.0]), np.array([2.0, 0.0])],
        }
    )
    taken = stats.take(np.array([2, 1, 1]))
    assert taken.conf.tolist() == [0.7, 0.5, 0.6, 0.5, 0.6]
    assert taken.pred_cls.tolist() == [0.0, 1.0, 2.0, 1.0, 2.0]
    assert taken.target_cls.tolist() == [2.0, 0.0, 1.0, 1.0]
    assert taken.pred_counts.tolist() == [1, 2, 2] and taken.target_counts.tolist() == [2, 1, 1]


def test_save_and_load_round_trip(tmp_path):
    """The statistics a finished run stores are the ones a rerun's bootstrap reads."""
    HALF.save(tmp_path / "val" / "per-image.npz")
    loaded = PerImageStats.load(tmp_path / "val" / "per-image.npz")
    assert all(np.array_equal(getattr(loaded, f), getattr(HALF, f)) for f in HALF.__dataclass_fields__)


@pytest.mark.parametrize(
    "difference, low, high, expected",
    [
        (0.018, 0.009, 0.027, "better: +1.8 [+0.9, +2.7]"),
        (0.002, -0.006, 0.011, "no difference shown: +0.2 [-0.6, +1.1]"),
        (-0.018, -0.027, -0.009, "worse: -1.8 [-2.7, -0.9]"),
        (0.0, 0.0, 0.004, "no difference shown: +0.0 [+0.0, +0.4]"),
    ],
)
def test_verdict_follows_the_sign_of_the_interval(difference, low, high, expected):
    """Better only if the whole interval is above zero, worse only if below; figures in mAP points."""
    assert verdict(difference, low, high) == expected


def test_mismatched_runs_refused():
    """Runs on different image sets, or a model with fewer seeds, cannot be paired."""
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([[HALF], [HALF.take(np.arange(10))]], resamples=10, seed=0)
    with pytest.raises(ValueError, match="one run per seed"):
        paired_bootstrap([[HALF, HALF], [HALF]], resamples=10, seed=0)
