"""The session: the worker thread's lifetime, the run in progress, and the history of results.

Widgets talk to the worker only through this object. Requests go out by queued signals; the cancel
flag is a ``threading.Event`` set directly from the GUI thread, because the worker is busy inside
the denoising loop and would only see a queued cancel signal after the run ended.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from studio.qt_image import pil_to_qimage
from studio.settings import EngineConfig
from studio.worker import GenerationWorker


@dataclass
class HistoryEntry:
    result: object  # pipelines.types.GenerationResult (finished, with an image)
    image: QImage

    @property
    def request(self):
        return self.result.request


MAX_COMPARISONS = 10  # each holds up to ~80 MB of step previews; the oldest is dropped first


@dataclass
class ComparisonEntry:
    result: object  # pipelines.compare.CompareResult (finished, every column with an image)
    number: int  # 1, 2, … in the order the comparisons finished this session

    @property
    def request(self):
        return self.result.request

    @property
    def title(self) -> str:
        names = ", ".join(c.sampler for c in self.result.columns)
        return f"#{self.number}: {names} · seed {self.request.seed}"


def compare_entries(samplers, default_steps: int) -> list[tuple[str, int]]:
    """(name, steps) pairs from names or (name, steps) pairs; steps <= 0 means the request's."""
    entries = []
    for entry in samplers:
        name, steps = (entry, 0) if isinstance(entry, str) else entry
        entries.append((name, int(steps) if steps and int(steps) > 0 else default_steps))
    return entries


class Session(QObject):
    # Outgoing requests to the worker (queued: the worker lives in another thread).
    _configure = Signal(object)
    _start_up = Signal()
    _discover = Signal()
    _load = Signal(str, bool)
    _generate = Signal(object, object)
    _compare = Signal(object, object, object)

    # Re-emitted in the GUI thread once the session's own state is updated, so that listeners
    # (the window, tests) always see the history and the busy flag already consistent.
    busy_changed = Signal(bool)
    history_added = Signal(object)  # HistoryEntry
    finished = Signal(object)  # GenerationResult
    cancelled = Signal(object)  # GenerationResult
    failed = Signal(str)
    compare_started = Signal(object, object)  # request, [(sampler, steps), …]
    compare_step = Signal()  # newest column previews wait in take_compare_frames()
    compare_finished = Signal(object)  # CompareResult, already in the comparison history
    compare_cancelled = Signal(object)  # CompareResult with the previews made before the cancel
    comparison_added = Signal(object)  # ComparisonEntry

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history: list[HistoryEntry] = []
        self.comparisons: list[ComparisonEntry] = []
        self._compared = 0
        self._job = ""  # "generate" or "compare" while busy
        self.loaded_model = None  # worker.ModelSummary once a model is loaded
        self._cancel: threading.Event | None = None
        self._busy = False
        self.thread = QThread()
        self.thread.setObjectName("generation-worker")
        self.worker = GenerationWorker()
        self.worker.moveToThread(self.thread)
        self.thread.finished.connect(self.worker.deleteLater)
        self._configure.connect(self.worker.configure)
        self._start_up.connect(self.worker.start_up)
        self._discover.connect(self.worker.discover)
        self._load.connect(self.worker.load)
        self._generate.connect(self.worker.generate)
        self._compare.connect(self.worker.compare)
        self.worker.compare_step.connect(self.compare_step)
        self.worker.compare_finished.connect(self._on_compare_finished)
        self.worker.finished.connect(self._on_finished)
        self.worker.cancelled.connect(self._on_cancelled)
        self.worker.failed.connect(self._on_failed)
        self.worker.loaded.connect(self._on_loaded)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    # ---- requests -----------------------------------------------------------------------------
    def configure(self, config: EngineConfig) -> None:
        self._configure.emit(config)

    def start_up(self) -> None:
        self._start_up.emit()

    def discover(self) -> None:
        self._discover.emit()

    def load(self, model: str, cpu_offload: bool = False) -> None:
        self._load.emit(model, cpu_offload)

    def generate(self, request) -> bool:
        if self._busy:
            return False
        self._cancel = threading.Event()
        self._job = "generate"
        self._set_busy(True)
        self._generate.emit(request, self._cancel)
        return True

    def compare(self, request, samplers) -> bool:
        """Run ``request`` once per sampler (names or (name, steps)); False while busy."""
        if self._busy:
            return False
        entries = compare_entries(samplers, request.steps)
        self._cancel = threading.Event()
        self._job = "compare"
        self._set_busy(True)
        self.compare_started.emit(request, entries)
        self._compare.emit(request, entries, self._cancel)
        return True

    @property
    def comparing(self) -> bool:
        return self._busy and self._job == "compare"

    def take_compare_frames(self):
        return self.worker.take_compare_frames()

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def take_preview(self):
        return self.worker.take_preview()

    # ---- results ------------------------------------------------------------------------------
    def _on_loaded(self, summary) -> None:
        self.loaded_model = summary

    def _on_finished(self, result) -> None:
        entry = HistoryEntry(result, pil_to_qimage(result.image))
        self.history.append(entry)
        self._done()
        self.history_added.emit(entry)
        self.finished.emit(result)

    def _on_cancelled(self, result) -> None:
        job = self._job
        self._done()
        (self.compare_cancelled if job == "compare" else self.cancelled).emit(result)

    def _on_compare_finished(self, result) -> None:
        self._compared += 1
        entry = ComparisonEntry(result, self._compared)
        self.comparisons.append(entry)
        del self.comparisons[:-MAX_COMPARISONS]
        self._done()
        self.comparison_added.emit(entry)
        self.compare_finished.emit(result)

    def _on_failed(self, message: str) -> None:
        self._done()
        self.failed.emit(message)

    def _done(self) -> None:
        self._cancel = None
        self._job = ""
        self._set_busy(False)

    def shutdown(self) -> None:
        """Cancel any run, let the worker finish its current slot, and stop the thread."""
        self.cancel()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()
