# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Draw compare.png: mAP50-95 per epoch (each seed and their mean), and mAP50-95 against latency and parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ("write_figure",)


def write_figure(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """Write the comparison figure.

    Each model gets one colour: a thin line per seed and a thick line for their mean on the training axis, and on
    the two scatter axes its mean mAP50-95 with a bar from the lowest to the highest seed.

    Args:
        path (Path): Output PNG.
        rows (list[dict[str, Any]]): One result per (model, seed) (``name``, ``epoch_map``, ``mAP50-95``,
            ``latency_ms``, ``params``).
        title (str): Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (curves, latency, params) = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(dict.fromkeys(row["name"] for row in rows)):
        runs, color = [row for row in rows if row["name"] == name], colors[i % len(colors)]
        for run in runs if len(runs) > 1 else []:
            epochs = range(1, len(run["epoch_map"]) + 1)
            curves.plot(epochs, run["epoch_map"], color=color, alpha=0.35, lw=0.8, marker=".")
        length = min(len(run["epoch_map"]) for run in runs)  # a run stopped early (patience) ends the mean
        mean = np.mean([run["epoch_map"][:length] for run in runs], axis=0)
        label = f"{name} (mean of {len(runs)} seeds)" if len(runs) > 1 else name
        curves.plot(range(1, length + 1), mean, color=color, marker=".", lw=2, label=label)
        maps = np.array([run["mAP50-95"] for run in runs])
        for axis, x in ((latency, runs[0]["latency_ms"]), (params, runs[0]["params"] / 1e6)):
            spread = [[maps.mean() - maps.min()], [maps.max() - maps.mean()]]
            axis.errorbar(x, maps.mean(), yerr=spread, color=color, fmt="o", capsize=3)
            axis.annotate(name, (x, maps.mean()), textcoords="offset points", xytext=(4, 4), fontsize=8)
    curves.set(xlabel="epoch", ylabel="mAP50-95 (val, per epoch)", title="training")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.legend(fontsize=8)
    accuracy = "mAP50-95 (best.pt; bar: seed min-max)"
    latency.set(xlabel="latency per image (ms, median)", ylabel=accuracy, title="accuracy vs latency")
    params.set(xlabel="parameters (M)", ylabel=accuracy, title="accuracy vs parameters")
    for axis in curves, latency, params:
        axis.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
