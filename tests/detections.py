# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Comparing RT-DETR outputs across runtimes: the same detections, up to the order of near-equal scores.

RT-DETR outputs its 300 best (query, class) pairs in score order. Another runtime runs the same arithmetic in another
order (or precision), so near-equal scores can swap places (and membership at the 300th place); outputs are therefore
compared as sets: sorted scores, and every clearly-ranked detection matched by class, box and score.
"""

from __future__ import annotations

import numpy as np

SCORE = 4  # column of the score in an (N, 300, 6) output: cx, cy, w, h, score, class


def score_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max abs difference of the sorted scores of each image, relative to the largest expected score.

    Args:
        actual (np.ndarray): Output of shape (N, Q, 6).
        expected (np.ndarray): Reference output of the same shape.

    Returns:
        (float): The error, 0 for identical score sets.
    """
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    diff = np.abs(np.sort(actual[..., SCORE], -1) - np.sort(expected[..., SCORE], -1)).max()
    return float(diff / np.abs(expected[..., SCORE]).max())


def assert_same_detections(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Assert two (N, Q, 6) RT-DETR outputs hold the same detections up to the order of near-equal scores.

    The sorted scores of each image agree within atol, and every detection scoring clearly (by more than atol) above the
    last expected place has a counterpart with the same class and box and a score within atol.
    """
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    for image, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(np.sort(a[:, SCORE]), np.sort(e[:, SCORE]), atol=atol, rtol=0, err_msg=f"image {image}")
        clear = a[a[:, SCORE] > e[:, SCORE].min() + atol]
        assert len(clear) > 0, f"image {image}: no clearly-ranked detection to compare"
        for row in clear:
            assert (np.abs(e - row).max(axis=1) <= atol).any(), f"image {image}: no reference detection matches {row}"
