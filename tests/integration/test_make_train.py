# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""`make train`, the main job: generates the synthetic dataset, trains rtdetr-l-HGBlock_Biformer with `yolo detect
train`, and the result validates with `yolo detect val`."""

from __future__ import annotations

import csv
import math
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, run_yolo


@pytest.mark.slow
def test_make_train_then_rect_val(tmp_path: Path):
    """`make train EPOCHS=1` generates its dataset (into a fresh folder here), trains one finite epoch, says where
    the results are and, last, that a run on generated data is a pipeline check with the command for a real one;
    `yolo detect val` on best.pt counts every validation image and label."""
    data = tmp_path / "synthetic" / "data.yaml"
    result = subprocess.run(
        ["make", "--no-print-directory", "train", "EPOCHS=1", f"PROJECT={tmp_path}", f"SYNTHETIC_DATA={data}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    run = tmp_path / "train"
    assert f"make train: results in {run}" in output
    closing = output.strip().splitlines()[-1]  # on generated data, the last line says what the run was and was not
    assert closing.startswith("make train: this was a pipeline check (EPOCHS=1 from scratch on 32 generated images")
    assert "mAP near 0 is expected" in closing and "make train DATA=" in closing
    assert data.is_file(), "make train did not generate its dataset"
    assert yaml.safe_load((run / "args.yaml").read_text())["data"] == str(data)
    with open(run / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    losses = {k: float(v) for k, v in row.items() if k.startswith("train/")}
    assert int(row["epoch"]) == 1 and losses and all(math.isfinite(v) and v > 0 for v in losses.values())

    label_files = list((data.parent / "labels" / "val").glob("*.txt"))
    labels = sum(len(p.read_text().splitlines()) for p in label_files)
    val = run_yolo("detect", "val", f"model={run / 'weights' / 'best.pt'}", f"data={data}", "imgsz=160", cwd=tmp_path)
    images, instances = map(int, re.search(r"\n\s*all\s+(\d+)\s+(\d+)", val).groups())
    assert (images, instances) == (len(label_files), labels) and labels > 0
