# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Bad input stops a comparison before any training, with a message naming the argument and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ultralytics.biformer.compare import CompareError, compare
from ultralytics.biformer.compare.__main__ import parse
from ultralytics.biformer.compare.exports import check_formats
from ultralytics.biformer.compare.inputs import check_seeds, entries

from .conftest import NARROW, ROOT


def _refused(tmp_path: Path, **kwargs) -> str:
    """Run compare with ``kwargs``, assert it raises CompareError and wrote nothing; return the message."""
    project = tmp_path / "project"
    kwargs = {"models": [str(NARROW)], "epochs": 1, "imgsz": 64, "project": str(project), **kwargs}
    with pytest.raises(CompareError) as error:
        compare(**kwargs)
    assert not project.exists()  # nothing trained, not even a run folder
    return str(error.value)


@pytest.mark.parametrize(
    "models, message",
    [
        (
            ["rtdetr-l-Biformr.yaml"],
            "models: unknown model 'rtdetr-l-Biformr.yaml': no such file, and no model YAML of that name ships with "
            "Ultralytics (RT-DETR YAMLs: ",
        ),
        (
            ["best.onnx"],
            "models: 'best.onnx' is neither a model YAML nor a checkpoint (allowed suffixes: .yaml, .yml, .pt)",
        ),
        (["missing/best.pt"], "models: checkpoint 'missing/best.pt' not found (give the path of a local .pt file)"),
        ([], "models: give at least one model, e.g. models=rtdetr-l.yaml,rtdetr-l-Biformer.yaml,"),
        (["yolov8n-cls.yaml"], "models: yolov8n-cls.yaml is a classify model; compare trains detection models"),
    ],
)
def test_bad_model(tmp_path: Path, data_yaml: Path, models: list[str], message: str):
    """Unknown names, other file types, missing checkpoints, no model and non-detection models are refused."""
    text = _refused(tmp_path, models=models, data=str(data_yaml))
    assert text.startswith(message), text
    if "unknown model" in message:
        assert "rtdetr-l-Biformer.yaml, rtdetr-l-HGBlock_Biformer.yaml" in text and "rtdetr-l.yaml" in text


def test_class_count_that_cannot_be_set(tmp_path: Path, data_yaml: Path):
    """A model whose head has a fixed class count is refused, even after a good model (which is not trained)."""
    fixed = tmp_path / "rtdetr-fixed-nc.yaml"
    source = NARROW.read_text()
    assert "RTDETRDecoder, [nc," in source
    fixed.write_text(source.replace("RTDETRDecoder, [nc,", "RTDETRDecoder, [5,"))
    text = _refused(tmp_path, models=[str(NARROW), str(fixed)], data=str(data_yaml))
    assert text == (
        f"models: the class count of {fixed} cannot be set: its head RTDETRDecoder has 5 classes whatever nc is, "
        "the dataset has 3 (write `nc` instead of a number in the head row of the model YAML)"
    )


def test_missing_dataset(tmp_path: Path, data_yaml: Path):
    """No dataset, a missing dataset YAML, another file type and a YAML whose images are missing are refused."""
    assert _refused(tmp_path) == "data: give a detection dataset YAML, e.g. data=path/to/data.yaml"
    missing = tmp_path / "nowhere" / "data.yaml"
    assert _refused(tmp_path, data=str(missing)) == f"data: dataset YAML '{missing}' not found"
    wrong_type = "data: 'images.zip' is not a dataset YAML (allowed suffixes: .yaml, .yml)"
    assert _refused(tmp_path, data="images.zip") == wrong_type
    no_images = tmp_path / "no-images.yaml"
    no_images.write_text(data_yaml.read_text().replace(str(data_yaml.parent), str(tmp_path / "gone")))
    text = _refused(tmp_path, data=str(no_images))
    assert text.startswith(f"data: {no_images} is not a usable detection dataset: ") and "not found" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.1}, "lr: not an Ultralytics train argument; did you mean lrf or lr0?"),
        ({"name": "mine"}, "name: set by compare itself (each model trains afresh in PROJECT/compare/<name>)"),
        ({"imgsz": [64, 64]}, "imgsz: a positive int, got [64, 64]"),
        ({"latency_rounds": 0}, "latency_rounds: a positive int, got 0"),
        ({"epochs": "ten"}, "train arguments: 'epochs=ten' is of invalid type str"),
        ({"seeds": 0}, "seeds: a count (seeds=3) or a list of seeds (seeds=0,3,7), got 0"),
        ({"seeds": "0,x"}, "seeds: a count (seeds=3) or a list of seeds (seeds=0,3,7), got '0,x'"),
        ({"seeds": [1, 1]}, "seeds: each seed once, got [1, 1]"),
        ({"seeds": [0, 3], "seed": 2}, "seed=2 with seeds=[0, 3]: give a count from a first seed, or a list"),
        ({"seed": -1}, "seed: a non-negative int, got -1"),
        ({"formats": "onnx,tflite"}, "formats: tflite not in the parity matrix (allowed: torchscript, onnx, openvino)"),
        ({"bootstrap": 0}, "bootstrap: a positive int, got 0"),
        ({"bootstrap_seed": "x"}, "bootstrap_seed: a non-negative int, got 'x'"),
    ],
)
def test_bad_train_arguments(tmp_path: Path, data_yaml: Path, kwargs: dict, message: str):
    """Unknown, reserved, non-square and mistyped arguments are refused."""
    text = _refused(tmp_path, data=str(data_yaml), **kwargs)
    assert text.startswith(message), text


