"""The session: the only door between the window and the worker thread.

Widgets never touch the worker. They submit jobs here (:meth:`Session.generate`,
:meth:`Session.compare`, :meth:`Session.detect`) and listen to one signal, ``event``, which carries a
:class:`studio.jobs.JobEvent` for everything that happens: a job queued, started, previewed,
finished, cancelled or failed, the model loading, the catalog and model folders read, and problems
found outside any job. Events are emitted in the GUI thread, after the session's own state (history,
busy, loaded model) already reflects them.

Generations and comparisons wait in the session's own queue (:attr:`Session.waiting`), in the GUI
thread, so that the window can reorder, duplicate and remove them; only one at a time is handed to
the worker, the next one when the running one ends. Detections skip that queue: they are short and
an editor waits for them. The cancel flag is a ``threading.Event`` set directly from the GUI
thread, because the worker is busy inside the denoising loop and would only see a queued cancel
signal after the run ended.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtGui import QImage

from pipelines.run_control import RunControl
from studio.jobs import (
    DetectionRequest,
    EventKind,
    Job,
    JobEvent,
    JobKind,
    ModelSummary,
    SamplerEntry,
    next_job_id,
    sampler_entry,
)
from studio.qt_image import pil_to_qimage
from studio.worker import GenerationWorker

if TYPE_CHECKING:
    from pipelines.compare import CompareResult
    from pipelines.history_store import HistoryStore
    from pipelines.stored_comparisons import StoredComparison
    from pipelines.types import Branch, EngineSettings, GenerationRequest, GenerationResult


@dataclass
class HistoryEntry:
    result: GenerationResult  # finished, with an image
    image: QImage
    stored_id: str = ""  # its entry in the history kept on disk ("" when it could not be kept)

    @property
    def request(self) -> GenerationRequest:
        return self.result.request


MAX_COMPARISONS = 10  # each holds up to ~80 MB of step previews; the oldest is dropped first


@dataclass
class ComparisonEntry:
    result: CompareResult  # finished, every column with an image
    number: int  # 1, 2, … in the order the comparisons finished this session

    @property
    def request(self) -> GenerationRequest:
        return self.result.request

    @property
    def title(self) -> str:
        names = ", ".join(c.sampler for c in self.result.columns)
        return f"#{self.number}: {names} · seed {self.request.seed}"


class StoredComparisonEntry:
    """A comparison an earlier session kept on disk; its step history loads when first shown."""

    def __init__(self, store: HistoryStore, stored: StoredComparison, number: int) -> None:
        self.store, self.stored, self.number = store, stored, number
        self._result: CompareResult | None = None

    @property
    def result(self) -> CompareResult:
        if self._result is None:
            self._result = self.store.load_comparison(self.stored)
        return self._result

    @property
    def request(self) -> GenerationRequest:
        return self.stored.request

    @property
    def title(self) -> str:
        return f"#{self.number}: {self.stored.title}"


def compare_entries(samplers: Sequence[SamplerEntry], default_steps: int) -> list[tuple[str, int]]:
    """(name, steps) pairs from names or (name, steps) pairs; steps <= 0 means the request's."""
    return [sampler_entry(entry, default_steps) for entry in samplers]


IMAGE_JOBS = (JobKind.GENERATE, JobKind.COMPARE)
ENDINGS = (EventKind.FINISHED, EventKind.CANCELLED, EventKind.FAILED)


