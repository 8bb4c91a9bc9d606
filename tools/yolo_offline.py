# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Prepare a private Ultralytics config dir for offline runs: settings with sync off, and a local Arial.ttf.

Usage: ``YOLO_CONFIG_DIR=build/yolo-config python tools/yolo_offline.py`` (the Makefile and tests/conftest.py
do this). Without the font Ultralytics tries to download Arial.ttf when it plots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
FONT_NAME = "Arial.ttf"
STAND_IN_FONT = "DejaVuSans.ttf"  # ships with matplotlib


def prepare(config_dir: Path) -> Path:
    """Set the offline environment for this process and write the config dir's settings and font.

    Args:
        config_dir (Path): Folder to use as ``YOLO_CONFIG_DIR``.

    Returns:
        (Path): ``config_dir``.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update({**OFFLINE_ENV, "YOLO_CONFIG_DIR": str(config_dir)})
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR  # imported after the environment is set: it reads it

    font = USER_CONFIG_DIR / FONT_NAME
    if not font.exists():
        import matplotlib

        shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / STAND_IN_FONT, font)
    if SETTINGS.get("sync") is not False:
        SETTINGS.update(sync=False)
    return config_dir


if __name__ == "__main__":
    print(prepare(Path(os.environ.get("YOLO_CONFIG_DIR", "build/yolo-config")).resolve()))
