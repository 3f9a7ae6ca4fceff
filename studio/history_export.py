"""Exporting history images to a folder the user picked, without Qt: each PNG is copied as the
history keeps it (its settings and run details included), named as Save names images, never over
an existing file, and written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.errors import ExportError, StudioError
from pipelines.types import GenerationRequest


@dataclass(frozen=True)
class ExportSource:
    """One history image: its PNG kept on disk, or (not kept) the image to write with its
    request."""

    request: GenerationRequest
    stored: Path | None = None
    image: Image.Image | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def export_entries(
    sources: Sequence[ExportSource], folder: Path, pattern: str
) -> tuple[list[Path], str]:
    """Write ``sources`` into ``folder`` in order; returns the files written and, when one
    failed, why (the ones before it stay written, the ones after are not tried)."""
    from pipelines.export import next_free_path, write_atomically, write_png

    written: list[Path] = []
    if sources and not folder.is_dir():
        return written, f"The folder {folder} does not exist."
    for source in sources:
        try:
            target = next_free_path(folder, pattern, source.request)
            if source.stored is not None:
                data = source.stored.read_bytes()
                written.append(write_atomically(target, lambda handle, d=data: handle.write(d)))
            elif source.image is not None:
                written.append(write_png(source.image, source.request, target,
                                         extra=dict(source.extra) or None))  # fmt: skip
            else:
                raise ExportError("A history image is no longer there.")
        except (StudioError, OSError) as error:
            return written, str(error)
    return written, ""