@pytest.mark.slow
def test_command_line_exits_with_the_message(tmp_path: Path, data_yaml: Path):
    """`python -m ultralytics.biformer.compare` prints the message and exits 1 on bad input; arguments are key=value."""
    for args, message in (
        (["models=rtdetr-x-nope.yaml", f"data={data_yaml}"], "compare: models: unknown model 'rtdetr-x-nope.yaml'"),
        (["epochs"], "compare: 'epochs': arguments are key=value, e.g. data=path/to/data.yaml epochs=100"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ultralytics.biformer.compare", *args, f"project={tmp_path}"],
            capture_output=True,
            text=True,
            env=os.environ,
        )
        assert result.returncode == 1 and message in result.stderr.splitlines()[-1], result.stderr[-2000:]
        assert not (tmp_path / "compare").exists()


def test_make_compare_passes_variables_through():
    """`make compare` hands DATA, MODELS, EPOCHS, IMGSZ, BATCH, DEVICE, WORKERS, PROJECT, SEEDS, FORMATS and ARGS to
    the command."""
    result = subprocess.run(
        [
            *("make", "-n", "--no-print-directory", "compare", "DATA=/d/data.yaml", "MODELS=a.yaml,b.pt", "EPOCHS=7"),
            *("IMGSZ=96", "BATCH=2", "DEVICE=0", "WORKERS=3", "PROJECT=/p", "SEEDS=0,3,7", "FORMATS=onnx,openvino"),
            "ARGS=lr0=0.001 patience=5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    command = " ".join(result.stdout.replace("\\\n", " ").split())
    assert (
        "-m ultralytics.biformer.compare models=a.yaml,b.pt data=/d/data.yaml epochs=7 imgsz=96 batch=2 device=0 "
        "workers=3 project=/p seeds=0,3,7 formats=onnx,openvino lr0=0.001 patience=5"
    ) in command


def test_run_names_unique_whatever_the_file_names(tmp_path: Path):
    """Repeated stems get -2, -3, ... past any name already taken: a/best.pt, b/best-2.pt, c/best.pt cannot collide."""
    specs = []
    for folder, name in (("a", "best.pt"), ("b", "best-2.pt"), ("c", "best.pt"), ("d", "best.pt")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"")
        specs.append(str(tmp_path / folder / name))
    assert [e.name for e in entries(specs)] == ["best", "best-2", "best-3", "best-4"]


@pytest.mark.parametrize(
    "seeds, seed, expected",
    [(1, None, [0]), (3, 5, [5, 6, 7]), ("2", None, [0, 1]), ("0,3,7", None, [0, 3, 7]), ([4, 2], None, [4, 2])],
)
def test_seeds_are_a_count_from_seed_or_a_list(seeds, seed, expected: list[int]):
    """seeds=N trains seed, seed+1, ... seed+N-1 (seed defaults to 0); a list is taken as given, in order."""
    assert check_seeds(seeds, seed) == expected


def test_command_line_keeps_seed_and_format_lists():
    """On the command line seeds=0,3,7 and formats=onnx,openvino stay lists for compare, not tuples or numbers."""
    assert parse(["seeds=0,3,7", "formats=onnx,openvino", "seed=2"]) == {
        "seeds": "0,3,7",
        "formats": "onnx,openvino",
        "seed": 2,
    }
    assert check_formats("ONNX, openvino,onnx") == ["onnx", "openvino"] and check_formats(None) == []
