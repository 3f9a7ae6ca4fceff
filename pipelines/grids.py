"""Saving a sampler comparison: a labelled grid PNG, an animation over the steps, one PNG per column.

The grid PNG carries the shared request in the same metadata chunks as any exported image (see
:mod:`pipelines.export`), plus each column's sampler, steps, evaluations and time under ``extra``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from pipelines.compare import CompareColumn, CompareResult
from pipelines.errors import ExportError
from pipelines.export import check_target, file_name_part, write_atomically, write_png

MAX_PER_ROW = 4
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
MUTED = (160, 160, 160)
PADDING = 4
ANIMATION_SUFFIXES = {".webp": "WEBP", ".gif": "GIF"}


# ---------------------------------------------------------------------------------------------
# Layout


def _font(panel_width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's bundled font scales; labels stay readable from 64 px thumbnails to 1024 px panels.
    return ImageFont.load_default(size=max(10, min(28, panel_width // 20)))


def _text_size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom


def columns_per_row(count: int) -> int:
    if count <= MAX_PER_ROW:
        return max(count, 1)
    rows = math.ceil(count / MAX_PER_ROW)
    return math.ceil(count / rows)  # balanced rows: 5 columns as 3 + 2 rather than 4 + 1


def _compose(panels: Sequence[tuple[Image.Image, Sequence[str]]]) -> Image.Image:
    """One image: each panel with its label lines below it, in balanced rows."""
    width = max(image.width for image, _ in panels)
    height = max(image.height for image, _ in panels)
    font = _font(width)
    line_height = _text_size(font, "Ag")[1] + 2
    lines = max(len(label) for _, label in panels)
    text_width = max(_text_size(font, line)[0] for _, label in panels for line in label)
    cell_width = max(width, text_width) + 2 * PADDING
    cell_height = height + lines * line_height + 3 * PADDING
    per_row = columns_per_row(len(panels))
    rows = math.ceil(len(panels) / per_row)
    canvas = Image.new("RGB", (cell_width * per_row, cell_height * rows), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for position, (image, label) in enumerate(panels):
        left = (position % per_row) * cell_width
        top = (position // per_row) * cell_height
        canvas.paste(image.convert("RGB"), (left + (cell_width - image.width) // 2, top + PADDING))
        y = top + height + 2 * PADDING
        for number, line in enumerate(label):
            draw.text((left + PADDING, y), line, fill=TEXT if number == 0 else MUTED, font=font)
            y += line_height
    return canvas


def _summary(column: CompareColumn) -> list[str]:
    state = " (cancelled)" if column.cancelled else ""
    return [
        f"{column.sampler}{state}",
        f"{column.steps} steps, {column.total_evaluations} evals, {column.seconds:.2f} s",
    ]


def _final_panel(column: CompareColumn, size: tuple[int, int]) -> Image.Image:
    if column.image is not None:
        return column.image
    if column.previews:  # cancelled: the last estimate is the best picture there is
        return Image.fromarray(column.previews[-1]).resize(size, Image.Resampling.BICUBIC)
    return Image.new("RGB", size, (0, 0, 0))


def grid_image(result: CompareResult) -> Image.Image:
    """The comparison's final images side by side, each labelled with sampler, steps, evaluations
    and denoising time."""
    size = (result.request.width, result.request.height)
    return _compose([(_final_panel(c, size), _summary(c)) for c in result.columns])


def _preview_size(result: CompareResult) -> tuple[int, int]:
    for column in result.columns:
        if column.previews:
            height, width = column.previews[0].shape[:2]
            return width, height
    return result.request.width, result.request.height


def animation_frames(result: CompareResult) -> list[Image.Image]:
    """One grid per step index; a column with fewer steps holds its last frame."""
    size = _preview_size(result)
    frames = []
    for index in range(result.max_steps):
        panels = []
        for column in result.columns:
            if column.previews:
                shown = min(index, len(column.previews) - 1)
                image = Image.fromarray(column.previews[shown])
                label = [
                    column.sampler,
                    f"step {shown + 1}/{column.steps}, {column.evaluations[shown]} evals",
                ]
            else:
                image, label = Image.new("RGB", size, (0, 0, 0)), [column.sampler, "no steps"]
            panels.append((image, label))
        frames.append(_compose(panels))
    return frames


# ---------------------------------------------------------------------------------------------
# Files


def _comparison_extra(result: CompareResult) -> dict[str, Any]:
    return {
        "comparison": [
            {
                "sampler": c.sampler,
                "steps": c.steps,
                "evaluations": c.total_evaluations,
                "seconds": round(c.seconds, 3),
                "lockstep": c.lockstep,
                "cancelled": c.cancelled,
            }
            for c in result.columns
        ]
    }


def save_grid(
    result: CompareResult, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write the labelled grid as a PNG carrying the shared request; returns the path written."""
    return write_png(
        grid_image(result),
        result.request,
        path,
        overwrite=overwrite,
        extra=_comparison_extra(result),
    )


