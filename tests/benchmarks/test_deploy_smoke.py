# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Smoke test of the deployment benchmark (benchmarks/deploy_bench.py, bench.run_deploy) at a tiny size, no timing.

Narrow models (the integration tests' narrow rtdetr-l-HGBlock_Biformer and the same YAML with HGBlock instead of
HGBlock_Biformer) exported at a static imgsz 64 (OpenVINO's conversion of a dynamic export takes several times longer;
tests/deploy checks dynamic exports), one timed run each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402
from deploy_bench import detections_difference, random_image, runtime_versions  # noqa: E402
from measure import CLOCKS  # noqa: E402
from model_bench import build_models  # noqa: E402
from plan import (  # noqa: E402
    BRA,
    BRA_ROUTING_UNMARKED,
    DEPLOY_FLOOR_LIMIT,
    DEPLOY_FULL,
    DEPLOY_TARGETS,
    EXECUTORCH,
    FLOOR,
    LITERT,
    MNN,
    ONNXRUNTIME,
    OPENVINO,
    PLAIN,
    DeployPlan,
    ExportKind,
)
from variants import UnavoidableParts  # noqa: E402

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw  # noqa: E402

NARROW_BRA = ROOT / "tests/integration/assets/rtdetr-narrow-HGBlock_Biformer.yaml"
TINY_IMGSZ = 64  # P4 4x4: BRA routes 4 of 16 one-token regions
TINY = ExportKind(TINY_IMGSZ)
TOL = 1e-5  # exported fp32 detections against PyTorch's (boxes normalized, scores in [0, 1]); measured ~1e-7
BF16_TOL = 0.02  # the same at OpenVINO's default bf16 (AVX512-BF16/AMX CPUs): measured 1.6e-3 to 2.7e-3 (AMX Xeon)
SEPARATION = 100  # an export is this many times closer to its own model's detections than to another model's
MODELS = (BRA, FLOOR, PLAIN)
RUNTIMES = (ONNXRUNTIME, OPENVINO, MNN, EXECUTORCH, LITERT)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path, DeployPlan]:
    """Run the deployment benchmark once on the narrow models; return results, output and export folders, plan."""
    root = tmp_path_factory.mktemp("deploy")
    plain_yaml = root / "rtdetr-narrow.yaml"
    plain_yaml.write_text(NARROW_BRA.read_text().replace("HGBlock_Biformer", "HGBlock"))
    plan = DeployPlan(
        "smoke",
        exports=(TINY,),
        warmup=1,
        repeats=1,
        simplify=False,
        bra_yaml=str(NARROW_BRA),
        plain_yaml=str(plain_yaml),
    )
    results = bench.run_deploy(plan, root / "out", "smoke", log=lambda _: None, export_dir=root / "exports")
    return results, root / "out", root / "exports", plan


