"""The sampler comparison view: one column per sampler, scrubbed together by one step slider.

While a comparison runs, each column shows its newest preview as it arrives. A finished (or
cancelled) comparison keeps every step's preview (:class:`pipelines.compare.CompareResult`), and
the slider shows the same moment of every run: the same step index, the same fraction of each
run, or the same number of model evaluations spent (where Heun's step 2 lines up with Euler's
step 4). The difference view colours each column's distance from a reference column or from its
own final image, all on one scale.

The core modules (:mod:`pipelines.compare`, :mod:`pipelines.grids`) import torch; they are imported
only once a comparison exists, when the worker has long loaded it, so the window opens fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QImage, QKeySequence, QPainter, QPaintEvent, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pipelines.errors import StudioError
from studio.jobs import CompareFrame, EventKind, JobEvent, JobKind
from studio.qt_image import array_to_qimage, paint_image
from studio.scrubbing import OWN_FINAL, Change, StepScrubber

if TYPE_CHECKING:
    from pipelines.compare import CompareResult
    from pipelines.types import GenerationRequest
    from studio.session import Session
    from studio.settings import StudioSettings

__all__ = ["CompareView", "OWN_FINAL"]

ALIGN_MODES = (
    ("step", "Step index",
     "Every column shows the same step number; a shorter run holds its last step."),
    ("fraction", "Fraction of the run",
     "Every column shows the same fraction of its own steps (step 5 of 10 beside step 10 of 20)."),
    ("evaluations", "Model evaluations",
     "Every column shows the step reached after the same number of model evaluations: a "
     "2-evaluation sampler (Heun, DPM2) lines up with a 1-evaluation one by the work spent."),
)  # fmt: skip
PLAY_INTERVAL_MS = 250
GRID_PATTERN = "{date}-compare-{index:03d}-{seed}.png"


def _free_path(path: Path) -> Path:
    candidate, counter = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
        counter += 1
    return candidate


class ImageArea(QWidget):
    """Paints one image scaled to fit, keeping its aspect; pixels stay sharp when magnified."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.placeholder = "Waiting for the first step…"
        self.setMinimumSize(64, 64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None) -> None:
        self.image = image
        self.update()

    def image_rect(self) -> QRectF:
        if self.image is None or self.image.isNull():
            return QRectF()
        scale = min(self.width() / self.image.width(), self.height() / self.image.height())
        w, h = self.image.width() * scale, self.image.height() * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        target = self.image_rect()
        smooth = self.image is not None and target.width() < self.image.width()
        paint_image(painter, self.rect(), self.image, target, smooth, self.placeholder)
        painter.end()


class ColumnView(QWidget):
    """One sampler: its name, the picture at the chosen step, and step · evaluations · time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        font = QFont(self.title.font())
        font.setBold(True)
        self.title.setFont(font)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_area = ImageArea()
        self.info = QLabel()
        self.info.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.image_area, 1)
        layout.addWidget(self.info)

    @property
    def image(self) -> QImage | None:
        return self.image_area.image

    def set_content(self, image: QImage | None, title: str, info: str, tip: str = "") -> None:
        self.image_area.set_image(image)
        self.title.setText(title)
        self.info.setText(info)
        self.setToolTip(tip or title)


class ScaleLegend(QWidget):
    """The difference view's colour scale, from identical (0) to the largest difference shown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scale_max = 1.0
        self._ramp: QImage | None = None
        self.setFixedHeight(34)
        self.setToolTip(
            "Colour scale of the difference view: the mean absolute difference over the red, "
            "green and blue channels (0–255), from black (identical) to pale yellow (the largest "
            "difference shown in any column)."
        )

    def set_scale(self, scale_max: float) -> None:
        self.scale_max = scale_max
        self.update()

    def _ramp_image(self) -> QImage:
        if self._ramp is None:
            from pipelines.compare import difference

            ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
            coloured, _ = difference(ramp, np.zeros_like(ramp), scale_max=255)
            self._ramp = array_to_qimage(coloured)
        return self._ramp

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        bar = QRectF(8, 2, max(1, self.width() - 16), 14)
        painter.drawImage(bar, self._ramp_image())
        painter.setPen(self.palette().windowText().color())
        baseline = bar.bottom() + metrics.ascent() + 2
        painter.drawText(int(bar.left()), int(baseline), "0 (identical)")
        top = f"{self.scale_max:.0f} (largest difference shown, of 255)"
        painter.drawText(int(bar.right() - metrics.horizontalAdvance(top)), int(baseline), top)
        painter.end()


