# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Draw compare.png: mAP50-95 per epoch of every model on one axis, and mAP50-95 against latency and parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("write_figure",)


def write_figure(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """Write the comparison figure.

    Args:
        path (Path): Output PNG.
        rows (list[dict[str, Any]]): One result per model (``epoch_map``, ``mAP50-95``, ``latency_ms``, ``params``).
        title (str): Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (curves, latency, params) = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    for row in rows:
        epochs = range(1, len(row["epoch_map"]) + 1)
        (line,) = curves.plot(epochs, row["epoch_map"], marker=".", label=row["name"])
        for axis, x in ((latency, row["latency_ms"]), (params, row["params"] / 1e6)):
            axis.scatter(x, row["mAP50-95"], color=line.get_color())
            axis.annotate(row["name"], (x, row["mAP50-95"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    curves.set(xlabel="epoch", ylabel="mAP50-95 (val, per epoch)", title="training")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.legend(fontsize=8)
    latency.set(xlabel="latency per image (ms, median)", ylabel="mAP50-95 (best.pt)", title="accuracy vs latency")
    params.set(xlabel="parameters (M)", ylabel="mAP50-95 (best.pt)", title="accuracy vs parameters")
    for axis in curves, latency, params:
        axis.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
