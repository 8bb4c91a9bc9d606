# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Deployment benchmark: CPU latency of the exported whole models in onnxruntime, OpenVINO, MNN, ExecuTorch and LiteRT.

rtdetr-l-HGBlock_Biformer, its floor model (each BiLevelRoutingAttention_nchw replaced by `variants.UnavoidableParts`,
same weights) and rtdetr-l, all nc=1 with seeded random weights, are exported through Ultralytics' own exporter
(`Model.export`) once per export kind and runtime into a folder of their own, loaded with one inference thread, and
timed on one random image, the models interleaved in every repeat after a warm-up. For OpenVINO the BRA model is also
exported without its f32 routing marks (`plan.BRA_ROUTING_UNMARKED`): their latency cost. Each exported model's output
on that image is compared with its PyTorch model's, at fp32 and at the precision it is timed at. MNN, ExecuTorch and
LiteRT run as Ultralytics' AutoBackend configures them (MNN at precision "low", ExecuTorch through its XNNPACK
delegate, LiteRT's interpreter with its default XNNPACK delegate), at the plan's thread count, and only at the static
export kinds `DeployPlan.serves` names.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import torch
from torch import nn

from measure import add_samples, median_ms, rotation, timed
from model_bench import build_models, reference_ratios
from plan import (
    BRA,
    BRA_ROUTING_UNMARKED,
    EXECUTORCH,
    FLOOR,
    FP32,
    LITERT,
    MNN,
    ONNXRUNTIME,
    OPENVINO,
    PLAIN,
    ROUTING_MARKS,
    SEED,
    DeployPlan,
    ExportKind,
)

CPU = torch.device("cpu")
EXPORT_FORMATS = {ONNXRUNTIME: "onnx", OPENVINO: "openvino", MNN: "mnn", EXECUTORCH: "executorch", LITERT: "litert"}
OPENVINO_DEVICE = "CPU"
OPENVINO_HINT = "LATENCY"
OPENVINO_PRECISIONS = {"f32": FP32, "bf16": "bf16", "f16": "fp16"}  # OpenVINO's element type names to ours
MNN_PRECISION = "low"  # what AutoBackend asks MNN for: fp16 where the CPU has it (ARM), fp32 on x86
MNN_CHECK_PRECISION = "high"
EXPORT_ATTRIBUTES = ("args", "task")  # what Ultralytics' Model sets on a model built from a YAML, and export reads
INPUT_NOTE = (
    "One uniform random image in [0, 1) (seeded), the same for every model, and random (seeded) weights: the "
    "latency of these dense graphs does not depend on the pixel values or weights, except through BRA's routing "
    "choices, which change which regions are read but not how many."
)

Runner = Callable[[np.ndarray], np.ndarray]


def exportable(model: nn.Module, cfg: str) -> object:
    """Wrap a detection model in Ultralytics' `RTDETR`, whose `export()` runs Ultralytics' own exporter on it.

    Args:
        model (nn.Module): An RTDETRDetectionModel (or its floor model).
        cfg (str): The model YAML it was built from.

    Returns:
        (ultralytics.RTDETR): The wrapper, holding `model` (which receives the wrapper model's EXPORT_ATTRIBUTES).
    """
    from ultralytics import RTDETR

    wrapper = RTDETR(cfg)  # builds a model of that YAML only to replace it
    for key in EXPORT_ATTRIBUTES:
        setattr(model, key, getattr(wrapper.model, key))
    wrapper.model = model
    return wrapper


def export(wrapper: object, runtime: str, kind: ExportKind, simplify: bool, stem: Path) -> Path:
    """Export a wrapped model for a runtime with Ultralytics' exporter.

    Args:
        wrapper (ultralytics.RTDETR): From `exportable`.
        runtime (str): A key of EXPORT_FORMATS.
        kind (ExportKind): Image size and static or dynamic input size.
        simplify (bool): Run onnxslim (ONNX exports only).
        stem (Path): Output name without suffix; the exporter names its files after the model's `pt_path`.

    Returns:
        (Path): The .onnx, .mnn or .tflite file, the OpenVINO .xml file, or the ExecuTorch .pte file.
    """
    wrapper.model.pt_path = str(stem.with_suffix(".pt"))
    options = {"simplify": simplify} if runtime == ONNXRUNTIME else {}  # the exporter rejects it elsewhere
    exported = Path(wrapper.export(format=EXPORT_FORMATS[runtime], imgsz=kind.imgsz, dynamic=kind.dynamic, **options))
    return exported if exported.is_file() else next(exported.glob("*.pte"), exported / f"{stem.name}.xml")