class CompareView(QWidget):
    """Shows live and finished comparisons from ``session``; exports into ``settings``' folder."""

    problem = Signal(str)  # an export failed: the window shows the message
    message = Signal(str)  # a status line (file written, comparison done)

    def __init__(
        self, session: Session, settings: StudioSettings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.scrubber = StepScrubber()  # what a finished (or cancelled) comparison shows
        self.columns: list[ColumnView] = []
        self._live: list[tuple[str, int]] | None = None  # (sampler, steps) of the running columns
        self._live_steps: dict[int, int] = {}
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(PLAY_INTERVAL_MS)
        self.play_timer.timeout.connect(self._play_tick)
        self._build()
        self._connect()
        self._show_empty()

    # ---- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        self.legend = ScaleLegend()
        top, view_row = self._build_view_options()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(view_row)
        layout.addWidget(self.grid_widget, 1)
        layout.addWidget(self.legend)
        layout.addLayout(self._build_scrubber())
        layout.addLayout(self._build_export_row())
        self._bind_keys()

    def _build_view_options(self) -> tuple[QHBoxLayout, QHBoxLayout]:
        """The comparison history and status, then how the columns are lined up and shown."""
        self.history_combo = QComboBox()
        self.history_combo.setToolTip(
            "Finished comparisons of this session (the last ten): choose one to reopen it."
        )
        self.history_combo.setMinimumContentsLength(18)
        self.history_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.align_combo = QComboBox()
        for mode, label, tip in ALIGN_MODES:
            self.align_combo.addItem(label, mode)
            self.align_combo.setItemData(
                self.align_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole
            )
        self.align_combo.setToolTip(
            "How the slider lines the columns up: by step index, by fraction of each run, or by "
            "model evaluations spent."
        )
        self.difference_check = QCheckBox("Difference")
        self.difference_check.setToolTip(
            "Show each column's absolute difference from the reference instead of its picture."
        )
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip(
            "The reference of the difference view: one column at the same aligned moment, or "
            "each column's own final image (how far each step still is from where it ends)."
        )
        self.final_check = QCheckBox("Final images")
        self.final_check.setToolTip(
            "Show each column's final decoded image instead of the step preview (the slider "
            "then has no effect)."
        )
        self.status = QLabel()
        self.status.setToolTip("What the comparison is doing.")

        self.reference_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        top = QHBoxLayout()
        top.addWidget(QLabel("Comparison"))
        top.addWidget(self.history_combo, 1)
        top.addWidget(self.status)
        view_row = QHBoxLayout()
        view_row.addWidget(QLabel("Align by"))
        view_row.addWidget(self.align_combo)
        view_row.addSpacing(12)
        view_row.addWidget(self.difference_check)
        view_row.addWidget(self.reference_combo)
        view_row.addSpacing(12)
        view_row.addWidget(self.final_check)
        view_row.addStretch(1)
        return top, view_row

    def _build_scrubber(self) -> QHBoxLayout:
        self.back_button = QToolButton()
        self.back_button.setText("◀")
        self.back_button.setToolTip("One step back (Left).")
        self.play_button = QPushButton("▶ Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play the steps of every column together (Space).")
        self.forward_button = QToolButton()
        self.forward_button.setText("▶")
        self.forward_button.setToolTip("One step forward (Right).")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip(
            "Scrub all columns together (Left/Right: one step, Home/End: first/last, Space: "
            "play/pause)."
        )
        self.position_label = QLabel()
        self.position_label.setMinimumWidth(140)
        self.position_label.setToolTip("The slider's position in the chosen alignment.")
        scrub = QHBoxLayout()
        for widget in (self.back_button, self.play_button, self.forward_button):
            scrub.addWidget(widget)
        scrub.addWidget(self.slider, 1)
        scrub.addWidget(self.position_label)
        return scrub

    def _build_export_row(self) -> QHBoxLayout:
        self.save_grid_button = QPushButton("Save grid…")
        self.save_grid_button.setToolTip(
            "Save the final images side by side, labelled, as one PNG carrying the shared settings."
        )
        self.save_animation_button = QPushButton("Save animation…")
        self.save_animation_button.setToolTip(
            "Save the whole grid over the steps as an animated WebP or GIF."
        )
        self.save_columns_button = QPushButton("Save columns…")
        self.save_columns_button.setToolTip(
            "Save each column's final image as its own PNG (with that column's settings) into a "
            "new folder inside the chosen one."
        )
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setToolTip("Steps completed over all columns of the running comparison.")
        bottom = QHBoxLayout()
        for widget in (
            self.save_grid_button,
            self.save_animation_button,
            self.save_columns_button,
        ):
            bottom.addWidget(widget)
        bottom.addStretch(1)
        bottom.addWidget(self.progress)
        return bottom

    def _bind_keys(self) -> None:
        def key(sequence: Qt.Key, slot: Callable[[], object]) -> None:
            shortcut = QShortcut(QKeySequence(sequence), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

        key(Qt.Key.Key_Left, self.step_back)
        key(Qt.Key.Key_Right, self.step_forward)
        key(Qt.Key.Key_Space, self.toggle_play)
        key(Qt.Key.Key_Home, lambda: self.scrubber.set_position(1))
        key(Qt.Key.Key_End, lambda: self.scrubber.set_position(self.scrubber.top))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def _connect(self) -> None:
        self.session.event.connect(self._on_event)
        self.scrubber.subscribe(self._on_scrubber)
        self.history_combo.activated.connect(self.show_comparison)
        self.align_combo.currentIndexChanged.connect(
            lambda _: self.scrubber.set_alignment(self.align_combo.currentData())
        )
        self.difference_check.toggled.connect(self._view_changed)
        self.reference_combo.currentIndexChanged.connect(self._view_changed)
        self.final_check.toggled.connect(self._view_changed)
        self.slider.valueChanged.connect(self.scrubber.set_position)
        self.back_button.clicked.connect(self.step_back)
        self.forward_button.clicked.connect(self.step_forward)
        self.play_button.clicked.connect(lambda _=False: self.toggle_play())
        self.save_grid_button.clicked.connect(lambda: self.save_grid())
        self.save_animation_button.clicked.connect(lambda: self.save_animation())
        self.save_columns_button.clicked.connect(lambda: self.save_columns())

    def _set_columns(self, count: int) -> None:
        while self.grid.count():
            widget = self.grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.columns = [ColumnView() for _ in range(count)]
        if not count:
            return
        from pipelines.grids import columns_per_row  # the exported grid's own layout

        per_row = columns_per_row(count)
        for position, column in enumerate(self.columns):
            self.grid.addWidget(column, position // per_row, position % per_row)

    def _set_controls(self) -> None:
        shown = self.result is not None and self._live is None
        has_steps = shown and self.result.max_steps > 0
        for widget in (self.slider, self.back_button, self.forward_button, self.play_button):
            widget.setEnabled(has_steps)
        for widget in (self.align_combo, self.difference_check, self.final_check):
            widget.setEnabled(has_steps)
        self.reference_combo.setEnabled(has_steps and self.difference_check.isChecked())
        finished = [c for c in self.result.columns if c.image is not None] if shown else []
        self.save_grid_button.setEnabled(shown and bool(self.result.columns))
        self.save_animation_button.setEnabled(has_steps)
        self.save_columns_button.setEnabled(bool(finished))
        self.history_combo.setEnabled(self._live is None and self.history_combo.count() > 0)
        self.progress.setVisible(self._live is not None)

    def _show_empty(self) -> None:
        self._set_columns(0)
        self.status.setText(
            "Tick samplers in the Sampler panel's compare mode, then Compare (Ctrl+Shift+Enter)."
        )
        self.position_label.setText("")
        self.legend.hide()
        self._set_controls()

    # ---- a running comparison -----------------------------------------------------------------
    def _on_event(self, event: JobEvent) -> None:
        if not event.is_for(JobKind.COMPARE):
            return
        if event.kind is EventKind.STARTED:
            self._on_started(event.job.request, event.job.samplers)
        elif event.kind is EventKind.PREVIEW:
            self._on_step(event.frames)
        elif event.kind is EventKind.FINISHED:
            self._refresh_history()
            self._on_finished(event.result)
        elif event.kind is EventKind.CANCELLED:
            self._on_cancelled(event.result)
        elif event.kind is EventKind.FAILED:
            self._on_failed(event.error)

    def _on_started(self, request: GenerationRequest, entries: Sequence[tuple[str, int]]) -> None:
        self.stop()
        self._live = list(entries)
        self.scrubber.show(None)
        self._live_steps = {}
        self._set_columns(len(entries))
        for column, (sampler, steps) in zip(self.columns, self._live):
            column.set_content(None, sampler, f"0/{steps} steps", f"{sampler}, {steps} steps")
        self.progress.setRange(0, sum(steps for _, steps in self._live))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m steps")
        self.status.setText(f"Comparing {len(entries)} samplers…")
        self.position_label.setText("live")
        self.legend.hide()
        self._set_controls()

    def _on_step(self, frames: Sequence[CompareFrame]) -> None:
        if self._live is None:
            return  # a late frame of a run already over
        for frame in frames:
            index = frame.column
            if not 0 <= index < len(self.columns):
                continue
            sampler = self._live[index][0]
            info = (f"step {frame.step}/{frame.total} · {frame.evaluations} evals · "
                    f"{frame.elapsed:.2f} s")  # fmt: skip
            self.columns[index].set_content(frame.image, sampler, info)
            self._live_steps[index] = frame.step
        self.progress.setValue(sum(self._live_steps.values()))

    def _on_finished(self, result: CompareResult) -> None:
        self._live = None
        self.show_result(result)
        seconds = result.timings.get("total", 0.0)
        self.status.setText(f"Done in {seconds:.1f} s · seed {result.request.seed}")
        self.message.emit(f"Comparison finished (seed {result.request.seed}).")

    def _on_cancelled(self, result: CompareResult) -> None:
        self._live = None
        if result.columns and result.max_steps:
            self.show_result(result)  # the steps made before the cancel stay viewable
        else:
            self._show_empty()
        self.status.setText("Cancelled: every column stopped.")

    def _on_failed(self, message: str) -> None:
        if self._live is None:
            return
        self._live = None
        self._show_empty()
        self.status.setText("The comparison failed (see the message above).")

    @property
    def live(self) -> bool:
        return self._live is not None

    # ---- history ------------------------------------------------------------------------------
    def _refresh_history(self) -> None:
        self.history_combo.blockSignals(True)
        self.history_combo.clear()
        for entry in self.session.comparisons:
            self.history_combo.addItem(entry.title)
            self.history_combo.setItemData(
                self.history_combo.count() - 1, entry.title, Qt.ItemDataRole.ToolTipRole
            )
        self.history_combo.setCurrentIndex(self.history_combo.count() - 1)
        self.history_combo.blockSignals(False)
        self._set_controls()

    def show_comparison(self, index: int) -> None:
        """Reopen the comparison at ``index`` of the session's comparison history."""
        if self._live is not None or not 0 <= index < len(self.session.comparisons):
            return
        self.history_combo.setCurrentIndex(index)
        entry = self.session.comparisons[index]
        self.show_result(entry.result)
        self.status.setText(f"Comparison {entry.title}")

    # ---- a comparison with its step history ---------------------------------------------------
    @property
    def result(self) -> CompareResult | None:
        """The comparison shown (finished or cancelled); None while one runs."""
        return self.scrubber.result

    @property
    def scale_max(self) -> float:
        return self.scrubber.scale_max

    def show_result(self, result: CompareResult) -> None:
        self.stop()
        self._set_columns(len(result.columns))
        self.reference_combo.blockSignals(True)
        previous = self.reference_combo.currentData()
        self.reference_combo.clear()
        self.reference_combo.addItem("Own final image", OWN_FINAL)
        for number, column in enumerate(result.columns):
            self.reference_combo.addItem(f"vs {number + 1}. {column.sampler}", number)
        found = self.reference_combo.findData(previous if previous is not None else OWN_FINAL)
        self.reference_combo.setCurrentIndex(max(0, found))
        self.reference_combo.blockSignals(False)
        self.scrubber.show(result, self.reference_combo.currentData())

    @property
    def align_mode(self) -> str:
        return self.scrubber.alignment

    def set_align_mode(self, mode: str) -> None:
        self.align_combo.setCurrentIndex(max(0, self.align_combo.findData(mode)))

    def shown_indices(self) -> list[int]:
        """Each column's step-history index at the slider's position (-1: no steps)."""
        return self.scrubber.shown_indices()

    def _view_changed(self, *_args: object) -> None:
        self.scrubber.set_view(
            final=self.final_check.isChecked(),
            difference=self.difference_check.isChecked(),
            reference=self.reference_combo.currentData() if self.reference_combo.count() else None,
        )

    def _on_scrubber(self, what: Change) -> None:
        if what in ("result", "range", "position"):
            self.slider.blockSignals(True)
            top = self.scrubber.top
            self.slider.setRange(1, top)
            self.slider.setPageStep(max(1, top // 10))
            self.slider.setValue(self.scrubber.position)
            self.slider.blockSignals(False)
        if what == "result":
            self._set_controls()
        self.refresh()

    def refresh(self, *_args: object) -> None:
        """Repaint every column for the slider, alignment and difference settings."""
        if self.result is None or self._live is not None:
            return
        self._set_controls()
        for view, shown in zip(self.columns, self.scrubber.columns()):
            picture = None if shown.picture is None else array_to_qimage(shown.picture)
            view.set_content(picture, shown.title, shown.info, shown.tip)
        if self.scrubber.difference:
            self.legend.set_scale(self.scrubber.scale_max)
        self.legend.setVisible(self.scrubber.difference)
        self.position_label.setText(self.scrubber.position_text())

    # ---- scrubbing ----------------------------------------------------------------------------
    def step_forward(self) -> None:
        self.scrubber.step(1)

    def step_back(self) -> None:
        self.scrubber.step(-1)

    @property
    def playing(self) -> bool:
        return self.play_timer.isActive()

    def toggle_play(self) -> None:
        if self.playing:
            self.stop()
            return
        if self.result is None or self._live is not None or not self.slider.isEnabled():
            self.play_button.setChecked(False)
            return
        if self.scrubber.at_end:
            self.scrubber.set_position(1)
        self.play_timer.start()
        self.play_button.setChecked(True)
        self.play_button.setText("⏸ Pause")

    def stop(self) -> None:
        self.play_timer.stop()
        self.play_button.setChecked(False)
        self.play_button.setText("▶ Play")

    def _play_tick(self) -> None:
        if self.scrubber.at_end:
            self.stop()
        else:
            self.step_forward()

    # ---- export -------------------------------------------------------------------------------
    def _exportable(self):
        if self.result is None or self._live is not None:
            self.message.emit("No finished comparison to save yet.")
            return None
        return self.result

    def _default_path(self, suffix: str) -> Path:
        from pipelines.export import next_free_path

        folder = Path(self.settings.output_folder)
        path = next_free_path(folder, GRID_PATTERN, self.result.request)
        return _free_path(path.with_suffix(suffix))

    def _ask_path(self, title: str, suffix: str, filters: str) -> Path | None:
        path, chosen = QFileDialog.getSaveFileName(
            self, title, str(self._default_path(suffix)), filters
        )
        if not path:
            return None
        path = Path(path)
        if not path.suffix:  # the filter's suffix when none was typed
            path = path.with_suffix(
                ".gif" if "*.gif" in chosen and "webp" not in chosen else suffix
            )
        return path

    def _write(
        self, what: str, write: Callable[[Path, bool], Path], path: Path, overwrite: bool
    ) -> Path | None:
        try:
            if not overwrite:
                path.parent.mkdir(parents=True, exist_ok=True)
            written = write(path, overwrite)
        except (StudioError, OSError) as error:
            self.problem.emit(f"Could not save the {what}: {error}")
            return None
        self.message.emit(f"Saved {written}")
        return written

    def save_grid(self, path: str | Path | None = None) -> Path | None:
        """Write the labelled grid PNG: to ``path`` (never replacing a file) or a chosen one."""
        result = self._exportable()
        if result is None:
            return None
        from pipelines.grids import save_grid

        overwrite = path is None  # the file dialog already asked before replacing
        if path is None:
            path = self._ask_path("Save comparison grid", ".png", "PNG images (*.png)")
            if path is None:
                return None
        return self._write(
            "grid", lambda p, o: save_grid(result, p, overwrite=o), Path(path), overwrite
        )

    def save_animation(self, path: str | Path | None = None) -> Path | None:
        """Write the grid over the steps as an animated WebP or GIF (by the suffix)."""
        result = self._exportable()
        if result is None:
            return None
        from pipelines.grids import save_animation

        overwrite = path is None
        if path is None:
            path = self._ask_path(
                "Save comparison animation", ".webp", "Animated WebP (*.webp);;GIF (*.gif)"
            )
            if path is None:
                return None
        return self._write(
            "animation",
            lambda p, o: save_animation(result, p, duration_ms=PLAY_INTERVAL_MS, overwrite=o),
            Path(path),
            overwrite,
        )

    def save_columns(self, folder: str | Path | None = None) -> list[Path]:
        """Each column's final image into a new folder inside ``folder`` (or a chosen one)."""
        result = self._exportable()
        if result is None:
            return []
        from pipelines.grids import save_columns

        if folder is None:
            folder = QFileDialog.getExistingDirectory(
                self, "Save each column's image into a new folder in…", self.settings.output_folder
            )
            if not folder:
                return []
        target = _free_path(Path(folder) / f"compare-{result.request.seed}")
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            written = save_columns(result, target)
        except (StudioError, OSError) as error:
            self.problem.emit(f"Could not save the columns: {error}")
            return []
        self.message.emit(f"Saved {len(written)} image(s) to {target}")
        return written
