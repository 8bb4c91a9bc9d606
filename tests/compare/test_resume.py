# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""A comparison run again: finished models are not trained again, unfinished ones are, other settings are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ultralytics.biformer.compare import CompareError, compare

from .conftest import RUN_ARGS, RUN_NAMES, RUNS, read_csv, run_folder


def _snapshot(folder: Path) -> dict[Path, int]:
    """Every file under ``folder`` with its modification time (ns)."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """results.csv rows without the wall-clock column."""
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


@pytest.mark.slow
def test_rerun_skips_finished_and_retrains_unfinished(compared: Path, data_yaml: Path, tmp_path: Path):
    """In a copy of the shared comparison whose last (model, seed) run did not finish, only that run is trained,
    afresh; the others keep every file, their exports included."""
    project = tmp_path / "project"
    shutil.copytree(compared.parent, project)
    first, second = (run_folder(project / "compare", *run) for run in (RUNS[0], RUNS[-1]))
    (second / "compare-result.json").unlink()  # it stopped part-way: weights and results.csv, no result
    stale = second / "weights" / "epoch9.pt"  # as save_period leaves behind; the fresh run writes none
    stale.write_bytes(b"left over")
    finished, old_rows = _snapshot(first), read_csv(second / "results.csv")
    compare(**RUN_ARGS, data=str(data_yaml), project=str(project), plots=False)
    assert _snapshot(first) == finished  # not trained, not validated again
    new_rows = read_csv(second / "results.csv")
    assert len(new_rows) == 2 and _without_time(new_rows) == _without_time(old_rows)  # afresh, not appended
    assert not stale.exists()  # the unfinished run's folder was discarded, not reused
    report = json.loads((project / "compare" / "compare.json").read_text())
    assert [(row["name"], row["seed"]) for row in report["models"]] == list(RUNS)
    assert (second / "compare-result.json").is_file()


@pytest.mark.slow
def test_other_settings_stop_before_training(compared: Path, data_yaml: Path):
    """Run again into the same project with other epochs: refused, naming the change; nothing is touched."""
    before = _snapshot(compared)
    with pytest.raises(CompareError) as error:
        compare(**{**RUN_ARGS, "epochs": 3}, data=str(data_yaml), project=str(compared.parent), plots=False)
    assert str(error.value) == (
        f"{run_folder(compared, *RUNS[0])} holds a run with other settings (epochs: 2 -> 3): "
        "give another project, or delete that folder to train it again"
    )
    assert _snapshot(compared) == before


@pytest.mark.slow
def test_moved_project_reruns_from_its_new_place(compared: Path, data_yaml: Path, tmp_path: Path):
    """Results record their checkpoints relative to the run, so a moved project reruns (latency included) from its
    new place, with the old one gone, and trains nothing."""
    old = tmp_path / "old"
    shutil.copytree(compared.parent, old)
    new = tmp_path / "new"
    old.rename(new)
    before = _snapshot(new / "compare" / RUN_NAMES[0])
    compare(**RUN_ARGS, data=str(data_yaml), project=str(new), plots=False)
    assert _snapshot(new / "compare" / RUN_NAMES[0]) == before  # nor exported again
    report = json.loads((new / "compare" / "compare.json").read_text())
    assert all(row["latency_ms"] > 0 and not Path(row["weights"]).is_absolute() for row in report["models"])


@pytest.mark.slow
def test_result_without_settings_refused(compared: Path, data_yaml: Path, tmp_path: Path):
    """A finished result whose settings file is gone cannot be checked, so it is refused, not reused."""
    project = tmp_path / "project"
    shutil.copytree(compared.parent, project)
    run = run_folder(project / "compare", *RUNS[-1])
    (run / "compare-settings.json").unlink()
    with pytest.raises(CompareError, match=rf"{run} holds a finished result but not the settings"):
        compare(**RUN_ARGS, data=str(data_yaml), project=str(project), plots=False)


@pytest.mark.slow
def test_result_of_another_model_refused(compared: Path, data_yaml: Path, tmp_path: Path):
    """A run folder whose result names another model is refused, naming both, before any training."""
    project = tmp_path / "project"
    shutil.copytree(compared.parent, project)
    run = run_folder(project / "compare", *RUNS[-1])
    result = json.loads((run / "compare-result.json").read_text())
    (run / "compare-result.json").write_text(json.dumps({**result, "model": "other.yaml"}))
    before = _snapshot(project)
    with pytest.raises(CompareError, match=r"holds the result of model 'other.yaml', not of '.*rtdetr-narrow"):
        compare(**RUN_ARGS, data=str(data_yaml), project=str(project), plots=False)
    assert _snapshot(project) == before


@pytest.mark.slow
def test_result_without_per_image_statistics_refused(compared: Path, data_yaml: Path, tmp_path: Path):
    """A finished result whose per-image statistics are gone cannot enter the bootstrap, so it is refused."""
    project = tmp_path / "project"
    shutil.copytree(compared.parent, project)
    run = run_folder(project / "compare", *RUNS[1])
    (run / "val" / "per-image.npz").unlink()
    with pytest.raises(CompareError, match=rf"{run} holds a finished result without its per-image validation"):
        compare(**RUN_ARGS, data=str(data_yaml), project=str(project), plots=False)
