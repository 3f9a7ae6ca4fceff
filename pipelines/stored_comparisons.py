"""Sampler comparisons kept on disk with their step histories, so that "reopen" works after a
restart. Used by :class:`pipelines.history_store.HistoryStore`.

One comparison is one folder ``comparisons/ID/`` (ids as for images: creation time, sortable):

- ``column-N.npz``: column N's step previews (uint8, steps x H x W x 3), model evaluations and
  seconds per step, read back without pickles;
- ``column-N.png``: column N's final image, when it was reached;
- ``comparison.json``: the request, each column's sampler, steps and request, and the run's notes.
  Written last: a folder without it (a process killed half way) is not listed, and swept later.

The starting noise and the exact condition maps are not kept (the request names the maps).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.errors import StudioError
from pipelines.export import write_atomically
from pipelines.images import open_image
from pipelines.types import GenerationRequest

if TYPE_CHECKING:
    from pipelines.compare import CompareResult

log = logging.getLogger(__name__)

COMPARISONS_SUBFOLDER = "comparisons"
RECORD = "comparison.json"
_ID_RE = re.compile(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{6}")


@dataclass(frozen=True)
class StoredComparison:
    id: str
    folder: Path  # the comparison's own folder
    request: GenerationRequest
    samplers: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"{', '.join(self.samplers)} · seed {self.request.seed}"


def write_comparison(folder: Path, result: CompareResult) -> None:
    """Keep ``result`` in ``folder`` (made here); the record last, so it commits the entry."""
    folder.mkdir(parents=True, exist_ok=False)
    columns = []
    for number, column in enumerate(result.columns, 1):
        previews = (np.stack(column.previews) if column.previews
                    else np.zeros((0, 1, 1, 3), dtype=np.uint8))  # fmt: skip
        buffer = io.BytesIO()
        # Stored as they are: deflate shrinks previews by a tenth at 14 times the writing time,
        # which the worker would spend before it reports the comparison (see BENCHMARKS.md).
        np.savez(buffer, previews=previews,
                            evaluations=np.asarray(column.evaluations, dtype=np.int64),
                            elapsed=np.asarray(column.elapsed, dtype=np.float64))  # fmt: skip
        data = buffer.getvalue()
        write_atomically(folder / f"column-{number}.npz", lambda handle, data=data: handle.write(data),
                         suffixes=(".npz",))  # fmt: skip
        if column.image is not None:
            picture = column.image
            write_atomically(folder / f"column-{number}.png",
                             lambda handle, image=picture: image.save(handle, format="PNG"))  # fmt: skip
        columns.append({
            "sampler": column.sampler, "steps": column.steps, "request": column.request.to_dict(),
            "planned_evaluations": column.planned_evaluations, "lockstep": column.lockstep,
            "cancelled": column.cancelled,
        })  # fmt: skip
    record = {"version": 1, "request": result.request.to_dict(), "columns": columns,
              "timings": result.timings, "warnings": list(result.warnings),
              "precision": result.precision}  # fmt: skip
    text = json.dumps(record, ensure_ascii=False)
    write_atomically(folder / RECORD, lambda handle: handle.write(text.encode("utf-8")),
                     suffixes=(".json",))  # fmt: skip


def _record(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise ValueError("it holds no columns")
    return data


def list_comparisons(root: Path) -> tuple[list[StoredComparison], list[str]]:
    """The comparisons kept under ``root``, newest first, and a note for each that is skipped."""
    found, notes = [], []
    try:
        names = sorted((item.name for item in os.scandir(root) if _ID_RE.fullmatch(item.name)),
                       reverse=True)  # fmt: skip
    except OSError:
        return [], []
    for name in names:
        folder = root / name
        if not (folder / RECORD).is_file():
            continue  # cut short while it was written
        try:
            data = _record(folder)
            request = GenerationRequest.from_dict(data["request"])
            samplers = tuple(str(c["sampler"]) for c in data["columns"])
        except (OSError, ValueError, TypeError, KeyError, RecursionError, StudioError) as error:
            notes.append(f"Comparison {name} skipped: {error}")
            log.warning("%s", notes[-1])
            continue
        found.append(StoredComparison(name, folder, request, samplers))
    return found, notes


def read_comparison(stored: StoredComparison) -> CompareResult:
    """The whole comparison with its step history; :class:`StudioError` when it cannot be read."""
    from pipelines.compare import CompareColumn, CompareResult

    try:
        data = _record(stored.folder)
        columns = []
        for number, meta in enumerate(data["columns"], 1):
            with np.load(stored.folder / f"column-{number}.npz", allow_pickle=False) as arrays:
                previews, evaluations, elapsed = (
                    arrays["previews"],
                    arrays["evaluations"],
                    arrays["elapsed"],
                )
            image_path = stored.folder / f"column-{number}.png"
            image = None
            if image_path.is_file():
                with open_image(image_path) as opened:
                    image = opened.convert("RGB")
            columns.append(CompareColumn(
                sampler=str(meta["sampler"]), steps=int(meta["steps"]),
                request=GenerationRequest.from_dict(meta["request"]),
                previews=list(previews), evaluations=[int(e) for e in evaluations],
                elapsed=[float(s) for s in elapsed], image=image,
                cancelled=bool(meta.get("cancelled", False)),
                planned_evaluations=int(meta.get("planned_evaluations", 0)),
                lockstep=bool(meta.get("lockstep", False)),
            ))  # fmt: skip
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        raise StudioError(
            f"The comparison {stored.title} cannot be read any more: {error}"
        ) from error
    return CompareResult(request=stored.request, columns=columns, initial_noise=None,
                         timings=dict(data.get("timings") or {}),
                         warnings=tuple(data.get("warnings") or ()),
                         precision=str(data.get("precision", "")))  # fmt: skip


def remove_comparison(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
