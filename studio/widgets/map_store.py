"""Where edited and pasted condition maps are kept.

A ControlUnit names its condition image by path, and that path is what the request, the history and
exported PNGs remember. So every map the app makes gets its own file that is never overwritten:
a later edit writes a new file and an older request still finds the map it used.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.export import write_atomically

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


def save_map(image: Image.Image, folder: Path, stem: str = "map") -> Path:
    """Write ``image`` as a new RGB PNG in ``folder`` and return its path (atomically: a crash
    never leaves half a map under the name). Failures are :class:`ExportError`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = _unique_path(folder, stem)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return write_atomically(path, lambda handle: rgb.save(handle, format="PNG"))


def save_pose_sidecar(map_path: Path, data: dict[str, Any]) -> Path:
    text = json.dumps(data).encode("utf-8")
    return write_atomically(
        pose_sidecar(map_path), lambda handle: handle.write(text), overwrite=True,
        suffixes=(".json",),
    )  # fmt: skip
