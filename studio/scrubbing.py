"""Step scrubbers without Qt: the one of a sampler comparison (which step each column shows for a
slider position, in which alignment, as a picture, a difference or a final image), and the one of
the running generation (the preview frames delivered so far, each with its step).

:class:`studio.widgets.compare_view.CompareView` shows this model and forwards its controls to it;
listeners subscribed with :meth:`StepScrubber.subscribe` hear what changed ("result", "range",
"position", "view"). pipelines.compare imports torch, so it is imported only once a result is
shown, when the worker has long loaded it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from pipelines.compare import CompareColumn, CompareResult

Alignment = Literal["step", "fraction", "evaluations"]
ALIGNMENTS: tuple[Alignment, ...] = ("step", "fraction", "evaluations")
OWN_FINAL = -1  # the difference reference "each column's own final image"
Change = Literal["result", "range", "position", "view"]
Frame = TypeVar("Frame")
MAX_RUN_FRAMES = 120  # frames kept of a run; beyond, every second older one goes (see RunFrames)


@dataclass(frozen=True)
class ShownColumn:
    """What one column shows at the current position."""

    title: str
    info: str
    tip: str
    picture: np.ndarray | None  # uint8 RGB; None: nothing to show yet


class Scrubber:
    """A slider position from 1 to :attr:`top` and the listeners told when things change."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Change], None]] = []
        self.position = 1

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def _changed(self, what: Change) -> None:
        for listener in list(self._listeners):
            listener(what)

    @property
    def top(self) -> int:
        return 1

    def set_position(self, position: int) -> None:
        position = min(max(1, int(position)), self.top)
        if position != self.position:
            self.position = position
            self._changed("position")

    def step(self, delta: int) -> None:
        self.set_position(self.position + delta)

    @property
    def at_end(self) -> bool:
        return self.position >= self.top


class RunFrames(Scrubber, Generic[Frame]):
    """The preview frames delivered for the running generation, oldest first, each with its step
    number. Previews are throttled, so steps can be missing: only delivered frames are kept, and
    the position is an index into them. While the position is at the newest frame it follows the
    run; moved back, it stays on its frame as new ones arrive.

    At most ``limit`` frames stay: past that, every second frame but the newest is dropped, so a
    long run keeps frames spread over all its steps within a bounded memory.
    """

    def __init__(self, limit: int = MAX_RUN_FRAMES) -> None:
        super().__init__()
        self.limit = max(2, limit)
        self.frames: list[tuple[int, Frame]] = []

    @property
    def top(self) -> int:
        return max(1, len(self.frames))

    @property
    def shown(self) -> tuple[int, Frame] | None:
        """(step, frame) at the position; None before the first frame."""
        return self.frames[self.position - 1] if self.frames else None

    def steps(self) -> list[int]:
        return [step for step, _ in self.frames]

    def clear(self) -> None:
        self.frames = []
        self.position = 1
        self._changed("result")

    def add(self, step: int, frame: Frame) -> None:
        following = self.at_end
        shown = self.shown
        if self.frames and self.frames[-1][0] == step:
            self.frames[-1] = (step, frame)  # the same step again: the newer picture of it
        else:
            self.frames.append((step, frame))
        if len(self.frames) > self.limit:
            self.frames = self.frames[:-1:2] + self.frames[-1:]
        if following or shown is None:
            self.position = len(self.frames)
        else:  # stay on the frame shown, or the nearest earlier one kept
            kept = [i for i, (s, _) in enumerate(self.frames) if s <= shown[0]]
            self.position = 1 + (kept[-1] if kept else 0)
        # One notice for the new range and position: a preview redraws the bar once, not twice.
        self._changed("position")

    def position_text(self) -> str:
        shown = self.shown
        return "" if shown is None else f"step {shown[0]} ({self.position}/{self.top} previews)"


