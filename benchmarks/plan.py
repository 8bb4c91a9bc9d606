# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""What the BRA benchmark measures: the plans, the compared variants and models, and the targets of issue 5."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

SEED = 0
BRA = "bra"
FLOOR = "floor"
DENSE = "dense"
BASELINE = "baseline"
# BRA with its attention path set explicitly (`attn_backend`, one per name of attention_paths.PATHS); BRA is "auto"
PATH_VARIANTS = {"bra-gather": "gather", "bra-per_route": "per_route"}
BRA_VARIANTS = (BRA, *PATH_VARIANTS)
VARIANTS = (*BRA_VARIANTS, FLOOR, DENSE, BASELINE)
FP32 = "fp32"
PLAIN = "rtdetr-l"  # the whole-model comparison: BRA, FLOOR (its floor model) and PLAIN
# OpenVINO only: the BRA model exported without its f32 routing marks, so that routing runs at the runtime's precision
# (bf16 on AVX512-BF16/AMX CPUs): what keeping routing in f32 costs
BRA_ROUTING_UNMARKED = "bra-routing-unmarked"
ROUTING_MARKS = "ultralytics.nn.AddModules.openvino_routing.keep_routing_fp32"  # what the exporter calls (patch 0007)
MODEL_BRA = "rtdetr-l-HGBlock_Biformer.yaml"
MODEL_PLAIN = "rtdetr-l.yaml"
MODEL_NC = 1
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
MNN = "mnn"
EXECUTORCH = "executorch"
LITERT = "litert"
# the runtimes timed at static exports only, each up to its largest image size: LiteRT's interpreter takes about 1 s
# an image at 160 px on one thread of the Xeon (onnxruntime about 0.1 s), so 640 px would take most of the part's time
BREADTH_MAX_IMGSZ = {MNN: 640, EXECUTORCH: 640, LITERT: 320}
BREADTH_RUNTIMES = tuple(BREADTH_MAX_IMGSZ)


@dataclass(frozen=True)
class Plan:
    """What to measure.

    Attributes:
        name (str): "full", "quick" or a caller's name.
        dim (int): BRA channels.
        n_win (int): BRA regions per side.
        topk (int): BRA routed regions per query region.
        sizes (tuple[int, ...]): Square map sides.
        batches (tuple[int, ...]): Batch sizes of the module benchmark.
        heads (tuple[int, ...]): Head counts of the module benchmark.
        repeats (int): Timed repeats per case at sides <= small_side (medians).
        repeats_large (int): Timed repeats per case at larger sides.
        small_side (int): Largest side timed with `repeats`.
        large_batches (tuple[int, ...]): Batch sizes at sides > small_side.
        large_heads (tuple[int, ...]): Head counts at sides > small_side.
        dense_max_tokens (int): Dense attention (O(tokens^2)) runs only up to this many tokens per map.
        baseline_max_bytes (int): The baseline runs only while its estimated expanded K/V gradient fits this.
        model_sizes (tuple[int, ...]): Image sizes of the whole-model benchmark; empty skips it.
        model_repeats (int): Timed training steps per model and image size (warm-up excluded).
        infer_per_step (int): Timed inferences per training step (inference is short, so noisier).
        train_batch (int): Whole-model training batch.
        infer_batch (int): Whole-model inference batch.
    """

    name: str
    dim: int = 1024
    n_win: int = 7
    topk: int = 4
    sizes: tuple[int, ...] = (20, 40, 60, 80, 100)
    batches: tuple[int, ...] = (1, 2)
    heads: tuple[int, ...] = (1, 8)
    repeats: int = 5
    repeats_large: int = 3
    small_side: int = 40
    large_batches: tuple[int, ...] = (1,)
    large_heads: tuple[int, ...] = (8,)
    dense_max_tokens: int = 60 * 60
    baseline_max_bytes: int = 2 * 2**30
    model_sizes: tuple[int, ...] = (320, 640)
    model_repeats: int = 3
    infer_per_step: int = 3
    train_batch: int = 2
    infer_batch: int = 1

    def case_repeats(self, side: int) -> int:
        """Return the number of timed repeats for a map side."""
        return self.repeats if side <= self.small_side else self.repeats_large

    def case_batches(self, side: int) -> tuple[int, ...]:
        """Return the batch sizes measured at a map side."""
        return self.batches if side <= self.small_side else self.large_batches

    def case_heads(self, side: int) -> tuple[int, ...]:
        """Return the head counts measured at a map side."""
        return self.heads if side <= self.small_side else self.large_heads


FULL = Plan("full")
QUICK = replace(FULL, name="quick", sizes=(20, 40), batches=(1,), repeats=3, model_sizes=(320,))


@dataclass(frozen=True)
class Target:
    """One target of issue 5: `metric` of rows matching `where` compared with `limit`.

    Attributes:
        name (str): Human-readable statement of the target.
        section (str): "module", "model" or "deploy".
        metric (str): Key of the comparison row.
        limit (float): The bound.
        upper (bool): True when the metric must be <= limit, False when >= limit.
        where (dict): Row fields that select the rows the target applies to.
    """

    name: str
    section: str
    metric: str
    limit: float
    upper: bool = True
    where: dict = field(default_factory=dict)