class Session(QObject):
    event = Signal(object)  # JobEvent, always in the GUI thread

    # Outgoing requests to the worker (queued: the worker lives in another thread).
    _configure = Signal(object)
    _start_up = Signal()
    _discover = Signal()
    _load = Signal(str, bool)
    _warm_up = Signal()
    _submit = Signal(object, object, object)  # Job, threading.Event, RunControl or None
    _keep_history = Signal(object, object)  # Path or None, (image limit, comparison limit)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history: list[HistoryEntry] = []
        self.comparisons: list[ComparisonEntry] = []
        self._compared = 0
        self.loaded_model: ModelSummary | None = None
        self._jobs: dict[int, tuple[Job, threading.Event]] = {}  # submitted, not ended yet
        self._waiting: list[Job] = []  # generations and comparisons not handed to the worker yet
        self._controls: dict[int, RunControl] = {}  # the running generation's pause and branches
        self.held_at: int | None = None  # steps done by the running generation while it is held
        self.thread = QThread()
        self.thread.setObjectName("generation-worker")
        self.worker = GenerationWorker()
        self.worker.moveToThread(self.thread)
        self.thread.finished.connect(self.worker.deleteLater)
        self._configure.connect(self.worker.configure)
        self._start_up.connect(self.worker.start_up)
        self._discover.connect(self.worker.discover)
        self._load.connect(self.worker.load)
        self._warm_up.connect(self.worker.warm_up_pose_renderer)
        self._warmed_up = False
        self._submit.connect(self.worker.run)
        self._keep_history.connect(self.worker.keep_history)
        # Queued explicitly: whatever the worker reports is handled here, in the GUI thread.
        queued = Qt.ConnectionType.QueuedConnection
        self.worker.event.connect(self._on_worker_event, queued)
        self.worker.preview_ready.connect(self._on_preview_ready, queued)
        self.worker.compare_step.connect(self._on_compare_step, queued)
        self.thread.start()

    # ---- state --------------------------------------------------------------------------------
    def _image_job(self) -> Job | None:
        return next((job for job, _ in self._jobs.values() if job.kind in IMAGE_JOBS), None)

    @property
    def running_job(self) -> Job | None:
        """The generation or comparison handed to the worker (running, or about to start)."""
        return self._image_job()

    @property
    def waiting(self) -> tuple[Job, ...]:
        """Generations and comparisons queued behind the running one, next first."""
        return tuple(self._waiting)

    @property
    def busy(self) -> bool:
        """A generation or comparison is running or waiting (detections do not count)."""
        return self._image_job() is not None or bool(self._waiting)

    @property
    def comparing(self) -> bool:
        job = self._image_job()
        return job is not None and job.kind is JobKind.COMPARE

    def running(self, job_id: int) -> bool:
        return job_id in self._jobs

    # ---- requests -----------------------------------------------------------------------------
    def configure(self, config: EngineSettings) -> None:
        self._configure.emit(config)

    def keep_history(self, folder: Path | None, limits: tuple[int, int] = (0, 0)) -> None:
        """Write every finished generation and comparison to the history store in ``folder``
        (None: keep none), at most ``limits`` (images, comparisons; 0: all) of them."""
        self._keep_history.emit(folder, limits)

    def restore_comparisons(self, store: HistoryStore) -> int:
        """Put the comparisons kept on disk first in :attr:`comparisons` (their step histories
        load when one is reopened); returns how many."""
        kept = store.comparisons()[:MAX_COMPARISONS][::-1]  # oldest first, as they finished
        restored = []
        for stored in kept:
            self._compared += 1
            restored.append(StoredComparisonEntry(store, stored, self._compared))
        self.comparisons[:0] = restored
        del self.comparisons[:-MAX_COMPARISONS]
        return len(restored)

    def start_up(self) -> None:
        self._start_up.emit()

    def discover(self) -> None:
        self._discover.emit()

    def load(self, model: str, cpu_offload: bool = False) -> None:
        self._load.emit(model, cpu_offload)

    def warm_up_pose_renderer(self) -> None:
        """Import the pose renderer in the worker, once, before the first pose is drawn."""
        if not self._warmed_up:
            self._warmed_up = True
            self._warm_up.emit()

    def generate(self, request: GenerationRequest) -> Job:
        """Queue a generation behind the ones already waiting."""
        return self._enqueue(Job(JobKind.GENERATE, request))

    def compare(self, request: GenerationRequest, samplers: Sequence[SamplerEntry]) -> Job:
        """Queue one run of ``request`` per sampler (names or (name, steps))."""
        entries = tuple(compare_entries(samplers, request.steps))
        return self._enqueue(Job(JobKind.COMPARE, request, samplers=entries))

    def compare_branches(self, request: GenerationRequest) -> Job:
        """Queue a branched request's run beside the same run without its branches."""
        from pipelines.branching import branch_titles

        entries = tuple((title, request.steps) for title in branch_titles(request))
        return self._enqueue(Job(JobKind.COMPARE, request, samplers=entries))

    def detect(self, request: DetectionRequest) -> Job:
        """Queue a pose/depth/canny detection behind whatever the worker is doing."""
        job = Job(JobKind.DETECT, request)
        self._hand_over(job)
        self.event.emit(JobEvent(EventKind.QUEUED, job))
        return job

    def _enqueue(self, job: Job) -> Job:
        self._waiting.append(job)
        self._next()
        self.event.emit(JobEvent(EventKind.QUEUED, job))
        return job

    def _next(self) -> None:
        if self._image_job() is None and self._waiting:
            self._hand_over(self._waiting.pop(0))

    def _hand_over(self, job: Job) -> None:
        cancel = threading.Event()
        self._jobs[job.id] = (job, cancel)
        control = RunControl() if job.kind is JobKind.GENERATE else None
        if control is not None:
            self._controls[job.id] = control
        self._submit.emit(job, cancel, control)

    def cancel(self, job: Job | None = None) -> None:
        """Cancel ``job`` (a waiting one leaves the queue), or the running generation or
        comparison."""
        if job is not None and self.remove(job.id):
            return
        job = job or self._image_job()
        if job is not None and job.id in self._jobs:
            self._jobs[job.id][1].set()

    # ---- pause, step, resume, branch the running generation -----------------------------------
    def _control(self) -> RunControl | None:
        job = self._image_job()
        return None if job is None else self._controls.get(job.id)

    @property
    def can_pause(self) -> bool:
        """A generation runs (comparisons and detections do not pause)."""
        return self._control() is not None

    @property
    def pausing(self) -> bool:
        """Pause was asked for: the running generation holds (or will at the next step)."""
        control = self._control()
        return control is not None and control.paused

    @property
    def running_request(self) -> GenerationRequest | None:
        """The running generation's request as the engine runs it (seed and size resolved,
        branches made so far); None before the engine started it."""
        control = self._control()
        return None if control is None else control.request()

    def pause(self) -> bool:
        """Hold the running generation at its next step boundary (reported as "paused")."""
        control = self._control()
        if control is not None:
            control.pause()
        return control is not None

    def step(self) -> bool:
        """Let a held generation take one more step, then hold again."""
        control = self._control()
        if control is not None:
            control.step()
        return control is not None

    def resume(self) -> bool:
        control = self._control()
        if control is not None:
            control.resume()
        return control is not None

    def branch(self, branch: Branch) -> GenerationRequest:
        """Change the held generation's settings from the step it is held at; emits "branched"
        with its request as it now stands. :class:`pipelines.errors.ValidationError` when there
        is none held at ``branch.step``, or the change cannot be made."""
        from pipelines.errors import ValidationError

        control, job = self._control(), self._image_job()
        if control is None or job is None:
            raise ValidationError("No generation is running.")
        request = control.branch(branch)
        self.event.emit(JobEvent(EventKind.BRANCHED, job, result=request))
        return request

    # ---- the waiting jobs ---------------------------------------------------------------------
    def _waiting_index(self, job_id: int) -> int | None:
        return next((i for i, job in enumerate(self._waiting) if job.id == job_id), None)

    def remove(self, job_id: int) -> bool:
        """Take a waiting job out of the queue; False when it is not waiting (any more)."""
        index = self._waiting_index(job_id)
        if index is None:
            return False
        job = self._waiting.pop(index)
        self.event.emit(JobEvent(EventKind.REMOVED, job))
        return True

    def clear_queue(self) -> int:
        """Remove every waiting job (the running one goes on); returns how many."""
        removed = list(self._waiting)
        self._waiting.clear()
        for job in removed:
            self.event.emit(JobEvent(EventKind.REMOVED, job))
        return len(removed)

    def move(self, job_id: int, offset: int) -> bool:
        """Move a waiting job ``offset`` places later (negative: earlier), within the queue."""
        index = self._waiting_index(job_id)
        if index is None:
            return False
        target = min(max(index + offset, 0), len(self._waiting) - 1)
        if target == index:
            return False
        self._waiting.insert(target, self._waiting.pop(index))
        self.event.emit(JobEvent(EventKind.REORDERED, result=self.waiting))
        return True

    def move_to_front(self, job_id: int) -> bool:
        return self.move(job_id, -len(self._waiting))

    def duplicate(self, job_id: int) -> Job | None:
        """Queue a copy of a waiting or running job (same request, seed included) right after
        it; None when the job is neither."""
        original = self._jobs[job_id][0] if job_id in self._jobs else None
        index = self._waiting_index(job_id)
        if index is not None:
            original = self._waiting[index]
        if original is None or original.kind not in IMAGE_JOBS:
            return None
        copy = replace(original, id=next_job_id())
        self._waiting.insert(0 if index is None else index + 1, copy)
        self._next()
        self.event.emit(JobEvent(EventKind.QUEUED, copy))
        return copy

    # ---- what the worker reports --------------------------------------------------------------
    def _on_preview_ready(self) -> None:
        frame = self.worker.take_preview()
        if frame is not None and frame.job_id in self._jobs:  # else: a late frame of a past job
            job = self._jobs[frame.job_id][0]
            progress = frame.step / frame.total if frame.total else 0.0
            self.event.emit(JobEvent(EventKind.PREVIEW, job, progress, frames=(frame,)))

    def _on_compare_step(self) -> None:
        frames = self.worker.take_compare_frames()
        current = [f for _, f in sorted(frames.items()) if f.job_id in self._jobs]
        if current:
            job = self._jobs[current[0].job_id][0]
            self.event.emit(JobEvent(EventKind.PREVIEW, job, frames=tuple(current)))

    def _on_worker_event(self, event: JobEvent) -> None:
        if event.kind is EventKind.LOADED:
            self.loaded_model = event.result
        if event.kind is EventKind.PAUSED:
            self.held_at = event.result
        elif event.kind is EventKind.RESUMED:
            self.held_at = None
        if event.job is not None and event.kind in ENDINGS:
            self._jobs.pop(event.job.id, None)
            self._controls.pop(event.job.id, None)
            self.held_at = None
            if event.kind is EventKind.FINISHED and event.job.kind is JobKind.GENERATE:
                from pipelines.batches import split_batch

                # A batch: each image its own entry, with its own seed.
                members = split_batch(event.result)
                saved = event.saved or (event.saved_as,)
                for member, stored in zip(members, saved + ("",) * len(members)):
                    self.history.append(HistoryEntry(member, pil_to_qimage(member.image), stored))
            elif event.kind is EventKind.FINISHED and event.job.kind is JobKind.COMPARE:
                self._compared += 1
                self.comparisons.append(ComparisonEntry(event.result, self._compared))
                del self.comparisons[:-MAX_COMPARISONS]
            self._next()  # before the event: whoever listens sees the queue as it now is
        self.event.emit(event)

    def shutdown(self) -> None:
        """Cancel every job, let the worker finish its current one, and stop (join) the thread."""
        self._waiting.clear()
        for _job, cancel in self._jobs.values():
            cancel.set()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()
