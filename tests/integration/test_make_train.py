# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`make train`, the main job: generates the synthetic dataset and trains rtdetr-l-HGBlock_Biformer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_make_train_runs_one_epoch(tmp_path: Path):
    """`make train EPOCHS=1` trains on the generated dataset and says where the results are."""
    result = subprocess.run(
        ["make", "--no-print-directory", "train", "EPOCHS=1", f"PROJECT={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    run = tmp_path / "train"
    assert (run / "weights" / "best.pt").is_file() and (run / "results.csv").is_file()
    assert f"make train: results in {run}" in output
    assert (ROOT / "build" / "synthetic" / "data.yaml").is_file()