TARGET_SIDE = 40
DENSE_TARGET_SIDE = 20
AUTO_ROW = {"variant": BRA}  # the targets hold for what `auto` runs
TARGETS = (
    Target(
        "auto forward <= 1.25x unavoidable parts at 40x40",
        "module",
        "fwd_x_floor",
        1.25,
        where={"size": TARGET_SIDE, **AUTO_ROW},
    ),
    Target(
        "auto forward <= 1.6x unavoidable parts at 80x80", "module", "fwd_x_floor", 1.6, where={"size": 80, **AUTO_ROW}
    ),
    Target(
        "auto forward <= 1.6x unavoidable parts at 100x100",
        "module",
        "fwd_x_floor",
        1.6,
        where={"size": 100, **AUTO_ROW},
    ),
    Target(
        "fwd+bwd <= 1.4x unavoidable parts at 40x40",
        "module",
        "fwdbwd_x_floor",
        1.4,
        where={"size": TARGET_SIDE, **AUTO_ROW},
    ),
    Target(
        "peak memory <= 2x unavoidable parts at 40x40",
        "module",
        "mem_x_floor",
        2.0,
        where={"size": TARGET_SIDE, **AUTO_ROW},
    ),
    Target(
        "fwd+bwd >= 2.5x faster than the gather baseline at 40x40",
        "module",
        "speedup_vs_baseline",
        2.5,
        upper=False,
        where={"size": TARGET_SIDE, **AUTO_ROW},
    ),
    Target(
        "fwd+bwd no slower than dense SDPA at 1x20x20",
        "module",
        "fwdbwd_x_dense",
        1.0,
        where={"size": DENSE_TARGET_SIDE, "batch": 1, **AUTO_ROW},
    ),
    Target("train step <= 1.08x floor model", "model", "train_x_floor", 1.08, where={"model": "bra"}),
    Target("inference <= 1.05x floor model", "model", "infer_x_floor", 1.05, where={"model": "bra"}),
)


@dataclass(frozen=True)
class ExportKind:
    """One way of exporting the whole models: the export image size and whether the export has dynamic input sizes.

    Attributes:
        imgsz (int): Square image side of the export and of the timed input.
        dynamic (bool): Export with `dynamic=True` (batch, height and width symbolic); timed at imgsz.
    """

    imgsz: int
    dynamic: bool = False

    @property
    def name(self) -> str:
        """Short label, e.g. "static-640" or "dynamic-640"."""
        return f"{'dynamic' if self.dynamic else 'static'}-{self.imgsz}"


@dataclass(frozen=True)
class DeployPlan:
    """What the deployment benchmark measures: exported whole models' CPU latency in onnxruntime, OpenVINO, MNN,
    ExecuTorch and LiteRT.

    Attributes:
        name (str): "full", "quick" or a caller's name.
        exports (tuple[ExportKind, ...]): Export kinds; each model is exported once per kind and runtime.
        runtimes (tuple[str, ...]): Any of ONNXRUNTIME, OPENVINO, MNN, EXECUTORCH and LITERT; `serves` says which export
            kinds each times.
        threads (int): Inference threads of every runtime.
        warmup (int): Untimed runs per model before the timed ones.
        repeats (int): Timed runs per model (medians), the three models interleaved.
        simplify (bool): Run onnxslim on the ONNX exports (Ultralytics' default).
        bra_yaml (str): Model YAML of the BRA model; its floor model is derived from it.
        plain_yaml (str): Model YAML of the plain model.
    """

    name: str
    exports: tuple[ExportKind, ...] = (
        ExportKind(640),
        ExportKind(320),
        ExportKind(640, dynamic=True),
        ExportKind(1280),
    )
    runtimes: tuple[str, ...] = (ONNXRUNTIME, OPENVINO, *BREADTH_RUNTIMES)
    threads: int = 1
    warmup: int = 2
    repeats: int = 10
    simplify: bool = True
    bra_yaml: str = MODEL_BRA
    plain_yaml: str = MODEL_PLAIN

    def serves(self, runtime: str, kind: ExportKind) -> bool:
        """Whether the plan times runtime at kind (`deploy_bench.bench_deploy` skips the other pairs).

        Args:
            runtime (str): One of the plan's runtimes.
            kind (ExportKind): One of the plan's export kinds.

        Returns:
            (bool): True for onnxruntime and OpenVINO at every kind, and for MNN, ExecuTorch and LiteRT at static
                exports up to their BREADTH_MAX_IMGSZ (the deploy matrix checks those runtimes static only).
        """
        return runtime not in BREADTH_MAX_IMGSZ or (not kind.dynamic and kind.imgsz <= BREADTH_MAX_IMGSZ[runtime])


DEPLOY_FULL = DeployPlan("full")
DEPLOY_QUICK = replace(DEPLOY_FULL, name="quick", exports=(ExportKind(320),), repeats=5)
DEPLOY_FLOOR_LIMIT = 1.05
DEPLOY_TARGETS = tuple(
    Target(
        f"deployed latency <= {DEPLOY_FLOOR_LIMIT}x floor model ({runtime})",
        "deploy",
        "latency_x_floor",
        DEPLOY_FLOOR_LIMIT,
        where={"model": BRA, "runtime": runtime},
    )
    for runtime in (ONNXRUNTIME, OPENVINO)
)


def bra_class() -> type[nn.Module]:
    """Import the fork's BRA module (kept out of module import so `--help` works without the fork)."""
    from ultralytics.nn.AddModules import BiLevelRoutingAttention_nchw

    return BiLevelRoutingAttention_nchw
