# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Smoke test of the BRA benchmark's PyTorch part (benchmarks/bench.py `run`) at a tiny size: structure and numerics."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench  # noqa: E402
from bra_baseline import GatherBRA  # noqa: E402
from measure import CLOCKS  # noqa: E402
from plan import BRA_VARIANTS, PATH_VARIANTS, QUICK, TARGETS, VARIANTS  # noqa: E402
from variants import DenseAttention, UnavoidableParts, floor_model  # noqa: E402

from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw  # noqa: E402

TINY_DIM = 64
TINY_SIDE = 8
DIVISIBLE_SIDES = (14, 21)  # multiples of their region size (side // 7)
TINY_IMGSZ = 64  # whole-model rows: P4 4x4, P5 2x2 (maps smaller than n_win)
TOL_FP64 = 1e-6
COMPARISON_HEADS = 4
COMPARISON_MAP = (5, 9)  # not square, not a multiple of n_win
TINY = replace(
    QUICK,
    name="smoke",
    dim=TINY_DIM,
    sizes=(TINY_SIDE,),
    repeats=1,
    model_sizes=(TINY_IMGSZ,),
    model_repeats=1,
    infer_per_step=1,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run the benchmark once at the tiny plan; return the results and the output folder."""
    out = tmp_path_factory.mktemp("bench")
    return bench.run(TINY, out, threads=1, tag="smoke", log=lambda _: None), out


def test_outputs_written(results):
    """The JSON file holds the returned results and the plot exists."""
    data, out = results
    assert json.loads((out / "smoke.json").read_text()) == json.loads(json.dumps(data))
    assert (out / "smoke.png").stat().st_size > 0


def test_json_keys(results):
    """Environment, plan, every variant per case, comparisons and target verdicts are recorded."""
    data, _ = results
    assert {"tag", "env", "plan", "module", "module_comparisons", "model", "targets", "sanity_fp32"} <= data.keys()
    assert {"torch", "threads", "cpu_model", "date", "device", "noise", "seconds", "cpu_seconds"} <= data["env"].keys()
    assert data["env"]["threads"] == 1
    cases = {(r["heads"], r["variant"]) for r in data["module"]}
    assert cases == {(h, v) for h in TINY.heads for v in VARIANTS}
    for row in data["module"]:
        times = {"fwd_ms", "fwdbwd_ms", "fwd_ms_cpu", "fwdbwd_ms_cpu"}
        assert {"size", "batch", "peak_mib", *times} <= row.keys()
        assert all(row[key] > 0 for key in (*times, "peak_mib"))
    ratios = {"fwd_x_floor", "fwdbwd_x_floor", "fwdbwd_x_dense", "speedup_vs_baseline"}
    comparisons = {(r["heads"], r["variant"]) for r in data["module_comparisons"]}
    assert comparisons == {(h, v) for h in TINY.heads for v in BRA_VARIANTS}
    for row in data["module_comparisons"]:
        assert {"mem_x_floor", *ratios, *(f"{r}_cpu" for r in ratios)} <= row.keys()
        expected = PATH_VARIANTS.get(row["variant"], "per_route")  # auto on CPU, 1-token regions: per_route
        assert row["path"] == row["path_train"] == expected
    assert {(r["imgsz"], r["model"]) for r in data["model"]} == {(TINY_IMGSZ, m) for m in ("bra", "floor", "rtdetr-l")}
    figures = {"train_ms", "infer_ms", "train_x_floor", "infer_x_floor", "train_x_rtdetr_l", "infer_x_rtdetr_l"}
    for row in data["model"]:
        assert {*figures, *(f"{f}_cpu" for f in figures)} <= row.keys()
    assert [t["target"] for t in data["targets"]] == [t.name for t in TARGETS]
    for verdict, target in zip(data["targets"], TARGETS):
        measured = target.section == "model"  # the module targets name 20x20 and 40x40 maps, not in the tiny plan
        for clock in CLOCKS:
            assert (verdict[f"worst{clock}"] is not None) == measured
            assert verdict[f"met{clock}"] in ((True, False) if measured else (None,))
    assert data["sanity_fp64_max_abs_error"] <= TOL_FP64
    assert {c["heads"] for c in data["sanity_fp32"]} == set(TINY.heads)


@pytest.mark.parametrize("side", DIVISIBLE_SIDES)
@pytest.mark.parametrize("heads", [1, 8])
def test_baseline_matches_module(side, heads):
    """The gather baseline computes our module's output on a divisible map (float64) with one state dict."""
    torch.manual_seed(0)
    ours = BiLevelRoutingAttention_nchw(TINY_DIM, num_heads=heads).double()
    baseline = GatherBRA(TINY_DIM, num_heads=heads).double()
    baseline.load_state_dict(ours.state_dict())
    x = torch.randn(2, TINY_DIM, side, side + 7, dtype=torch.float64)
    expected = ours(x)
    assert expected.abs().max() > TOL_FP64 * 1e3  # the comparison means something
    assert (baseline(x) - expected).abs().max() <= TOL_FP64


def bra_projections(bra: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v and the LCE term lepe(v) of a BRA's weights on x, written out with F.conv2d (float64 reference)."""
    q, k, v = F.conv2d(x, bra.qkv_linear.weight, bra.qkv_linear.bias).chunk(3, dim=1)
    side = bra.lepe.kernel_size[0]
    lepe = F.conv2d(v, bra.lepe.weight, bra.lepe.bias, padding=side // 2, groups=bra.dim)
    return q, k, v, lepe


def test_unavoidable_parts_compute_the_projections():
    """UnavoidableParts.like(bra) computes output_linear(v + lepe(v)) with the BRA's own weights (float64)."""
    torch.manual_seed(0)
    bra = BiLevelRoutingAttention_nchw(TINY_DIM, num_heads=COMPARISON_HEADS).double()
    x = torch.randn(2, TINY_DIM, *COMPARISON_MAP, dtype=torch.float64)
    _, _, v, lepe = bra_projections(bra, x)
    expected = F.conv2d(v + lepe, bra.output_linear.weight, bra.output_linear.bias)
    with torch.no_grad():
        assert (UnavoidableParts.like(bra)(x) - expected).abs().max() <= TOL_FP64


def test_dense_attention_matches_reference():
    """DenseAttention with a BRA state dict is softmax(q.k * dim**-0.5) attention per head over all tokens (float64)."""
    torch.manual_seed(0)
    bra = BiLevelRoutingAttention_nchw(TINY_DIM, num_heads=COMPARISON_HEADS).double()
    dense = DenseAttention(TINY_DIM, num_heads=COMPARISON_HEADS).double()
    dense.load_state_dict(bra.state_dict())
    x = torch.randn(2, TINY_DIM, *COMPARISON_MAP, dtype=torch.float64)
    q, k, v, lepe = bra_projections(bra, x)
    b, c, h, w = x.shape
    q, k, v_heads = (t.reshape(b, COMPARISON_HEADS, c // COMPARISON_HEADS, h * w) for t in (q, k, v))
    weights = torch.softmax(torch.einsum("bhdn,bhdm->bhnm", q, k) * c**-0.5, dim=-1)
    attended = torch.einsum("bhnm,bhdm->bhdn", weights, v_heads).reshape(b, c, h, w)
    expected = F.conv2d(attended + lepe, bra.output_linear.weight, bra.output_linear.bias)
    floor = F.conv2d(v + lepe, bra.output_linear.weight, bra.output_linear.bias)
    assert (expected - floor).abs().max() > TOL_FP64 * 1e3  # attention changes the output: the check means something
    with torch.no_grad():
        assert (dense(x) - expected).abs().max() <= TOL_FP64


def test_floor_model_replaces_every_bra():
    """floor_model swaps nested and top-level BRA modules, keeping Ultralytics' routing attributes."""
    top = BiLevelRoutingAttention_nchw(TINY_DIM)
    top.i, top.f = 1, -1
    model = nn.Sequential(nn.Sequential(BiLevelRoutingAttention_nchw(TINY_DIM)), top)
    floor, replaced = floor_model(model, BiLevelRoutingAttention_nchw)
    assert replaced == 2
    assert not any(isinstance(m, BiLevelRoutingAttention_nchw) for m in floor.modules())
    assert (floor[1].i, floor[1].f) == (1, -1)
    assert isinstance(model[1], BiLevelRoutingAttention_nchw)  # the original is untouched
