# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""The exported models' summary: mean over seeds, difference from PyTorch, and the flag beyond the tolerance."""

from __future__ import annotations

import pytest

from ultralytics.biformer.compare.exports import export_summary, flag_tolerance

# an export's per-seed figures, binary fractions so that the boundary case is exact: mean 0.3125
RUNS = [{"seed": 0, "mAP50-95": 0.25}, {"seed": 1, "mAP50-95": 0.375}]


@pytest.mark.parametrize("tolerance, flagged", [(0.03125, True), (0.125, False), (0.0625, False), (None, False)])
def test_export_is_flagged_when_it_moves_map_beyond_the_tolerance(tolerance: float | None, flagged: bool):
    """PyTorch 0.375 and the export 0.3125 over the same seeds: -0.0625, flagged only beyond the tolerance (not at
    it), never without an interval."""
    summary = export_summary("m", "onnx", RUNS, pytorch_map=0.375, tolerance=tolerance, latency_ms=12.5)
    assert summary["mAP50-95"] == pytest.approx({"mean": 0.3125, "sd": 0.125 / 2**0.5, "min": 0.25, "max": 0.375})
    assert summary["difference"] == -0.0625 and summary["flagged"] is flagged
    assert (summary["name"], summary["format"], summary["latency_ms"], summary["runs"]) == ("m", "onnx", 12.5, RUNS)


def test_export_better_than_pytorch_is_flagged_too():
    """A change in either direction can change a verdict."""
    assert export_summary("m", "onnx", RUNS, pytorch_map=0.25, tolerance=0.03125, latency_ms=1.0)["flagged"]


def test_tolerance_is_the_models_own_half_width_and_the_narrowest_for_the_baseline():
    """A variant takes half its own interval's width; the baseline, which has none, the narrowest variant's."""
    half_widths = {"a": 0.02, "b": 0.005}
    assert flag_tolerance(half_widths, "a", "base") == 0.02 and flag_tolerance(half_widths, "b", "base") == 0.005
    assert flag_tolerance(half_widths, "base", "base") == 0.005
    assert flag_tolerance({}, "base", "base") is None
