# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Whole-model benchmark: rtdetr-l-HGBlock_Biformer against its floor model and rtdetr-l, train step and inference.

The three models' steps run interleaved in every repeat, in a rotating order, after a warm-up.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from measure import CLOCKS, MIB, add_samples, autocast, median_ms, peak_extra_bytes, ratio, rotation, timed
from plan import BRA, FLOOR, MODEL_BRA, MODEL_NC, MODEL_PLAIN, PLAIN, SEED, Plan, bra_class
from variants import floor_model

MODEL_BOXES = 4  # random ground-truth boxes per image in the training batch
MODEL_MIN_WH = 0.05  # random box width/height range, normalized
MODEL_MAX_WH = 0.5


def training_batch(batch: int, imgsz: int, device: torch.device) -> dict:
    """Build a batch in the layout RTDETRDetectionModel.loss reads: images and MODEL_BOXES random boxes per image.

    Args:
        batch (int): Images.
        imgsz (int): Square image side.
        device (torch.device): Device.

    Returns:
        (dict): img (B, 3, imgsz, imgsz) in [0, 1], cls (n, 1), bboxes (n, 4) normalized xywh, batch_idx (n,).
    """
    gen = torch.Generator().manual_seed(SEED)
    n = batch * MODEL_BOXES
    wh = MODEL_MIN_WH + (MODEL_MAX_WH - MODEL_MIN_WH) * torch.rand(n, 2, generator=gen)
    xy = wh / 2 + (1 - wh) * torch.rand(n, 2, generator=gen)
    return {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=gen).to(device),
        "cls": torch.zeros(n, 1),
        "bboxes": torch.cat([xy, wh], 1),
        "batch_idx": torch.arange(batch).repeat_interleave(MODEL_BOXES).float(),
    }


def build_models(
    device: torch.device, bra_yaml: str = MODEL_BRA, plain_yaml: str = MODEL_PLAIN
) -> dict[str, nn.Module] | str:
    """Build the BRA model, its floor model and the plain model (nc=1, seeded), or return why they cannot be built.

    Args:
        device (torch.device): Device.
        bra_yaml (str): Model YAML with BiLevelRoutingAttention_nchw layers.
        plain_yaml (str): Model YAML of the plain model.

    Returns:
        (dict[str, nn.Module] | str): BRA, FLOOR and PLAIN models on device, or a skip message.
    """
    try:
        from ultralytics.nn.tasks import RTDETRDetectionModel

        torch.manual_seed(SEED)
        bra = RTDETRDetectionModel(bra_yaml, nc=MODEL_NC, verbose=False)
        plain = RTDETRDetectionModel(plain_yaml, nc=MODEL_NC, verbose=False)
    except Exception as e:  # the fork's tasks.py wiring or YAMLs missing: report, do not fail the module benchmark
        return f"skipped: cannot build {bra_yaml} ({type(e).__name__}: {e})"
    for model in (bra, plain):
        model.nc = model.yaml["nc"]  # set by the trainer in real training; the loss reads it
    floor, replaced = floor_model(bra, bra_class())
    if not replaced:
        return f"skipped: {bra_yaml} contains no BiLevelRoutingAttention_nchw"
    return {BRA: bra.to(device), FLOOR: floor.to(device), PLAIN: plain.to(device)}


def reference_ratios(times: dict, medians: dict[str, dict], metrics: tuple[str, ...]) -> dict[str, float]:
    """Ratios of one model's median times to those of the floor model and the plain model.

    Args:
        times (dict): One model's medians, `<metric>_ms<clock>` keys.
        medians (dict[str, dict]): Every model's medians, keyed by FLOOR and PLAIN among others.
        metrics (tuple[str, ...]): Metric names, e.g. ("train", "infer").

    Returns:
        (dict[str, float]): `<metric>_x_floor<clock>` and `<metric>_x_rtdetr_l<clock>` for every clock measured.
    """
    ratios = {}
    for ref, suffix in ((FLOOR, "floor"), (PLAIN, "rtdetr_l")):
        for clock in (c for c in CLOCKS if f"{metrics[0]}_ms{c}" in times):
            for metric in metrics:
                ratios[f"{metric}_x_{suffix}{clock}"] = ratio(times, medians[ref], f"{metric}_ms{clock}")
    return ratios


