# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Routing maps from a shell, with a query position of your choice.

Usage:
    python -m ultralytics.biformer.routing MODEL SOURCE [--query X Y] [--imgsz 640] [--conf 0.25] [--device cpu]
        [--save-dir runs/routing]

MODEL is a checkpoint or model YAML with BRA layers (e.g. rtdetr-l-Biformer.yaml); X Y are original-image pixels.
Without --query each image is queried at the centre of its highest-scoring detection.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ultralytics import RTDETR

from .predict import routing_maps


def main(argv: list[str] | None = None) -> list[Path]:
    """Parse the command line and write the routing maps.

    Args:
        argv (list[str], optional): Arguments; defaults to sys.argv[1:].

    Returns:
        (list[Path]): The PNGs written.
    """
    parser = argparse.ArgumentParser(prog="python -m ultralytics.biformer.routing", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="checkpoint or model YAML with BiLevelRoutingAttention_nchw layers")
    parser.add_argument("source", help="image, folder, glob or video, as for yolo predict")
    parser.add_argument("--query", nargs=2, type=float, metavar=("X", "Y"), help="query position in image pixels")
    parser.add_argument("--imgsz", type=int, default=640, help="inference size (default 640)")
    parser.add_argument("--conf", type=float, default=0.25, help="detection threshold for the default query")
    parser.add_argument("--device", default="cpu", help="device, e.g. cpu or 0 (default cpu)")
    parser.add_argument("--save-dir", type=Path, default=Path("runs/routing"), help="output folder (default runs/routing)")
    args = parser.parse_args(argv)
    return routing_maps(
        RTDETR(args.model),
        args.source,
        query=tuple(args.query) if args.query else None,
        save_dir=args.save_dir,
        imgsz=args.imgsz,
        conf=args.conf,
        device=args.device,
    )


if __name__ == "__main__":
    main()
