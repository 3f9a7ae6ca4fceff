"""Where edited and pasted condition maps are kept.

A ControlUnit names its condition image by path, and that path is what the request, the history and
exported PNGs remember. So every map the app makes gets its own file that is never overwritten:
a later edit writes a new file and an older request still finds the map it used.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

MAPS_SUBFOLDER = "condition-maps"
POSE_SUFFIX = ".openpose.json"  # beside a pose map: its skeleton, so it opens editable again


def maps_folder(data_folder: Path) -> Path:
    return Path(data_folder) / MAPS_SUBFOLDER


def pose_sidecar(map_path: str | Path) -> Path:
    path = Path(map_path)
    return path.with_name(path.stem + POSE_SUFFIX)


def _unique_path(folder: Path, stem: str) -> Path:
    # Time for people browsing the folder, a random part so that two maps never share a name.
    while True:
        name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.png"
        if not (folder / name).exists():
            return folder / name


def write_atomically(path: Path, write) -> None:
    # Temp file in the same folder, then a rename: a crash never leaves half a map under the name.
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_map(image: Image.Image, folder: Path, stem: str = "map") -> Path:
    """Write ``image`` as a new RGB PNG in ``folder`` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = _unique_path(folder, stem)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    write_atomically(path, lambda temp: rgb.save(temp, format="PNG"))
    return path


def save_pose_sidecar(map_path: Path, data: dict[str, Any]) -> Path:
    path = pose_sidecar(map_path)

    def write(temp: str) -> None:
        Path(temp).write_text(json.dumps(data), encoding="utf-8")

    write_atomically(path, write)
    return path