def measure_model(
    model: nn.Module,
    batch: dict,
    image: torch.Tensor,
    infers: int,
    precision: str,
    device: torch.device,
    samples: dict[str, list[float]],
) -> None:
    """Time one training step (loss + backward) and `infers` inferences of a detection model.

    Mode switches (train/eval) and gradient clearing happen outside the timed calls.

    Args:
        model (nn.Module): An RTDETRDetectionModel.
        batch (dict): Training batch from `training_batch`.
        image (torch.Tensor): Inference input of shape (B, 3, H, W).
        infers (int): Number of timed inferences.
        precision (str): "fp32" or an AUTOCAST_DTYPES key.
        device (torch.device): Device.
        samples (dict[str, list[float]]): Receives the times under train_ms, infer_ms (and *_ms_cpu on CPU).
    """

    def train_step() -> None:
        with autocast(device, precision):
            loss, _ = model.loss(batch)
        loss.backward()

    def infer() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(image)

    model.train()
    model.zero_grad(set_to_none=True)
    add_samples(samples, "train", timed(train_step, device))
    model.eval()
    for _ in range(infers):
        add_samples(samples, "infer", timed(infer, device))


def bench_models(plan: Plan, precision: str, device: torch.device, models: dict[str, nn.Module]) -> list[dict]:
    """Time a training step and inference of each model at every plan image size, interleaved.

    Args:
        plan (Plan): The plan.
        precision (str): "fp32" or an AUTOCAST_DTYPES key.
        device (torch.device): Device.
        models (dict[str, nn.Module]): From `build_models`.

    Returns:
        (list[dict]): Per (imgsz, model): train_ms, infer_ms and their ratios to the floor model and rtdetr-l
            (train_x_floor, infer_x_floor, train_x_rtdetr_l, infer_x_rtdetr_l), each also with the "_cpu" clock on CPU.
    """
    rows = []
    for imgsz in plan.model_sizes:
        batch = training_batch(plan.train_batch, imgsz, device)
        image = batch["img"][: plan.infer_batch]

        for model in models.values():  # warm-up
            measure_model(model, batch, image, 1, precision, device, defaultdict(list))
        samples = {name: defaultdict(list) for name in models}
        for repeat in range(plan.model_repeats):
            for name in rotation(list(models), repeat):
                measure_model(models[name], batch, image, plan.infer_per_step, precision, device, samples[name])
        medians = {name: {key: median_ms(v) for key, v in s.items()} for name, s in samples.items()}
        for name, times in medians.items():
            row = {"imgsz": imgsz, "precision": precision, "model": name, **times}
            rows.append({**row, **reference_ratios(times, medians, ("train", "infer"))})
    return rows


def train_peak_mib(models: dict[str, nn.Module], batch: dict, precision: str, device: torch.device) -> dict[str, float]:
    """Peak extra memory of one training step (loss + backward) of each model, in MiB.

    Args:
        models (dict[str, nn.Module]): From `build_models`.
        batch (dict): Training batch from `training_batch`.
        precision (str): "fp32" or an AUTOCAST_DTYPES key.
        device (torch.device): Device.

    Returns:
        (dict[str, float]): Model name to MiB (`measure.peak_extra_bytes`: the caching allocator's peak on CUDA).
    """
    peaks = {}
    for name, model in models.items():
        model.train()
        model.zero_grad(set_to_none=True)

        def train_step(m: nn.Module = model) -> None:
            with autocast(device, precision):
                loss, _ = m.loss(batch)
            loss.backward()

        peaks[name] = round(peak_extra_bytes(train_step, device) / MIB, 1)
    return peaks
