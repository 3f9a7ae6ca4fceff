"""Jobs and the one event stream that reports on them.

Everything the worker does for the window — generations, sampler comparisons, pose/depth detection
— is a :class:`Job`, and everything the window learns about it arrives as a :class:`JobEvent` from
``Session.event``. The shape follows one message per happening (queued, started, preview, finished,
cancelled, failed) with the job it belongs to, so that a job queue can carry the same messages.

Qt-free at import: previews arrive as QImage (made in the worker thread, never QPixmap), but this
module only names the type.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import StudioError

if TYPE_CHECKING:
    from PIL import Image
    from PySide6.QtGui import QImage

    from pipelines.conditions import PosePerson
    from pipelines.types import ControlKind, GenerationRequest, ResizeMode


class JobKind(StrEnum):
    GENERATE = "generate"
    COMPARE = "compare"
    DETECT = "detect"


class EventKind(StrEnum):
    QUEUED = "queued"  # accepted by the session, waiting in its queue or for the worker
    REMOVED = "removed"  # taken out of the queue before it started; it never runs
    REORDERED = "reordered"  # result: the waiting jobs (tuple of Job) in their new order
    STARTED = "started"  # the worker began it
    PREVIEW = "preview"  # newest step preview(s); stale ones were dropped on the way
    FINISHED = "finished"  # result: GenerationResult, CompareResult or DetectionResult
    CANCELLED = "cancelled"  # result: what was made before the cancel (may be empty)
    FAILED = "failed"  # error: a message a person can act on
    PAUSED = "paused"  # a generation held between two steps; result: the steps completed
    RESUMED = "resumed"  # a held generation goes on (resumed, or taking one step)
    BRANCHED = "branched"  # a held generation's settings change; result: its request with them
    # Not tied to one job: the model, the catalog of samplers, the model folders, problems.
    LOADING = "loading"  # progress 0..1, message
    LOADED = "loaded"  # result: ModelSummary
    LOAD_FAILED = "load-failed"  # error
    CATALOG = "catalog"  # result: Catalog
    MODELS_FOUND = "models-found"  # result: pipelines.models.Discovery
    NOTICE = "notice"  # error: a problem outside any job (start-up, model-folder scan)


@dataclass(frozen=True)
class DetectionRequest:
    """Turn ``image`` into the ``kind``'s map at ``width`` x ``height`` (see
    :func:`pipelines.conditions.detect_map`)."""

    kind: ControlKind
    image: Image.Image
    width: int
    height: int
    resize_mode: ResizeMode
    annotator_folders: tuple[str, ...] = ()
    canny: tuple[int, int] = (100, 200)


_job_ids = itertools.count(1)


def next_job_id() -> int:
    return next(_job_ids)


@dataclass(frozen=True)
class Job:
    kind: JobKind
    request: GenerationRequest | DetectionRequest
    samplers: tuple[tuple[str, int], ...] = ()  # compare: (sampler, steps) per column
    id: int = field(default_factory=next_job_id)


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    description: str
    evaluations_per_step: int


@dataclass(frozen=True)
class Catalog:
    """What the panels fill themselves from once the core has been imported."""

    samplers: tuple[SamplerInfo, ...]
    default_sampler: str
    tokenizer: object | None  # CLIP tokenizer for the token counter; None if it failed to load


@dataclass(frozen=True)
class ModelSummary:
    path: Path
    family: str  # ModelFamily value
    family_label: str
    native_size: tuple[int, int]
    previews: str = ""  # Auto's choice and the approximate map's colour error, for a tooltip
    precision: str = ""  # the weights' number format: "fp32", "bf16" or "fp16"


@dataclass(frozen=True)
class PreviewFrame:
    image: QImage
    step: int
    total: int
    elapsed: float
    job_id: int = 0


@dataclass(frozen=True)
class CompareFrame:
    """The newest preview of one comparison column."""

    column: int
    image: QImage
    step: int
    total: int
    evaluations: int
    elapsed: float
    job_id: int = 0


@dataclass(frozen=True)
class DetectionResult:
    """A detection job's outcome: ``image`` for depth and canny maps, ``people`` for poses, both
    already at the request's size."""

    request: DetectionRequest
    image: Image.Image | None = None
    people: tuple[PosePerson, ...] = ()


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job: Job | None = None
    progress: float = 0.0  # 0..1
    frames: tuple[PreviewFrame | CompareFrame, ...] = ()
    result: Any = None
    error: str = ""
    message: str = ""
    saved_as: str = ""  # finished generations: the id of the history entry written to disk
    saved: tuple[str, ...] = ()  # every image's entry id, for a batch one per image

    @property
    def job_id(self) -> int:
        return self.job.id if self.job is not None else 0

    def is_for(self, kind: JobKind) -> bool:
        return self.job is not None and self.job.kind is kind


SamplerEntry = str | tuple[str, int]  # a name, or (name, steps) with its own step count


def sampler_entry(entry: SamplerEntry, default_steps: int = 0) -> tuple[str, int]:
    """(name, steps) of a comparison entry; steps <= 0 (or none given) means ``default_steps``."""
    name, steps = (entry, 0) if isinstance(entry, str) else entry
    steps = int(steps) if steps else 0
    return str(name), steps if steps > 0 else default_steps


def readable_error(error: BaseException) -> str:
    if isinstance(error, StudioError):
        return str(error)
    if isinstance(error, MemoryError):
        return "The computer ran out of memory. Lower the size or close other programs."
    # A bug, not a user error: the message still names it, the log keeps the traceback.
    return f"Unexpected error ({type(error).__name__}): {error}. Details are in the log."
