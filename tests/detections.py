# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Comparing RT-DETR outputs across runtimes: the same detections, up to the order of near-equal scores.

RT-DETR outputs its 300 best (query, class) pairs in score order. Another runtime runs the same arithmetic in another
order (or precision), so near-equal scores can swap places (and membership at the 300th place); outputs are therefore
compared as sets: sorted scores, and the clearly-ranked detections matched by class, box and score.
"""

from __future__ import annotations

import numpy as np

SCORE = 4  # column of the score in an (N, 300, 6) output: cx, cy, w, h, score, class
MATCHED = 0.97  # fraction of scores and of clear detections that must agree (up to 9 of 300 may swap)
CLEAR_MARGIN = 1e-3  # a detection is clearly ranked when it scores this much above the image's last place
MIN_CLEAR = 100  # clearly ranked detections a reference output needs per image to be worth comparing


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


def assert_comparable(expected: np.ndarray, what: str) -> None:
    """Assert a reference (N, Q, 6) output has material to compare: ranked detections that depend on the image.

    Each image needs at least MIN_CLEAR detections scoring CLEAR_MARGIN above its last place, and no two images of
    the batch may have the same score set within CLEAR_MARGIN. A model whose scores are all near-ties, or the same
    for every image (features faded to constants), would let an export pass with almost any arithmetic.

    Args:
        expected (np.ndarray): Reference output of shape (N, Q, 6).
        what (str): The model and input, for the message.
    """
    scores = np.sort(expected[..., SCORE], -1)
    clear = (scores > scores[:, :1] + CLEAR_MARGIN).sum(-1)
    assert (clear >= MIN_CLEAR).all(), f"{what}: only {clear.tolist()} clearly ranked detections per image"
    for i in range(1, len(scores)):
        spread = np.abs(scores[i] - scores[0]).max()
        assert spread > CLEAR_MARGIN, f"{what}: image {i} scores like image 0 (max difference {spread:.2g})"


def assert_same_detections(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Assert two (N, Q, 6) RT-DETR outputs hold the same detections up to the order of near-equal scores.

    Per image, at least MATCHED of the sorted scores agree within atol, and at least MATCHED of the detections scoring
    clearly (by more than atol) above the last expected place have a counterpart with the same class and box and a
    score within atol. RT-DETR picks its queries by a top-k over encoder scores first: a near-tie there swaps a whole
    query in or out, whatever its final score, so a few unmatched detections are rounding, while a wrong computation
    leaves almost none matched.
    """
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    for image, (a, e) in enumerate(zip(actual, expected)):
        same_scores = np.abs(np.sort(a[:, SCORE]) - np.sort(e[:, SCORE])) <= atol
        assert same_scores.mean() >= MATCHED, f"image {image}: {same_scores.mean():.1%} of the sorted scores agree"
        clear = a[a[:, SCORE] > e[:, SCORE].min() + atol]
        assert len(clear) > 0, f"image {image}: no clearly-ranked detection to compare"
        matched = np.array([(np.abs(e - row).max(axis=1) <= atol).any() for row in clear])
        assert matched.mean() >= MATCHED, (
            f"image {image}: {matched.mean():.1%} of {len(clear)} clear detections matched; first unmatched: "
            f"{clear[~matched][0]}"
        )