def onnxruntime_runner(path: Path, threads: int) -> tuple[Runner, str]:
    """Load an ONNX model into an onnxruntime CPU session with `threads` intra-op and inter-op threads.

    Args:
        path (Path): The .onnx file.
        threads (int): Threads.

    Returns:
        runner (Runner): Image of shape (1, 3, H, W) to the first output.
        precision (str): The precision the session computes in (onnxruntime runs the graph's fp32).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda image: session.run(None, {name: image})[0]), FP32


def openvino_runner(path: Path, threads: int, pin_fp32: bool = False) -> tuple[Runner, str]:
    """Compile an OpenVINO model for the CPU with `threads` inference threads, a latency hint and default precision.

    Args:
        path (Path): The .xml file.
        threads (int): Threads.
        pin_fp32 (bool): Compile with INFERENCE_PRECISION_HINT f32 instead of the CPU plugin's default (bf16 on CPUs
            with AVX512-BF16 or AMX).

    Returns:
        (tuple[Runner, str]): As `onnxruntime_runner`; the precision is the one OpenVINO picked (its
            INFERENCE_PRECISION_HINT, "fp32" where the CPU has no bf16 or fp16 support).
    """
    import openvino

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": OPENVINO_HINT}
    if pin_fp32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = openvino.Core().compile_model(str(path), OPENVINO_DEVICE, config)
    request = compiled.create_infer_request()

    def run(image: np.ndarray) -> np.ndarray:
        request.infer({0: image})
        return request.get_output_tensor(0).data.copy()

    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return run, OPENVINO_PRECISIONS.get(precision, precision)


def mnn_runner(path: Path, threads: int, precision: str = MNN_PRECISION) -> tuple[Runner, str]:
    """Load an MNN model on the CPU with `threads` threads, at AutoBackend's precision unless told otherwise.

    Args:
        path (Path): The .mnn file.
        threads (int): Threads.
        precision (str): MNN's "low" (AutoBackend's), "normal" or "high".

    Returns:
        (tuple[Runner, str]): As `onnxruntime_runner`; the precision is "mnn-<precision>" (MNN does not report
            what it computes in).
    """
    import MNN as mnn

    manager = mnn.nn.create_runtime_manager(({"precision": precision, "backend": "CPU", "numThread": threads},))
    net = mnn.nn.load_module_from_file(str(path), [], [], runtime_manager=manager, rearrange=True)

    def run(image: np.ndarray) -> np.ndarray:
        return net.onForward([mnn.expr.const(image, image.shape)])[0].read().copy()

    return run, f"mnn-{precision}"


def executorch_runner(path: Path, threads: int) -> tuple[Runner, str]:
    """Load an ExecuTorch program (XNNPACK-delegated, as Ultralytics exports it) with `threads` pool threads.

    Args:
        path (Path): The .pte file.
        threads (int): Threads of ExecuTorch's thread pool (process-wide).

    Returns:
        (tuple[Runner, str]): As `onnxruntime_runner` (XNNPACK runs the fp32 graph).
    """
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    _unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return (lambda image: method.execute([torch.from_numpy(image)])[0].numpy()), FP32


def litert_runner(path: Path, threads: int) -> tuple[Runner, str]:
    """Load a LiteRT model into LiteRT's interpreter with `threads` threads, as AutoBackend does on a CPU.

    Args:
        path (Path): The .tflite file (litert-torch's export: NCHW input, fp32).
        threads (int): Interpreter threads.

    Returns:
        (tuple[Runner, str]): As `onnxruntime_runner` (the interpreter's XNNPACK delegate runs the fp32 graph).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source, result = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(image: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, image)
        interpreter.invoke()
        return interpreter.get_tensor(result).copy()

    return run, FP32


RUNTIME_DISTRIBUTIONS = {LITERT: "ai-edge-litert"}  # the package of a runtime not named after it
RUNNERS = {
    ONNXRUNTIME: onnxruntime_runner,
    OPENVINO: openvino_runner,
    MNN: mnn_runner,
    EXECUTORCH: executorch_runner,
    LITERT: litert_runner,
}


def fp32_check(runtime: str, path: Path, threads: int, runner: Runner, precision: str) -> tuple[Runner, str]:
    """The runner of the fp32 check: the timed one where that runs fp32, else the runtime pinned to full precision.

    Args:
        runtime (str): A key of RUNNERS.
        path (Path): The exported file the runner loaded.
        threads (int): Threads.
        runner (Runner): The timed runner.
        precision (str): The precision it runs at.

    Returns:
        (tuple[Runner, str]): The check's runner and its precision: the timed one where that is FP32, MNN at
            MNN_CHECK_PRECISION, or OpenVINO compiled with INFERENCE_PRECISION_HINT f32.
    """
    if precision == FP32:
        return runner, precision
    if runtime == MNN:
        return mnn_runner(path, threads, MNN_CHECK_PRECISION)
    return openvino_runner(path, threads, pin_fp32=True)


MATCHED_FRACTION = 0.97  # of a runtime's detections that must match PyTorch's, as tests/detections.py's MATCHED


def detections_difference(a: np.ndarray, b: np.ndarray) -> float:
    """How far the detections a are from b, whole (box, score, class) rows matched, whatever their order.

    For each detection of a, the max abs difference over its six columns to the nearest detection of b; of those,
    the MATCHED_FRACTION quantile per image; the largest over the images. An exported model can list near-equal
    scores in another order than PyTorch, and a near-tie can swap a detection in or out of the k kept (the quantile
    leaves those few out), but a runtime that moves boxes, scores or classes between detections matches no row.
    Boxes are normalized and scores in [0, 1], so the columns share one scale.

    Args:
        a (np.ndarray): Detections of shape (B, k, 6).
        b (np.ndarray): Detections of the same shape.

    Returns:
        (float): The difference.
    """
    nearest = np.abs(a[:, :, None, :] - b[:, None, :, :]).max(-1).min(-1)  # (B, k): each row of a to b's closest
    return float(np.quantile(nearest, MATCHED_FRACTION, axis=-1).max())


def random_image(imgsz: int) -> np.ndarray:
    """Seeded uniform random image of shape (1, 3, imgsz, imgsz), float32 in [0, 1)."""
    return np.random.default_rng(SEED).random((1, 3, imgsz, imgsz), dtype=np.float32)


def pytorch_outputs(models: dict[str, nn.Module], image: np.ndarray) -> dict[str, np.ndarray]:
    """Each model's detections (eval mode, no grad) on image, the reference for its exports."""
    outputs = {}
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            outputs[name] = model(torch.from_numpy(image))[0].numpy()
    return outputs


def time_runners(runners: dict[str, Runner], image: np.ndarray, warmup: int, repeats: int) -> dict[str, dict]:
    """Median latency of each runner on image, all runners interleaved in every repeat after `warmup` runs each.

    Args:
        runners (dict[str, Runner]): Model name to runner.
        image (np.ndarray): Input of shape (1, 3, H, W).
        warmup (int): Untimed runs per runner.
        repeats (int): Timed runs per runner.

    Returns:
        (dict[str, dict]): Model name to {"latency_ms": wall ms, "latency_ms_cpu": process CPU ms}.
    """
    for runner in runners.values():
        for _ in range(warmup):
            runner(image)
    samples = {name: defaultdict(list) for name in runners}
    for repeat in range(repeats):
        for name in rotation(list(runners), repeat):
            add_samples(samples[name], "latency", timed(lambda r=runners[name]: r(image), CPU))
    return {name: {key: median_ms(values) for key, values in s.items()} for name, s in samples.items()}


def bench_runtime(
    plan: DeployPlan,
    runtime: str,
    kind: ExportKind,
    wrappers: dict[str, object],
    references: dict[str, np.ndarray],
    folder: Path,
) -> list[dict]:
    """Export the models for one runtime and export kind, check their outputs, and time them interleaved.

    Args:
        plan (DeployPlan): The plan.
        runtime (str): A key of RUNNERS.
        kind (ExportKind): Export kind.
        wrappers (dict[str, object]): Model name to `exportable` wrapper.
        references (dict[str, np.ndarray]): Model name to its PyTorch detections on `random_image(kind.imgsz)`.
        folder (Path): Where the exports go.

    Returns:
        (list[dict]): One row per model (for OpenVINO also BRA_ROUTING_UNMARKED): latency_ms, latency_ms_cpu, their
            ratios to the floor model and rtdetr-l, the precision they were timed at (`runtime_precision`, the
            runtime's default), export seconds, and the max difference of the detections to PyTorch's twice: at fp32
            (`max_abs_error_vs_pytorch`, the runtime pinned to fp32: `check_precision`) and at the timed precision
            (`runtime_max_abs_error_vs_pytorch`).
    """
    image = random_image(kind.imgsz)
    runners, rows = {}, {}
    exported = dict(wrappers)
    if runtime == OPENVINO:  # and the BRA model once more, its routing left at the runtime's precision
        exported[BRA_ROUTING_UNMARKED] = wrappers[BRA]
        references = {**references, BRA_ROUTING_UNMARKED: references[BRA]}
    for name, wrapper in exported.items():
        start = time.perf_counter()
        with mock.patch(ROUTING_MARKS, return_value=0) if name == BRA_ROUTING_UNMARKED else contextlib.nullcontext():
            path = export(wrapper, runtime, kind, plan.simplify, folder / f"{name}-{kind.name}")
        export_s = round(time.perf_counter() - start, 1)
        runners[name], precision = RUNNERS[runtime](path, plan.threads)
        check, check_precision = fp32_check(runtime, path, plan.threads, runners[name], precision)
        rows[name] = {
            "runtime": runtime,
            "export": kind.name,
            "imgsz": kind.imgsz,
            "dynamic": kind.dynamic,
            "precision": FP32,
            "runtime_precision": precision,
            "check_precision": check_precision,
            "model": name,
            "export_s": export_s,
            "max_abs_error_vs_pytorch": detections_difference(check(image), references[name]),
            "runtime_max_abs_error_vs_pytorch": detections_difference(runners[name](image), references[name]),
        }
    medians = time_runners(runners, image, plan.warmup, plan.repeats)
    return [
        {**rows[name], **times, **reference_ratios(times, medians, ("latency",))} for name, times in medians.items()
    ]


def bench_deploy(plan: DeployPlan, folder: Path, log: Callable[[str], None]) -> list[dict] | str:
    """Export and time the BRA model, its floor model and rtdetr-l for every runtime and export kind of the plan.

    Args:
        plan (DeployPlan): The plan.
        folder (Path): Where the exports go (created if missing; kept, the caller owns it).
        log (Callable[[str], None]): Progress printer.

    Returns:
        (list[dict] | str): Rows of `bench_runtime`, by export kind then runtime, or why the models cannot be built.
    """
    models = build_models(CPU, plan.bra_yaml, plan.plain_yaml)
    if isinstance(models, str):
        return models
    folder.mkdir(parents=True, exist_ok=True)
    cfgs = {BRA: plan.bra_yaml, FLOOR: plan.bra_yaml, PLAIN: plan.plain_yaml}
    wrappers = {name: exportable(model, cfgs[name]) for name, model in models.items()}
    rows = []
    for kind in plan.exports:
        references = pytorch_outputs(models, random_image(kind.imgsz))
        for runtime in (runtime for runtime in plan.runtimes if plan.serves(runtime, kind)):
            log(f"deploy {runtime} {kind.name}")
            rows += bench_runtime(plan, runtime, kind, wrappers, references, folder)
    return rows


def runtime_versions() -> dict[str, str]:
    """Versions of onnxruntime, OpenVINO, MNN, ExecuTorch and LiteRT ("not installed" for a missing one), kept with
    every deployment result."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for runtime in RUNNERS:
        try:
            versions[runtime] = version(RUNTIME_DISTRIBUTIONS.get(runtime, runtime))
        except PackageNotFoundError:
            versions[runtime] = "not installed"
    return versions
