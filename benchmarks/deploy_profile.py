# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Where the deployed BRA model's time goes: an onnxruntime op profile of its BRA layers against its floor model's.

The BRA model and its floor model (`variants.UnavoidableParts` in place of each BiLevelRoutingAttention_nchw, same
weights elsewhere) are exported with Ultralytics' exporter as static ONNX at each image size and run with onnxruntime's
profiler, one thread. Every node is attributed by its name, which the exporter derives from the module path
("/model.5/cv/MatMul"): nodes inside a BRA layer (or the floor model's replacement) against the rest of the graph, and
the BRA layers' time by op type. The difference of the two layer totals is what the BRA model pays above its floor.
onnxruntime profiles the graph it optimized: a node it fuses or inserts (a layout reorder) may carry no module's name,
and then counts as the rest of the graph.

    python benchmarks/deploy_profile.py [--imgsz 640 320 1280] [--runs 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from deploy_bench import CPU, export, exportable, random_image
from model_bench import build_models
from plan import BRA, FLOOR, FULL, MODEL_BRA, MODEL_PLAIN, ONNXRUNTIME, ExportKind
from report import environment, host_tag

LAYER_TYPES = ("BiLevelRoutingAttention_nchw", "UnavoidableParts")  # what the profile attributes to "the layers"


def layer_scopes(model: torch.nn.Module) -> tuple[str, ...]:
    """ONNX node-name prefixes of the model's BRA layers or their floor replacements, as the exporter names scopes:
    module names joined by "/", a container's index kept on its name ("model.5.m.0" -> "/model.5/m.0/")."""
    scopes = []
    for name, m in model.named_modules():
        if type(m).__name__ in LAYER_TYPES:
            parts = []
            for part in name.split("."):
                if part.isdigit() and parts:
                    parts[-1] += f".{part}"
                else:
                    parts.append(part)
            scopes.append("/" + "/".join(parts) + "/")
    return tuple(scopes)


def profile_onnx(path: Path, image: np.ndarray, runs: int, folder: Path) -> dict[str, float]:
    """Mean milliseconds per run of every node of an ONNX model in onnxruntime's CPU provider, one thread.

    Args:
        path (Path): The .onnx file.
        image (np.ndarray): Input of shape (1, 3, H, W).
        runs (int): Profiled runs after one warm-up run (each node's first event, the warm-up's, is left out).
        folder (Path): Where onnxruntime writes its profile file.

    Returns:
        (dict[str, float]): "<node name>|<op type>" to the node's mean duration per run, in milliseconds.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / path.stem)
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image}
    for _ in range(runs + 1):
        session.run(None, feed)
    samples = defaultdict(list)
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            samples[f"{event['name'].removesuffix('_kernel_time')}|{event['args']['op_name']}"].append(event["dur"])
    return {key: sum(durations[1:]) / 1000 / runs for key, durations in samples.items()}


def attribute(durations: dict[str, float], scopes: tuple[str, ...]) -> dict:
    """Split a profile into the layers' nodes and the rest, and the layers' time by op type.

    Args:
        durations (dict[str, float]): From `profile_onnx`.
        scopes (tuple[str, ...]): From `layer_scopes`.

    Returns:
        (dict): total_ms, layers_ms, rest_ms and layers_by_op (op type to ms, largest first).
    """
    by_op, layers, total = defaultdict(float), 0.0, sum(durations.values())
    for key, ms in durations.items():
        node, op = key.rsplit("|", 1)
        if node.startswith(scopes):
            layers += ms
            by_op[op] += ms
    ranked = dict(sorted(((op, round(ms, 2)) for op, ms in by_op.items()), key=lambda item: -item[1]))
    return {"total_ms": round(total, 2), "layers_ms": round(layers, 2), "rest_ms": round(total - layers, 2),
            "layers_by_op": ranked}  # fmt: skip


def profile(
    sizes: list[int], runs: int, folder: Path, bra_yaml: str = MODEL_BRA, plain_yaml: str = MODEL_PLAIN
) -> list[dict]:
    """Profile the BRA model of bra_yaml and its floor model at every size.

    Args:
        sizes (list[int]): Static export image sizes.
        runs (int): Profiled runs per model and size.
        folder (Path): Where the exports and profile files go.
        bra_yaml (str): Model YAML with BiLevelRoutingAttention_nchw layers.
        plain_yaml (str): The plain model's YAML (built by `build_models`, not profiled).

    Returns:
        (list[dict]): One row per (size, model): imgsz, model and `attribute`'s split.
    """
    models = build_models(CPU, bra_yaml, plain_yaml)
    if isinstance(models, str):
        raise SystemExit(models)
    rows = []
    for imgsz in sizes:
        for name in (BRA, FLOOR):
            path = export(exportable(models[name], bra_yaml), ONNXRUNTIME, ExportKind(imgsz), True, folder / name)
            split = attribute(profile_onnx(path, random_image(imgsz), runs, folder), layer_scopes(models[name]))
            rows.append({"imgsz": imgsz, "model": name, **split})
    return rows


def main(argv: list[str] | None = None) -> None:
    """Profile, print the table and write `<out>/<host tag>-deploy-profile.json`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 320, 1280], help="static export sizes")
    parser.add_argument("--runs", type=int, default=5, help="profiled runs per model and size (after one warm-up)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="deploy-profile-") as folder:
        rows = profile(args.imgsz, args.runs, Path(folder))
    env = environment(CPU, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{host_tag(CPU, 1, FULL)}-deploy-profile.json"
    out.write_text(json.dumps({"env": env, "runs": args.runs, "rows": rows}, indent=1) + "\n")
    for row in rows:
        top = ", ".join(f"{op} {ms}" for op, ms in list(row["layers_by_op"].items())[:6])
        print(f"{row['imgsz']} {row['model']}: total {row['total_ms']} ms, layers {row['layers_ms']} ms ({top})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
