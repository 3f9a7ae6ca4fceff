"""The generation worker: one QObject living in one QThread, keeping one Engine and its model.

Slots run in the worker thread in the order their queued signals arrive, so GPU jobs — generations,
comparisons, pose/depth detection — are serialised. Heavy modules (torch, diffusers) are imported
here, in the worker thread, so the window appears before they finish loading.

Only :class:`studio.session.Session` connects to this object: it reports everything as
:class:`studio.jobs.JobEvent` through ``event``, except step previews, which wait in
:meth:`take_preview` / :meth:`take_compare_frames` so that stale ones are replaced, never queued.
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from pipelines.errors import StudioError
from pipelines.types import EngineSettings
from studio.jobs import (
    Catalog,
    CompareFrame,
    DetectionRequest,
    DetectionResult,
    EventKind,
    Job,
    JobEvent,
    JobKind,
    ModelSummary,
    PreviewFrame,
    SamplerInfo,
    readable_error,
)
from studio.qt_image import array_to_qimage

if TYPE_CHECKING:
    from pipelines.compare import CompareResult
    from pipelines.engine import Engine, LoadedModel
    from pipelines.history_store import HistoryStore
    from pipelines.run_control import HoldListener, RunControl
    from pipelines.types import GenerationResult, StepPreview

__all__ = ["GenerationWorker", "SamplerInfo", "Catalog", "ModelSummary", "readable_error"]

log = logging.getLogger(__name__)


def _summary(loaded: LoadedModel) -> ModelSummary:
    from pipelines.engine import precision_name
    from pipelines.flow import compute_dtype
    from pipelines.preview_choice import describe

    precision = precision_name(compute_dtype(loaded.pipeline))
    return ModelSummary(loaded.path, loaded.family.value, loaded.family.label, loaded.native_size,
                        describe(loaded.previews.costs), precision)  # fmt: skip


_frozen_after: set[str] = set()


def freeze_imports(stage: str) -> None:
    """Once per process and stage (after the start-up's imports, the tokenizer's; after the
    discovery's or the engine's, torch's and diffusers'), before any model exists: move the
    objects alive now (the modules' objects, over a million with torch) out of the garbage
    collector's sight. A full collection walked them all, holding the interpreter lock for about
    150-200 ms, and the window stalled whenever one fell in while it worked (BENCHMARKS.md).
    Modules live as long as the process, so this keeps nothing that would have been freed (a
    frozen object still goes when nothing refers to it; only cycles among frozen objects stay);
    models are created later and stay collectable."""
    if stage not in _frozen_after:
        _frozen_after.add(stage)
        gc.collect()
        gc.freeze()


class GenerationWorker(QObject):
    event = Signal(object)  # JobEvent
    preview_ready = Signal()  # the newest preview waits in take_preview()
    compare_step = Signal()  # newest previews wait in take_compare_frames(), one per column

    def __init__(self) -> None:
        super().__init__()
        self._config = EngineSettings()
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._job_id = 0  # the job whose steps are being previewed
        self._latest: PreviewFrame | None = None
        self._compare_latest: dict[int, CompareFrame] = {}
        self._history: HistoryStore | None = None

    # ---- previews: keep only the newest -------------------------------------------------------
    def take_preview(self) -> PreviewFrame | None:
        """Called from the GUI thread; returns the newest preview not yet shown (or None)."""
        with self._lock:
            frame, self._latest = self._latest, None
        return frame

    def _window_took_preview(self) -> bool:
        # Asked by the engine before it decodes a step: a frame the window has not taken yet would
        # only be replaced, so decoding the next one is wasted until it does (the last step always
        # comes).
        with self._lock:
            return self._latest is None

    def _on_step(self, preview: StepPreview) -> None:
        if preview.image is None:
            return
        frame = PreviewFrame(array_to_qimage(preview.image), preview.step, preview.total,
                             preview.elapsed, self._job_id)  # fmt: skip
        with self._lock:
            waiting = self._latest is not None
            self._latest = frame
        # If the GUI has not fetched the previous frame yet, its pending signal will fetch this
        # newer one instead: stale frames are replaced, never queued.
        if not waiting:
            self.preview_ready.emit()

    def take_compare_frames(self) -> dict[int, CompareFrame]:
        """Called from the GUI thread: the newest waiting frame of each column (maybe none)."""
        with self._lock:
            frames, self._compare_latest = self._compare_latest, {}
        return frames

    def _on_compare_step(self, column: int, preview: StepPreview) -> None:
        if preview.image is None:
            return
        frame = CompareFrame(column, array_to_qimage(preview.image), preview.step, preview.total,
                             preview.evaluations, preview.elapsed, self._job_id)  # fmt: skip
        with self._lock:
            waiting = bool(self._compare_latest)
            self._compare_latest[column] = frame
        # As for single runs: a frame not fetched yet is replaced by the newer one of its column.
        if not waiting:
            self.compare_step.emit()

    # ---- engine -------------------------------------------------------------------------------
    def _get_engine(self) -> Engine:
        if self._engine is None:
            from pipelines.engine import Engine

            self._engine = Engine(self._config)
            freeze_imports("engine")
        return self._engine

    def _loading(self, fraction: float, message: str) -> None:
        self.event.emit(JobEvent(EventKind.LOADING, progress=fraction, message=message))

    def _notice(self, error: BaseException) -> None:
        self.event.emit(JobEvent(EventKind.NOTICE, error=readable_error(error)))

    @Slot(object)
    def configure(self, config: EngineSettings) -> None:
        if config != self._config:
            self._config = config
            self._engine = None  # rebuilt on next use with the new device/folders

    @Slot(object, object)
    def keep_history(self, folder: Path | None, limits: tuple[int, int] = (0, 0)) -> None:
        """Keep finished images and comparisons in ``folder``, at most ``limits`` (images,
        comparisons; 0: all) of them."""
        from pipelines.history_store import HistoryStore

        self._history = None if folder is None else HistoryStore(folder, *limits)

    def _keep(self, result: GenerationResult) -> tuple[str, ...]:
        """Write a finished image (each image of a batch) to the history on disk as soon as it
        exists; the entry ids, "" for one that could not be written."""
        from pipelines.batches import split_batch
        from pipelines.export import run_details

        if self._history is None or result.image is None:
            return ()
        kept = []
        for member in split_batch(result):
            try:
                kept.append(self._history.add(member.image, member.request,
                                              run_details(member)).id)  # fmt: skip
            except Exception as error:  # the image is still shown; the user learns it was not kept
                log.exception("image not kept in the history folder")
                self.event.emit(JobEvent(EventKind.NOTICE, error="The image was not kept in the "
                                         f"history folder: {readable_error(error)}"))  # fmt: skip
                kept.append("")
        return tuple(kept)

    def _keep_comparison(self, result: CompareResult) -> tuple[str, ...]:
        """Write a finished comparison with its step history, so it reopens after a restart."""
        if self._history is None:
            return ()
        try:
            return (self._history.add_comparison(result).id,)
        except Exception as error:  # shown all the same; the user learns it was not kept
            log.exception("comparison not kept in the history folder")
            self.event.emit(JobEvent(EventKind.NOTICE, error="The comparison was not kept in the "
                                     f"history folder: {readable_error(error)}"))  # fmt: skip
            return ()

    @Slot()
    def start_up(self) -> None:
        try:
            from pipelines.samplers import DEFAULT_SAMPLER, SAMPLERS

            samplers = tuple(
                SamplerInfo(s.name, s.description, s.evaluations_per_step)
                for s in SAMPLERS.values()
            )
        except Exception as error:  # the app still opens and says why
            log.exception("sampler registry unavailable")
            self._notice(error)
            return
        catalog = Catalog(samplers, DEFAULT_SAMPLER, self._load_tokenizer())
        freeze_imports("start-up")
        self.event.emit(JobEvent(EventKind.CATALOG, result=catalog))

    def _load_tokenizer(self) -> object | None:
        try:
            from transformers import CLIPTokenizer

            from pipelines.resources import resource_path

            return CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip"))
        except Exception:  # the token counter is a convenience; the app works without it
            log.exception("tokenizer for the token counter not loaded")
            return None

    @Slot()
    def discover(self) -> None:
        try:
            from pipelines.engine import default_model_path
            from pipelines.models import discover_models

            folders = [Path(p) for p in self._config.model_folders]
            default_parent = default_model_path().parent
            if default_parent.exists():
                folders.insert(0, default_parent)
            discovery = discover_models(folders)
        except Exception as error:
            log.exception("model discovery failed")
            self._notice(error)
            return
        if self._engine is None:  # else a run came first: the engine froze them, a model may exist
            freeze_imports("discovery")  # the engine's module, and with it torch and diffusers
        self.event.emit(JobEvent(EventKind.MODELS_FOUND, result=discovery))

    @Slot(str, bool)
    def load(self, model: str, cpu_offload: bool) -> None:
        if self._engine is None:  # its import (torch, diffusers) takes seconds before any news
            self._loading(0.0, "Starting the generation engine…")
        try:
            engine = self._get_engine()
            loaded = engine.load(model, cpu_offload, on_progress=self._loading)
        except Exception as error:
            if not isinstance(error, StudioError):
                log.exception("loading %s failed", model or "the default model")
            self.event.emit(JobEvent(EventKind.LOAD_FAILED, error=readable_error(error)))
            return
        self.event.emit(JobEvent(EventKind.LOADED, result=_summary(loaded)))

    @Slot()
    def warm_up_pose_renderer(self) -> None:
        try:
            from pipelines.conditions import render_pose

            render_pose([], 8, 8)
        except Exception:  # the editor then imports it when it first draws, and says so if it fails
            log.exception("pose renderer not prepared")

    # ---- jobs ---------------------------------------------------------------------------------
    @Slot(object, object, object)
    def run(self, job: Job, cancel: threading.Event, control: RunControl | None = None) -> None:
        """Run one job; it ends with exactly one finished, cancelled or failed event. A
        generation's ``control`` pauses it between steps (reported as paused/resumed events)."""
        with self._lock:
            self._job_id = job.id
            self._latest = None
            self._compare_latest = {}
        if cancel.is_set():  # cancelled while waiting in the queue
            self.event.emit(JobEvent(EventKind.CANCELLED, job, result=self._nothing(job)))
            return
        self.event.emit(JobEvent(EventKind.STARTED, job))
        try:
            if job.kind is JobKind.DETECT:
                result = self._detect(job.request)
                cancelled = cancel.is_set()  # a detector cannot stop half way: its result is late
            else:
                engine = self._get_engine()
                already = engine.loaded
                result = self._generate(engine, job, cancel, self._reporting(job, control))
                cancelled = result.cancelled
                if engine.loaded is not already and engine.loaded is not None:
                    self.event.emit(JobEvent(EventKind.LOADED, result=_summary(engine.loaded)))
        except Exception as error:
            if not isinstance(error, StudioError):
                log.exception("%s job failed", job.kind.value)
            self.event.emit(JobEvent(EventKind.FAILED, job, error=readable_error(error)))
            return
        kind = EventKind.CANCELLED if cancelled else EventKind.FINISHED
        saved = () if cancelled else self._keep(result) if job.kind is JobKind.GENERATE else (
            self._keep_comparison(result) if job.kind is JobKind.COMPARE else ()
        )  # fmt: skip
        self.event.emit(JobEvent(kind, job, progress=0.0 if cancelled else 1.0, result=result,
                                 saved_as=saved[0] if saved else "", saved=saved))  # fmt: skip

    def _reporting(self, job: Job, control: RunControl | None) -> RunControl | None:
        def report(kind: EventKind) -> HoldListener:
            return lambda done, total: self.event.emit(
                JobEvent(kind, job, progress=done / total, result=done)
            )

        if control is not None:
            control.on_hold = report(EventKind.PAUSED)
            control.on_release = report(EventKind.RESUMED)
        return control

    def _generate(self, engine: Engine, job: Job, cancel: threading.Event,
                  control: RunControl | None = None):  # fmt: skip
        if job.kind is JobKind.COMPARE and job.request.branches:
            from pipelines.branch_compare import compare_branches

            return compare_branches(engine, job.request, on_step=self._on_compare_step,
                                    cancel=cancel, on_progress=self._loading)  # fmt: skip
        if job.kind is JobKind.COMPARE:
            from pipelines.compare import compare

            return compare(engine, job.request, list(job.samplers), on_step=self._on_compare_step,
                           cancel=cancel, on_progress=self._loading)  # fmt: skip
        return engine.run(job.request, on_step=self._on_step, cancel=cancel,
                          on_progress=self._loading, wants_preview=self._window_took_preview,
                          control=control)  # fmt: skip

    def _detect(self, request: DetectionRequest) -> DetectionResult:
        from pipelines.conditions import detect_map

        # The engine's device, so that the detectors cached by the core serve both.
        device = self._get_engine().device.type
        detected = detect_map(
            request.kind, request.image, request.width, request.height, request.resize_mode,
            request.annotator_folders, canny=request.canny, device=device,
        )  # fmt: skip
        return DetectionResult(request, detected.image, detected.people)

    @staticmethod
    def _nothing(job: Job):
        if job.kind is JobKind.COMPARE:
            from pipelines.compare import CompareResult

            return CompareResult(request=job.request, columns=[], initial_noise=None,
                                 cancelled=True)  # fmt: skip
        if job.kind is JobKind.DETECT:
            return DetectionResult(job.request)
        from pipelines.types import GenerationResult

        return GenerationResult(request=job.request, image=None, cancelled=True)
