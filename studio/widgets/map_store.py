"""Where edited and pasted condition maps are kept.

A ControlUnit names its condition image by path, and that path is what the request, the history and
exported PNGs remember. So every map the app makes gets its own file that is never overwritten:
a later edit writes a new file and an older request still finds the map it used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.export import write_atomically

# The maps themselves are named and written by the core (pipelines.export.save_condition_map), so
# the command line keeps its copies in the same folder under the same rules.
POSE_SUFFIX = ".openpose.json"  # beside a pose map: its skeleton, so it opens editable again


def pose_sidecar(map_path: str | Path) -> Path:
    path = Path(map_path)
    return path.with_name(path.stem + POSE_SUFFIX)


def save_pose_sidecar(map_path: Path, data: dict[str, Any]) -> Path:
    text = json.dumps(data).encode("utf-8")
    return write_atomically(
        pose_sidecar(map_path), lambda handle: handle.write(text), overwrite=True,
        suffixes=(".json",),
    )  # fmt: skip
