# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""OpenVINO bf16 against f32 for RT-DETR checkpoints: score errors and, for BiFormer models, how many routes change.

Usage:
    python benchmarks/openvino_bf16.py best.pt [more.pt ...] [--images DIR] [--imgsz 320] [--out FILE.json]

Each checkpoint is exported with Ultralytics' exporter to OpenVINO (`dynamic=True` at --imgsz) twice: as the exporter
writes it (BRA routing marked to stay f32, patch 0007) and with the marks left out. Each export is compiled at the CPU
plugin's default precision, which must be bf16 (CPUs with AVX512-BF16 or AMX; elsewhere the script stops and says
so), and pinned to f32, and runs on every image (--images, default Ultralytics' own sample images) at each size of
SIZES. Reported per model and export:
- score error: max difference of the sorted scores relative to the largest, against the fused fp32 PyTorch model
  (the measure of `tests/deploy`), per input and its mean and max over images and sizes, at bf16 and at f32; also its
  97 % quantile (ignoring the largest 3 % of rank differences);
- routes changed: the share of routed regions (every BRA layer's top-k indices) that differ between the bf16 and the
  f32 run, from a second compile with the top-k indices added as outputs. OpenVINO keeps a graph's tail before an
  output in f32 back to the previous matmul, so in that compile the unmarked export's top-k and the ops before it run
  f32 too (its affinity matmul stays bf16): for the unmarked export the share is a lower bound. The score errors come
  from the IR as exported.
Writes a JSON file when --out is given and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch

from plan import ROUTING_MARKS

SIZES = ((320, 320), (640, 640), (480, 640), (640, 480), (416, 352))  # (height, width), as the deploy matrix
SCORE = 4  # score column of an (N, 300, 6) RT-DETR output
EXPORTS = ("marked", "unmarked")
RANK_QUANTILE = 0.97  # also reported: the score error ignoring the 3 % largest rank differences (9 of 300 swaps)


def score_error(actual: np.ndarray, expected: np.ndarray, quantile: float = 1.0) -> float:
    """A quantile (default the max) of the abs differences of the sorted scores, relative to the largest expected
    score (outputs (N, Q, 6))."""
    diff = np.quantile(np.abs(np.sort(actual[..., SCORE], -1) - np.sort(expected[..., SCORE], -1)), quantile)
    return float(diff / np.abs(expected[..., SCORE]).max())


def load_images(folder: Path | None) -> list[np.ndarray]:
    """BGR images of a folder (png, jpg), or Ultralytics' sample images."""
    from ultralytics.utils import ASSETS

    paths = sorted(p for p in Path(folder or ASSETS).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return [cv2.imread(str(p)) for p in paths]


def to_input(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """An image resized to (h, w) as the (1, 3, h, w) RGB float input in [0, 1] exported models take."""
    return cv2.resize(image, (w, h))[None, ..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255


def export(weights: Path, imgsz: int, folder: Path, marked: bool) -> Path:
    """Export a copy of weights to OpenVINO (dynamic), with or without the routing marks; return the .xml file."""
    from ultralytics import RTDETR

    copy = folder / ("marked" if marked else "unmarked") / weights.name
    copy.parent.mkdir(parents=True)
    shutil.copyfile(weights, copy)
    with contextlib.nullcontext() if marked else mock.patch(ROUTING_MARKS, return_value=0):
        exported = RTDETR(copy).export(format="openvino", imgsz=imgsz, dynamic=True, batch=1, device="cpu")
    return next(Path(exported).glob("*.xml"))


def run(
    xml: Path, model: torch.nn.Module, inputs: list[np.ndarray], pin_f32: bool, routes: bool
) -> list[tuple[np.ndarray, list]]:
    """Compile an IR (default precision, or f32), with the BRA top-k indices as extra outputs if asked; run every input.

    Returns:
        (list[tuple[np.ndarray, list]]): Per input, the detections and the routed-region indices of each BRA layer
            (empty without `routes`).
    """
    import openvino as ov

    from ultralytics.nn.AddModules.openvino_routing import ROUTING_LAST_OP, routing_nodes

    core = ov.Core()
    ov_model = core.read_model(xml)
    tops = [n for n in routing_nodes(ov_model, model) if n.get_type_name() == ROUTING_LAST_OP] if routes else []
    if tops:
        ov_model.add_outputs([t.output(1) for t in tops])
    compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"} if pin_f32 else {})
    request = compiled.create_infer_request()
    results = []
    for x in inputs:
        request.infer({0: x})
        outputs = [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]
        results.append((outputs[0], outputs[len(outputs) - len(tops) :]))
    return results


def measure(weights: Path, images: list[np.ndarray], imgsz: int) -> dict:
    """The score errors and changed routes of one checkpoint's marked and unmarked exports (see the module doc)."""
    from ultralytics import RTDETR
    from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw

    model = RTDETR(weights).model.float().eval()
    fused = copy.deepcopy(model).fuse(verbose=False)
    inputs = [to_input(image, h, w) for image in images for h, w in SIZES]
    with torch.inference_mode():
        expected = [fused(torch.from_numpy(x))[0].numpy() for x in inputs]
    result = {
        "model": str(weights),
        "bra_layers": sum(isinstance(m, BiLevelRoutingAttention_nchw) for m in model.modules()),
    }
    with tempfile.TemporaryDirectory() as folder:
        for name in EXPORTS if result["bra_layers"] else EXPORTS[:1]:  # without BRA both exports are the same
            xml = export(weights, imgsz, Path(folder), marked=name == "marked")
            # scores from the IR as exported; routes from a second compile with the top-k as outputs
            bf16, f32 = (run(xml, model, inputs, pin_f32=pin, routes=False) for pin in (False, True))
            bf16_routes, f32_routes = (run(xml, model, inputs, pin_f32=pin, routes=True) for pin in (False, True))
            changed = sum(
                int((a != b).sum()) for (_, ra), (_, rb) in zip(bf16_routes, f32_routes) for a, b in zip(ra, rb)
            )
            routes = sum(a.size for _, ra in f32_routes for a in ra)
            errors = {
                f"{p}_score_error{q}": [score_error(out, e, quantile) for (out, _), e in zip(runs, expected)]
                for p, runs in (("bf16", bf16), ("f32", f32))
                for q, quantile in (("", 1.0), ("_q97", RANK_QUANTILE))
            }
            result[name] = {
                **{
                    f"{k}_{stat}": float(fn(v))
                    for k, v in errors.items()
                    for stat, fn in (("mean", np.mean), ("max", np.max))
                },
                **{f"{k}_per_input": [round(e, 5) for e in v] for k, v in errors.items()},
                "routes_changed": changed,
                "routes": routes,
            }
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, check that OpenVINO infers in bf16 here, measure every checkpoint, report."""
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="+", type=Path, help="RT-DETR checkpoints (.pt)")
    parser.add_argument("--images", type=Path, help="folder of images (default: Ultralytics' sample images)")
    parser.add_argument("--imgsz", type=int, default=320, help="export size (default 320)")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    if precision != "bf16":
        raise SystemExit(f"openvino_bf16: OpenVINO infers in {precision} on this CPU (bf16 needs AVX512-BF16 or AMX)")
    images = load_images(args.images)
    results = {"openvino": ov.__version__, "sizes": SIZES, "images": len(images), "imgsz": args.imgsz, "models": []}
    for weights in args.weights:
        results["models"].append(measure(weights, images, args.imgsz))
    print("| model | export | bf16 score error mean / max | 97 % quantile | f32 score error max | routes changed |")
    print("|---|---|---|---|---|---|")
    for r in results["models"]:
        for name in (n for n in EXPORTS if n in r):
            m = r[name]
            share = (
                f"{m['routes_changed']} / {m['routes']} ({m['routes_changed'] / m['routes']:.0%})"
                if m["routes"]
                else "-"
            )
            print(
                f"| {Path(r['model']).stem} | {name} | {m['bf16_score_error_mean']:.3g} / "
                f"{m['bf16_score_error_max']:.3g} | {m['bf16_score_error_q97_mean']:.3g} / "
                f"{m['bf16_score_error_q97_max']:.3g} | {m['f32_score_error_max']:.2g} | {share} |"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
