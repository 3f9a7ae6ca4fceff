"""The queue: the running job (with its live preview) and the waiting ones, which the user reorders,
duplicates and removes. It shows the session's queue and asks the session to change it; the rows
are rebuilt from the session on each queue event, so the two never disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.jobs import EventKind, Job, JobEvent, JobKind
from studio.session import ENDINGS, IMAGE_JOBS, Session

if TYPE_CHECKING:
    from pipelines.types import GenerationRequest

ICON = 40
JOB_ROLE = Qt.ItemDataRole.UserRole
QUEUE_EVENTS = (EventKind.QUEUED, EventKind.STARTED, EventKind.REMOVED, *ENDINGS)
HOLD_EVENTS = (EventKind.PAUSED, EventKind.RESUMED, EventKind.BRANCHED)


def describe(job: Job) -> str:
    """Two lines about a queued job: what it makes, then its size, sampler and seed."""
    request = job.request
    size = "native size" if request.width is None else f"{request.width}×{request.height}"
    prompt = request.prompt.replace("\n", " ") or "(no prompt)"
    prompt = prompt if len(prompt) <= 70 else prompt[:69] + "…"
    if job.kind is JobKind.COMPARE:
        samplers = ", ".join(f"{name} {steps}" for name, steps in job.samplers)
        return f"Compare: {prompt}\n{size} · {samplers} · seed {request.seed}"
    batch = f" · batch of {request.batch_size}" if request.batch_size > 1 else ""
    return (f"{prompt}\n{size} · {request.sampler} · {request.steps} steps · seed {request.seed}"
            f"{batch}")  # fmt: skip


def _branch_note(request: GenerationRequest) -> str:
    if not request.branches:
        return ""
    return "\n" + "; ".join(f"branch at step {b.step}" for b in request.branches)


class QueuePanel(QWidget):
    count_changed = Signal(int)  # jobs running and waiting

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.list = QListWidget()
        self.list.setIconSize(QSize(ICON, ICON))
        # Waiting jobs show an empty square where the running one shows its preview, so that
        # every row's text starts at the same place and every row has the same height.
        blank = QPixmap(ICON, ICON)
        blank.fill(Qt.GlobalColor.transparent)
        self._blank = QIcon(blank)
        self.list.setToolTip("The running job first, then the waiting ones in the order they run.")
        self.status = QLabel("Nothing queued. Generate or Compare adds a job here.")
        self._buttons: dict[str, QPushButton] = {}
        actions = (
            ("pause", "Pause", "Hold the running generation after its current step; press "
             "again to resume (F8).", self.pause_or_resume),
            ("step", "Step", "Let the paused generation take exactly one more step (F10).",
             self.session.step),
            ("front", "To front", "Run the selected waiting job next.", self.move_to_front),
            ("up", "Up", "Move the selected waiting job one place earlier.", self.move_up),
            ("down", "Down", "Move the selected waiting job one place later.", self.move_down),
            ("duplicate", "Duplicate", "Queue a copy of the selected job (same seed).",
             self.duplicate),
            ("remove", "Remove", "Take the selected waiting job out of the queue (Delete); "
             "the running one is cancelled.", self.remove),
            ("clear", "Clear queue", "Remove every waiting job; the running one goes on.",
             self.session.clear_queue),
        )  # fmt: skip
        buttons = QVBoxLayout()
        for key, title, tip, slot in actions:
            button = QPushButton(title)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, s=slot: s())
            buttons.addWidget(button)
            self._buttons[key] = button
        buttons.addStretch(1)
        column = QVBoxLayout()
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.list, 1)
        column.addWidget(self.status)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 4)
        layout.addLayout(column, 1)
        layout.addLayout(buttons)
        remove = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.list)
        remove.setContext(Qt.ShortcutContext.WidgetShortcut)
        remove.activated.connect(self.remove)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        session.event.connect(self._on_event)
        self.refresh()

    # ---- what the session reports -------------------------------------------------------------
    def _on_event(self, event: JobEvent) -> None:
        if event.kind is EventKind.REORDERED:
            self.refresh()
        elif event.job is not None and event.job.kind in IMAGE_JOBS:
            if event.kind in QUEUE_EVENTS:
                self.refresh()
            elif event.kind in HOLD_EVENTS:
                self._show_hold(event)
            elif event.kind is EventKind.PREVIEW and event.frames:
                self._show_preview(event.job, event.frames[-1].image)

    def _show_hold(self, event: JobEvent) -> None:
        item = self.list.item(0)
        if item is not None and item.data(JOB_ROLE) == event.job.id:
            item.setText(self._running_text(event.job))
        self._update_buttons()

    def _running_text(self, job: Job) -> str:
        held = self.session.held_at
        label = "Running" if held is None else f"Paused at step {held}"
        request = self.session.running_request or job.request
        return f"{label}  {describe(job)}" + _branch_note(request)

    def _show_preview(self, job: Job, image: QImage) -> None:
        item = self.list.item(0)
        if item is not None and item.data(JOB_ROLE) == job.id:
            pixmap = QPixmap.fromImage(image).scaled(
                ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )  # fmt: skip
            item.setIcon(QIcon(pixmap))

    def refresh(self) -> None:
        selected = self.selected_job_id()
        running, waiting = self.session.running_job, self.session.waiting
        old_icon = self.list.item(0).icon() if self.list.count() else None
        was_running = self.list.item(0).data(JOB_ROLE) if self.list.count() else None
        self.list.clear()
        jobs = ([running] if running is not None else []) + list(waiting)
        for position, job in enumerate(jobs):
            is_running = job is running
            label = f"{position + (0 if running else 1)}.  {describe(job)}"
            item = QListWidgetItem(self._running_text(job) if is_running else label)
            item.setData(JOB_ROLE, job.id)
            item.setToolTip(job.request.prompt[:500])
            if is_running and job.id == was_running and old_icon is not None:
                item.setIcon(old_icon)  # keep the live preview across rebuilds
            else:
                item.setIcon(self._blank)
            self.list.addItem(item)
            if job.id == selected:
                self.list.setCurrentItem(item)
        count = len(jobs)
        self.status.setText(
            f"{len(waiting)} waiting" + (" · 1 running" if running else "")
            if count else "Nothing queued. Generate or Compare adds a job here."
        )  # fmt: skip
        self._update_buttons()
        self.count_changed.emit(count)

    # ---- actions ------------------------------------------------------------------------------
    def selected_job_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(JOB_ROLE))

    def select_job(self, job_id: int) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(JOB_ROLE) == job_id:
                self.list.setCurrentRow(row)

    def _selected_waiting(self) -> int | None:
        job_id = self.selected_job_id()
        return job_id if any(job.id == job_id for job in self.session.waiting) else None

    def _update_buttons(self) -> None:
        waiting = [job.id for job in self.session.waiting]
        job_id = self._selected_waiting()
        index = waiting.index(job_id) if job_id is not None else -1
        self._buttons["front"].setEnabled(index > 0)
        self._buttons["up"].setEnabled(index > 0)
        self._buttons["down"].setEnabled(0 <= index < len(waiting) - 1)
        self._buttons["duplicate"].setEnabled(self.selected_job_id() is not None)
        self._buttons["remove"].setEnabled(self.selected_job_id() is not None)
        self._buttons["clear"].setEnabled(bool(waiting))
        self._buttons["pause"].setEnabled(self.session.can_pause)
        self._buttons["pause"].setText("Resume" if self.session.pausing else "Pause")
        self._buttons["step"].setEnabled(self.session.can_pause)

    def pause_or_resume(self) -> None:
        if self.session.pausing:
            self.session.resume()
        else:
            self.session.pause()
        self._update_buttons()

    def _keep_selection(self, job_id: int | None) -> None:
        if job_id is not None:
            self.select_job(job_id)

    def move_to_front(self) -> None:
        job_id = self._selected_waiting()
        if job_id is not None and self.session.move_to_front(job_id):
            self._keep_selection(job_id)

    def move_up(self) -> None:
        job_id = self._selected_waiting()
        if job_id is not None and self.session.move(job_id, -1):
            self._keep_selection(job_id)

    def move_down(self) -> None:
        job_id = self._selected_waiting()
        if job_id is not None and self.session.move(job_id, 1):
            self._keep_selection(job_id)

    def duplicate(self) -> None:
        job_id = self.selected_job_id()
        if job_id is not None:
            self.session.duplicate(job_id)

    def remove(self) -> None:
        job_id = self.selected_job_id()
        if job_id is None:
            return
        running = self.session.running_job
        if running is not None and running.id == job_id:
            self.session.cancel(running)
        else:
            self.session.remove(job_id)