def save_animation(
    result: CompareResult,
    path: str | os.PathLike[str],
    *,
    duration_ms: int = 150,
    overwrite: bool = False,
) -> Path:
    """Write the grid over the steps as an animated WebP or GIF (chosen by the file's suffix)."""
    path = Path(path)
    image_format = ANIMATION_SUFFIXES.get(path.suffix.lower())
    if image_format is None:
        raise ExportError(f"Cannot save {path.name!r}: an animation must end in .webp or .gif.")
    frames = animation_frames(result)
    if not frames:
        raise ExportError("The comparison has no steps to animate.")
    options: dict[str, Any] = {"save_all": True, "append_images": frames[1:], "loop": 0}
    options["duration"] = max(1, int(duration_ms))
    if image_format == "WEBP":
        options.update(quality=90, method=4)
    else:
        options.update(optimize=False, disposal=1)
    write_atomically(
        path,
        lambda handle: frames[0].save(handle, image_format, **options),
        overwrite=overwrite,
        suffixes=tuple(ANIMATION_SUFFIXES),
    )
    return path


def column_file_name(number: int, sampler: str, steps: int) -> str:
    return f"{number:02d}-{file_name_part(sampler)}-{steps}.png"


def check_comparison_targets(
    grid: str | os.PathLike[str],
    animation: str | os.PathLike[str] | None,
    columns: str | os.PathLike[str] | None,
    entries: Sequence[tuple[str, int]],
    overwrite: bool,
) -> None:
    """Refuse, before any work, outputs :func:`save_grid`, :func:`save_animation` and
    :func:`save_columns` would refuse after it: so a failed check never leaves half the files."""
    check_target(grid, overwrite, make_folder=False, create=False)
    if animation is not None:
        check_target(animation, overwrite, False, tuple(ANIMATION_SUFFIXES), create=False)
    if columns is not None:
        folder = Path(columns)
        if folder.exists() and not folder.is_dir():
            raise ExportError(f"Cannot save the columns into {folder}: it is a file, not a folder.")
        for number, (sampler, steps) in enumerate(entries, start=1):
            check_target(
                folder / column_file_name(number, sampler, steps), overwrite, True, create=False
            )
    named = [Path(p).resolve() for p in (grid, animation) if p is not None]
    if len(set(named)) < len(named):
        raise ExportError("The grid and the animation must be different files.")


def save_columns(
    result: CompareResult, folder: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Each finished column's image as its own PNG carrying that column's request."""
    folder = Path(folder)
    written = []
    for number, column in enumerate(result.columns, start=1):
        if column.image is None:
            continue
        name = column_file_name(number, column.sampler, column.steps)
        written.append(
            write_png(
                column.image, column.request, folder / name, overwrite=overwrite, make_folder=True
            )
        )
    return written