def onnx_outputs(exports: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run every exported ONNX model on image with onnxruntime's plain API (not the harness's runner)."""
    import onnxruntime

    outputs = {}
    for name in MODELS:
        path = exports / f"{name}-{TINY.name}.onnx"
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs[name] = session.run(None, {session.get_inputs()[0].name: image})[0]
    return outputs


def test_detections_difference_matches_whole_rows():
    """Reordered detections differ by 0; detections whose boxes or classes moved to other rows do not match, although
    every column holds the same values (a per-column sort would call them equal)."""
    rng = np.random.default_rng(0)
    a = np.concatenate((rng.random((2, 300, 5)), rng.integers(0, 3, (2, 300, 1))), -1).astype(np.float32)
    assert detections_difference(a[:, rng.permutation(300)], a) == 0
    moved = a.copy()
    moved[:, :, :4] = a[:, rng.permutation(300), :4]  # boxes moved between detections
    assert detections_difference(moved, a) > 0.05
    assert np.array_equal(np.sort(moved, axis=-2), np.sort(a, axis=-2))  # what a per-column sort would see
    tail = a.copy()
    tail[:, :5] = 9.0  # 5 of 300 swapped in at a near-tie: within the unmatched 3 %
    assert detections_difference(tail, a) == 0


def test_full_plan_times_breadth_runtimes_static_up_to_640():
    """`make bench`'s deploy part: onnxruntime and OpenVINO at every kind (1280 included), MNN and ExecuTorch at the
    static kinds up to 640 px, LiteRT at static 320 only (the matrix checks those runtimes static)."""
    assert DEPLOY_FULL.runtimes == RUNTIMES
    timed = {(rt, kind.name) for kind in DEPLOY_FULL.exports for rt in RUNTIMES if DEPLOY_FULL.serves(rt, kind)}
    kinds = {"static-640", "static-320", "dynamic-640", "static-1280"}
    static = {(rt, k) for rt in (MNN, EXECUTORCH) for k in ("static-640", "static-320")} | {(LITERT, "static-320")}
    assert timed == {(rt, k) for rt in (ONNXRUNTIME, OPENVINO) for k in kinds} | static


def test_runtime_versions_name_every_installed_runtime():
    """Every runtime of the plan is installed here (`make venv`), and its version is found under its package's name
    (LiteRT's is ai-edge-litert)."""
    versions = runtime_versions()
    assert set(versions) == set(RUNTIMES)
    assert "not installed" not in versions.values(), versions


@pytest.mark.slow
def test_json_written(deployed):
    """The JSON file holds the returned results, with environment, runtime versions, plan and input note."""
    data, out, _, plan = deployed
    assert json.loads((out / "smoke.json").read_text()) == json.loads(json.dumps(data))
    assert {"tag", "env", "plan", "input", "rows", "targets"} <= data.keys()
    assert {"torch", "threads", *RUNTIMES, "load_avg_start", "load_avg_end", "seconds"} <= set(data["env"])
    assert data["env"]["threads"] == plan.threads == 1
    assert json.loads(json.dumps(data["plan"]["exports"])) == [{"imgsz": TINY_IMGSZ, "dynamic": False}]


@pytest.mark.slow
def test_rows_and_ratios(deployed):
    """One row per runtime and model; every ratio is the ratio of the recorded medians."""
    data, *_ = deployed
    rows = {(r["runtime"], r["model"]): r for r in data["rows"]}
    expected = {(rt, m) for rt in RUNTIMES for m in MODELS} | {(OPENVINO, BRA_ROUTING_UNMARKED)}
    assert len(rows) == len(data["rows"]) and rows.keys() == expected
    for (runtime, _), row in rows.items():
        assert (row["export"], row["imgsz"], row["dynamic"], row["precision"]) == (TINY.name, TINY_IMGSZ, False, "fp32")
        assert row["runtime_precision"] in {"fp32", "bf16", "fp16", "mnn-low"}
        for clock in CLOCKS:
            assert row[f"latency_ms{clock}"] > 0
            for ref, suffix in ((FLOOR, "floor"), (PLAIN, "rtdetr_l")):
                expected = round(row[f"latency_ms{clock}"] / rows[runtime, ref][f"latency_ms{clock}"], 3)
                assert row[f"latency_x_{suffix}{clock}"] == expected


@pytest.mark.slow
def test_targets_read_the_bra_rows(deployed):
    """One verdict per runtime: the BRA model's ratio to its floor model against the limit."""
    data, *_ = deployed
    assert [t["target"] for t in data["targets"]] == [t.name for t in DEPLOY_TARGETS]
    for verdict, target in zip(data["targets"], DEPLOY_TARGETS):
        (bra_row,) = [r for r in data["rows"] if r["model"] == BRA and r["runtime"] == target.where["runtime"]]
        for clock in CLOCKS:
            assert verdict[f"worst{clock}"] == bra_row[f"latency_x_floor{clock}"]
            assert verdict[f"met{clock}"] == (bra_row[f"latency_x_floor{clock}"] <= DEPLOY_FLOOR_LIMIT)


@pytest.mark.slow
def test_rows_say_the_precision_they_ran_at(deployed):
    """Each row names the precision it was timed at: fp32 for onnxruntime, OpenVINO's own default on this CPU; its
    error at that precision is within that precision's bound (bf16 rows exist only on CPUs with bf16)."""
    import openvino

    default = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    expected = {
        ONNXRUNTIME: "fp32",
        OPENVINO: {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[default],
        MNN: "mnn-low",  # AutoBackend's setting; fp32 arithmetic on x86 (the bound below holds it to TOL)
        EXECUTORCH: "fp32",
        LITERT: "fp32",
    }
    data, *_ = deployed
    for row in data["rows"]:
        assert row["runtime_precision"] == expected[row["runtime"]], row
        bound = BF16_TOL if row["runtime_precision"] in {"bf16", "fp16"} else TOL
        assert row["runtime_max_abs_error_vs_pytorch"] <= bound, row


@pytest.mark.slow
def test_exports_compute_their_own_models(deployed):
    """Each export computes its PyTorch model's detections, and the three models' detections differ.

    The harness's recorded errors (every runtime) are against the PyTorch model of the row's name; the ONNX files are
    also run here directly against models rebuilt with the harness's seed, so a mix-up of names or files fails.
    """
    data, _, exports, plan = deployed
    assert all(row["check_precision"] in {"fp32", "mnn-high"} for row in data["rows"])
    assert all(row["max_abs_error_vs_pytorch"] <= TOL for row in data["rows"])
    models = build_models(torch.device("cpu"), plan.bra_yaml, plan.plain_yaml)  # seeded: the exported weights
    assert any(isinstance(m, BiLevelRoutingAttention_nchw) for m in models[BRA].modules())
    assert not any(isinstance(m, BiLevelRoutingAttention_nchw) for m in models[FLOOR].modules())
    assert any(isinstance(m, UnavoidableParts) for m in models[FLOOR].modules())
    image = random_image(TINY_IMGSZ)
    expected = {}
    for name, model in models.items():
        with torch.no_grad():
            expected[name] = model.eval()(torch.from_numpy(image))[0].numpy()
    for name, detections in onnx_outputs(exports, image).items():
        errors = {other: detections_difference(detections, e) for other, e in expected.items()}
        nearest_other = min(v for other, v in errors.items() if other != name)
        assert errors[name] <= TOL, name
        assert nearest_other > max(TOL, SEPARATION * errors[name]), name  # the recorded errors tell models apart


@pytest.mark.slow
def test_unmarked_row_is_the_bra_model_without_routing_marks(deployed):
    """The OpenVINO IR of the BRA row carries the f32 routing marks; that of BRA_ROUTING_UNMARKED, like the floor
    model's, none, and it still computes the BRA model (its fp32 check passes against the BRA model's detections)."""
    data, _, exports, _ = deployed
    irs = {
        name: list(exports.glob(f"{name}-{TINY.name}_openvino_model/*.xml"))
        for name in (BRA, BRA_ROUTING_UNMARKED, FLOOR)
    }
    marks = {
        name: sum(xml.read_text().count("DisablePrecisionConversion") for xml in files) for name, files in irs.items()
    }
    assert all(len(files) == 1 for files in irs.values()), irs
    assert marks[BRA] > 0 and marks[BRA_ROUTING_UNMARKED] == marks[FLOOR] == 0, marks
    (row,) = [r for r in data["rows"] if r["model"] == BRA_ROUTING_UNMARKED]
    assert row["runtime"] == OPENVINO and row["max_abs_error_vs_pytorch"] <= TOL