class StepScrubber(Scrubber):
    def __init__(self) -> None:
        super().__init__()
        self.result: CompareResult | None = None
        self.alignment: Alignment = "step"
        self.final = False  # show each column's final image instead of the step preview
        self.difference = False  # show distances from the reference instead of pictures
        self.reference = OWN_FINAL  # a column index, or OWN_FINAL
        self.scale_max = 0.0  # the difference view's scale (0 when it is off)
        self._finals: dict[int, np.ndarray] = {}

    # ---- state --------------------------------------------------------------------------------
    @property
    def has_steps(self) -> bool:
        return self.result is not None and self.result.max_steps > 0

    @property
    def top(self) -> int:
        """The last slider position (the first is 1) in the current alignment."""
        columns = self.result.columns if self.result is not None else []
        if self.alignment == "evaluations":
            return max(1, max((c.total_evaluations for c in columns), default=1))
        return max(1, max((c.completed for c in columns), default=1))

    def show(self, result: CompareResult | None, reference: int = OWN_FINAL) -> None:
        """Show ``result`` (None: nothing) at its last step."""
        self.result = result
        self._finals = {}
        columns = len(result.columns) if result is not None else 0
        self.reference = reference if 0 <= reference < columns else OWN_FINAL
        self.position = self.top
        self._changed("result")

    def set_alignment(self, alignment: Alignment) -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {alignment!r}")
        if alignment == self.alignment:
            return
        # The same moment, as a fraction of the slider, in the new alignment.
        span = self.top - 1
        fraction = (self.position - 1) / span if span else 1.0
        self.alignment = alignment
        self.position = 1 + round(fraction * (self.top - 1))
        self._changed("range")

    def set_view(self, *, final: bool | None = None, difference: bool | None = None,
                 reference: int | None = None) -> None:  # fmt: skip
        if final is not None:
            self.final = final
        if difference is not None:
            self.difference = difference
        if reference is not None:
            self.reference = reference
        self._changed("view")

    # ---- what the columns show ----------------------------------------------------------------
    def shown_indices(self) -> list[int]:
        """Each column's step-history index at the position (-1: no steps yet)."""
        if self.result is None:
            return []
        from pipelines.compare import align_steps

        columns, value = self.result.columns, self.position
        if self.alignment == "step":
            return align_steps(columns, value - 1, "step")
        if self.alignment == "fraction":
            return align_steps(columns, value / self.top, "step")
        return align_steps(columns, value, "evaluations")

    def position_text(self) -> str:
        if self.final:
            return "final images"
        value, top = self.position, self.top
        if self.alignment == "step":
            return f"step {value} / {top}"
        if self.alignment == "fraction":
            return f"{100 * value / top:.0f} % of each run"
        return f"{value} / {top} evaluations"

    def columns(self) -> list[ShownColumn]:
        """Every column's picture (or difference) and texts at the current position."""
        if self.result is None:
            return []
        indices = self.shown_indices()
        pictures = self._pictures(indices)
        if self.difference:
            pictures = self._differences(pictures)
        else:
            self.scale_max = 0.0
        shown = []
        for number, (column, index, picture) in enumerate(
            zip(self.result.columns, indices, pictures)
        ):
            title = column.sampler + (" (cancelled)" if column.cancelled else "")
            if self.difference and self.reference == number:
                title += " · reference"
            shown.append(ShownColumn(title, self._info(column, index), _tip(column), picture))
        return shown

    def _info(self, column: CompareColumn, index: int) -> str:
        if self.final:
            return (f"final · {column.completed}/{column.steps} steps · "
                    f"{column.total_evaluations} evals · {column.seconds:.2f} s")  # fmt: skip
        if index < 0:
            return "no steps"
        return (f"step {index + 1}/{column.steps} · {column.evaluations[index]} evals · "
                f"{column.elapsed[index]:.2f} s")  # fmt: skip

    def final_picture(self, index: int, size: tuple[int, int]) -> np.ndarray | None:
        """Column ``index``'s final image at ``size`` (w, h); its last preview when cancelled."""
        if index not in self._finals:
            column = self.result.columns[index]
            if column.image is not None:
                image = column.image.convert("RGB")
            elif column.previews:
                image = Image.fromarray(column.previews[-1])
            else:
                return None
            if image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            self._finals[index] = np.asarray(image, dtype=np.uint8)
        return self._finals[index]

    def _pictures(self, indices: list[int]) -> list[np.ndarray | None]:
        columns = self.result.columns
        size = None
        for column, index in zip(columns, indices):
            if index >= 0:
                height, width = column.previews[index].shape[:2]
                size = (width, height)
                break
        if size is None:
            size = (self.result.request.width or 64, self.result.request.height or 64)
        if self.final:
            return [self.final_picture(i, size) for i in range(len(columns))]
        return [c.previews[k] if k >= 0 else None for c, k in zip(columns, indices)]

    def _differences(self, pictures: list[np.ndarray | None]) -> list[np.ndarray | None]:
        from pipelines.compare import difference

        pairs = []
        for index, picture in enumerate(pictures):
            if picture is None:
                pairs.append(None)
                continue
            size = (picture.shape[1], picture.shape[0])
            if self.reference == OWN_FINAL:
                other = self.final_picture(index, size)
            else:
                other = pictures[self.reference]
            if other is not None and other.shape != picture.shape:
                other = np.asarray(Image.fromarray(other).resize(size, Image.Resampling.BILINEAR))
            pairs.append(None if other is None else (picture, other))
        # One scale for every column, so equal colours mean equal differences across the grid.
        tops = [difference(a, b)[1] for a, b in filter(None, pairs)]
        self.scale_max = max(tops, default=1.0)
        return [None if p is None else difference(*p, scale_max=self.scale_max)[0] for p in pairs]


def _tip(column: CompareColumn) -> str:
    tip = (f"{column.sampler}: {column.completed}/{column.steps} steps, "
           f"{column.total_evaluations}/{column.planned_evaluations} model evaluations, "
           f"{column.seconds:.2f} s")  # fmt: skip
    if column.lockstep:
        tip += "\nRan batched with the other one-evaluation samplers: their times are shared."
    if column.cancelled:
        tip += "\nCancelled before the end."
    return tip
