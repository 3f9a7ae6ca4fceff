"""The generation worker: one QObject living in one QThread, keeping one Engine and its model.

Slots run in the worker thread in the order their queued signals arrive, so GPU jobs are
serialised. Heavy modules (torch, diffusers) are imported here, in the worker thread, so the
window appears before they finish loading.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from pipelines.errors import StudioError
from studio.qt_image import array_to_qimage
from studio.settings import EngineConfig

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class PreviewFrame:
    image: QImage
    step: int
    total: int
    elapsed: float


@dataclass(frozen=True)
class CompareFrame:
    """The newest preview of one comparison column."""

    column: int
    image: QImage
    step: int
    total: int
    evaluations: int
    elapsed: float


def readable_error(error: BaseException) -> str:
    if isinstance(error, StudioError):
        return str(error)
    if isinstance(error, MemoryError):
        return "The computer ran out of memory. Lower the size or close other programs."
    # A bug, not a user error: the message still names it, the log keeps the traceback.
    return f"Unexpected error ({type(error).__name__}): {error}. Details are in the log."


class GenerationWorker(QObject):
    catalog_ready = Signal(object)  # Catalog
    models_found = Signal(object)  # pipelines.models.Discovery
    loading = Signal(float, str)  # fraction, message
    loaded = Signal(object)  # ModelSummary
    load_failed = Signal(str)
    preview_ready = Signal()  # the newest preview waits in take_preview()
    finished = Signal(object)  # GenerationResult
    cancelled = Signal(object)  # GenerationResult with cancelled=True
    failed = Signal(str)  # the run failed
    compare_step = Signal()  # newest previews wait in take_compare_frames(), one per column
    compare_finished = Signal(object)  # pipelines.compare.CompareResult
    notice = Signal(str)  # a problem outside a run (discovery, start-up)

    def __init__(self) -> None:
        super().__init__()
        self._config = EngineConfig()
        self._engine = None
        self._lock = threading.Lock()
        self._latest: PreviewFrame | None = None
        self._compare_latest: dict[int, CompareFrame] = {}

    # ---- previews: keep only the newest -------------------------------------------------------
    def take_preview(self) -> PreviewFrame | None:
        """Called from the GUI thread; returns the newest preview not yet shown (or None)."""
        with self._lock:
            frame, self._latest = self._latest, None
        return frame

    def _on_step(self, preview) -> None:
        if preview.image is None:
            return
        frame = PreviewFrame(array_to_qimage(preview.image), preview.step, preview.total,
                             preview.elapsed)  # fmt: skip
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

    def _on_compare_step(self, column: int, preview) -> None:
        if preview.image is None:
            return
        frame = CompareFrame(column, array_to_qimage(preview.image), preview.step, preview.total,
                             preview.evaluations, preview.elapsed)  # fmt: skip
        with self._lock:
            waiting = bool(self._compare_latest)
            self._compare_latest[column] = frame
        # As for single runs: a frame not fetched yet is replaced by the newer one of its column.
        if not waiting:
            self.compare_step.emit()

    # ---- engine -------------------------------------------------------------------------------
    def _get_engine(self):
        if self._engine is None:
            from pipelines.engine import Engine, EngineSettings

            config = self._config
            self._engine = Engine(
                EngineSettings(
                    model_folders=tuple(Path(p) for p in config.model_folders),
                    annotator_folders=tuple(Path(p) for p in config.annotator_folders),
                    device=config.device,
                    precision=config.precision,
                    allow_pickle=config.allow_pickle,
                )
            )
        return self._engine

    @Slot(object)
    def configure(self, config: EngineConfig) -> None:
        if config != self._config:
            self._config = config
            self._engine = None  # rebuilt on next use with the new device/folders

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
            self.notice.emit(readable_error(error))
            return
        self.catalog_ready.emit(Catalog(samplers, DEFAULT_SAMPLER, self._load_tokenizer()))

    def _load_tokenizer(self):
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
            self.models_found.emit(discover_models(folders))
        except Exception as error:
            log.exception("model discovery failed")
            self.notice.emit(readable_error(error))

    @Slot(str, bool)
    def load(self, model: str, cpu_offload: bool) -> None:
        try:
            engine = self._get_engine()
            loaded = engine.load(model, cpu_offload, on_progress=self.loading.emit)
        except Exception as error:
            if not isinstance(error, StudioError):
                log.exception("loading %s failed", model or "the default model")
            self.load_failed.emit(readable_error(error))
            return
        self.loaded.emit(
            ModelSummary(loaded.path, loaded.family.value, loaded.family.label, loaded.native_size)
        )

    @Slot(object, object)
    def generate(self, request, cancel: threading.Event) -> None:
        with self._lock:
            self._latest = None
        try:
            if cancel.is_set():  # cancelled while waiting in the queue
                from pipelines.types import GenerationResult

                self.cancelled.emit(GenerationResult(request=request, image=None, cancelled=True))
                return
            engine = self._get_engine()
            already = engine.loaded
            result = engine.run(
                request, on_step=self._on_step, cancel=cancel, on_progress=self.loading.emit
            )
            self._report_loaded(engine, already)
        except Exception as error:
            if not isinstance(error, StudioError):
                log.exception("generation failed")
            self.failed.emit(readable_error(error))
            return
        (self.cancelled if result.cancelled else self.finished).emit(result)

    def _report_loaded(self, engine, already) -> None:
        loaded = engine.loaded
        if loaded is not already and loaded is not None:
            self.loaded.emit(
                ModelSummary(loaded.path, loaded.family.value, loaded.family.label,
                             loaded.native_size)
            )  # fmt: skip

    @Slot(object, object, object)
    def compare(self, request, samplers, cancel: threading.Event) -> None:
        """Run ``request`` through several samplers (see :func:`pipelines.compare.compare`)."""
        with self._lock:
            self._compare_latest = {}
        try:
            from pipelines.compare import CompareResult, compare

            if cancel.is_set():  # cancelled while waiting in the queue
                self.cancelled.emit(
                    CompareResult(request=request, columns=[], initial_noise=None, cancelled=True)
                )
                return
            engine = self._get_engine()
            already = engine.loaded
            result = compare(
                engine,
                request,
                list(samplers),
                on_step=self._on_compare_step,
                cancel=cancel,
                on_progress=self.loading.emit,
            )
            self._report_loaded(engine, already)
        except Exception as error:
            if not isinstance(error, StudioError):
                log.exception("sampler comparison failed")
            self.failed.emit(readable_error(error))
            return
        (self.cancelled if result.cancelled else self.compare_finished).emit(result)
