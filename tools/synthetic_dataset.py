# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Generate a small synthetic detection dataset in YOLO format: shapes on textured, noisy backgrounds.

Usage:
    python tools/synthetic_dataset.py --out build/synthetic --train 64 --val 16 --imgsz 320 --seed 0

Writes ``images/{train,val}/*.png``, ``labels/{train,val}/*.txt`` (``class cx cy w h``, normalised) and
``data.yaml`` with absolute paths. The same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import yaml

CLASS_NAMES = ("circle", "square", "triangle")
MAX_OBJECTS = 4
MIN_SIZE_FRACTION, MAX_SIZE_FRACTION = 0.12, 0.35  # object size relative to the image side
NOISE_STD = 12.0  # grey levels of per-pixel Gaussian noise
TEXTURE_WAVES = 3  # sinusoidal waves summed into each background


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Return a textured, noisy BGR background of shape (size, size, 3), uint8."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(60, 190, 3).astype(np.float32)
    texture = np.zeros((size, size), np.float32)
    for _ in range(TEXTURE_WAVES):
        fx, fy, phase = rng.uniform(1, 12), rng.uniform(1, 12), rng.uniform(0, 2 * np.pi)
        texture += np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    image = base + 18 * texture[..., None] + rng.normal(0, NOISE_STD, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_object(image: np.ndarray, rng: np.random.Generator, cls: int) -> tuple[float, float, float, float]:
    """Draw one shape of class ``cls`` at a random place; return its normalised (cx, cy, w, h) box."""
    size = image.shape[0]
    side = int(rng.uniform(MIN_SIZE_FRACTION, MAX_SIZE_FRACTION) * size)
    x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    if CLASS_NAMES[cls] == "circle":
        cv2.circle(image, (x0 + side // 2, y0 + side // 2), side // 2, color, -1, cv2.LINE_AA)
    elif CLASS_NAMES[cls] == "square":
        cv2.rectangle(image, (x0, y0), (x0 + side - 1, y0 + side - 1), color, -1)
    else:
        points = np.array([[x0 + side // 2, y0], [x0, y0 + side - 1], [x0 + side - 1, y0 + side - 1]], np.int32)
        cv2.fillPoly(image, [points], color, cv2.LINE_AA)
    return (x0 + side / 2) / size, (y0 + side / 2) / size, side / size, side / size


def write_split(root: Path, split: str, count: int, imgsz: int, rng: np.random.Generator) -> None:
    """Write ``count`` images and label files of one split."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = background(rng, imgsz)
        rows = []
        for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
            cls = int(rng.integers(len(CLASS_NAMES)))
            rows.append(f"{cls} " + " ".join(f"{v:.6f}" for v in draw_object(image, rng, cls)))
        cv2.imwrite(str(root / "images" / split / f"{index:05d}.png"), image)
        (root / "labels" / split / f"{index:05d}.txt").write_text("\n".join(rows) + "\n")


def generate(out: Path, train: int = 64, val: int = 16, imgsz: int = 320, seed: int = 0) -> Path:
    """Generate the dataset and its data YAML.

    Args:
        out (Path): Dataset folder (created).
        train (int): Number of training images.
        val (int): Number of validation images; 0 validates on the training images (for overfitting checks).
        imgsz (int): Image side in pixels.
        seed (int): Random seed; the same seed gives the same files.

    Returns:
        (Path): The data YAML, with absolute paths.
    """
    root = out.resolve()
    rng = np.random.default_rng(seed)
    write_split(root, "train", train, imgsz, rng)
    if val:
        write_split(root, "val", val, imgsz, rng)
    data = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val" if val else "images/train",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/synthetic"), help="dataset folder")
    parser.add_argument("--train", type=int, default=64, help="training images")
    parser.add_argument("--val", type=int, default=16, help="validation images (0: validate on train)")
    parser.add_argument("--imgsz", type=int, default=320, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()
    print(generate(args.out, args.train, args.val, args.imgsz, args.seed))


if __name__ == "__main__":
    main()
