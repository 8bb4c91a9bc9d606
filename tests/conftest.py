# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Test-session setup: run Ultralytics offline with a private config directory before anything imports it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path


def _offline_config_dir() -> Path:
    """Create a private Ultralytics config dir with sync off and a local stand-in for the Arial font.

    Returns:
        (Path): The directory, also exported as ``YOLO_CONFIG_DIR``.
    """
    config_dir = Path(os.environ.get("YOLO_CONFIG_DIR") or tempfile.mkdtemp(prefix="yolo-config-"))
    config_dir.mkdir(parents=True, exist_ok=True)
    settings = config_dir / "settings.json"
    if not settings.exists():
        settings.write_text(json.dumps({"sync": False}))
    font = config_dir / "Arial.ttf"
    if not font.exists():
        import matplotlib

        shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
    return config_dir


os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "0"
os.environ["YOLO_CONFIG_DIR"] = str(_offline_config_dir())
