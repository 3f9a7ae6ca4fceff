"""The main window: wires the panels, the canvas and the history to the session's worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pipelines.errors import StudioError
from pipelines.history_store import HistoryStore, history_folder
from pipelines.types import Branch, GenerationRequest
from studio.about import show_about
from studio.jobs import Catalog, EventKind, Job, JobEvent, JobKind, ModelSummary, PreviewFrame
from studio.qt_image import pil_to_qimage
from studio.session import ENDINGS, Session
from studio.settings import StudioSettings
from studio.source_image import planned_steps
from studio.widgets.canvas import Canvas, RunScrubBar
from studio.widgets.compare_view import CompareView
from studio.widgets.control_panel import ControlPanel, EditorContext
from studio.widgets.gallery import Gallery, Key
from studio.widgets.hires_box import HiresBox
from studio.widgets.map_view import MapView
from studio.widgets.mask_layer import MaskLayer
from studio.widgets.prompt_ideas import BundledModelGuide
from studio.widgets.prompt_panel import PromptPanel, snap8
from studio.widgets.queue_panel import QueuePanel
from studio.widgets.rework_panel import ReworkPanel
from studio.widgets.sampler_panel import SamplerPanel
from studio.widgets.settings_dialog import SettingsDialog

if TYPE_CHECKING:
    from pipelines.compare import CompareResult
    from pipelines.models import Discovery
    from pipelines.types import GenerationResult
    from studio.history_export import ExportSource

log = logging.getLogger(__name__)
Action = tuple[str, Callable[[], object]]  # a message bar button: its title and what it does

WORKER_WAITS_FOR_HISTORY_S = 1.0  # at most, for the history strip's rows before loading starts
NO_MODEL_HELP = (
    " To choose a model, use the “…” button beside Model (a .safetensors file or a diffusers "
    "folder), or add the folder holding your models in File → Settings → Model folders."
)


class MessageBar(QWidget):
    """An inline, non-modal message above the canvas: the window stays usable while it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setObjectName("message")
        self._actions: list[QPushButton] = []
        close = QPushButton("✕")
        close.setFlat(True)
        close.setFixedWidth(28)
        close.setToolTip("Hide this message.")
        close.clicked.connect(self.hide)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 4, 4)
        self._layout.addWidget(self.label, 1)
        self._layout.addWidget(close)
        self.setAutoFillBackground(True)
        self.hide()

    def show_message(self, text: str, error: bool = True, actions: Sequence[Action] = ()) -> None:
        for button in self._actions:
            button.deleteLater()
        self._actions = []
        for title, slot in actions:
            button = QPushButton(title)
            button.clicked.connect(slot)
            self._layout.insertWidget(self._layout.count() - 1, button)
            self._actions.append(button)
        colour = "#5a2626" if error else "#264a5a"
        self.setStyleSheet(f"MessageBar {{ background: {colour}; }}")
        self.label.setText(text)
        self.label.setToolTip(text)
        self.error = error
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    def __init__(self, settings: StudioSettings, session: Session | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Diffusion Studio")
        self.settings = settings
        self.session = session or Session()
        self.shown_index: Key | None = None  # int: this session's history; str: kept on disk
        self.saved: dict[Key, Path] = {}
        self._deleted: set[Key] = set()  # taken out of the strip (undo puts them back)
        self.recipe_branches: tuple[Branch, ...] = ()  # of the settings last restored
        self.history_store = HistoryStore(history_folder(settings.data_folder),
                                          settings.history_limit, settings.comparison_limit)  # fmt: skip
        self.session.keep_history(self.history_store.folder, self._history_limits())
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl
        self.last_error = ""
        self._discovery = None
        self._closed = False
        self._worker_started = False
        self.setAcceptDrops(True)

        self.prompt_panel = PromptPanel()
        # Shown under the prompt while the bundled demo model is active.
        self.model_guide = BundledModelGuide(self.prompt_panel.prompt)
        prompt_layout = self.prompt_panel.layout()
        prompt_layout.insertWidget(prompt_layout.indexOf(self.prompt_panel.prompt_tokens) + 1,
                                   self.model_guide)  # fmt: skip
        self.control_panel = ControlPanel(settings.data_folder)
        self.sampler_panel = SamplerPanel()
        self.canvas = Canvas()
        self.run_scrub = RunScrubBar(self.canvas)
        self.gallery = Gallery()
        self.queue_panel = QueuePanel(self.session)
        self.compare_view = CompareView(self.session, settings)
        self.message_bar = MessageBar()
        self.mask_layer = MaskLayer()
        self.rework_panel = ReworkPanel(settings.data_folder, self.mask_layer, self.generation_size)
        self.hires_box = HiresBox(self.generation_size, self._upscaler_files)
        self.control_panel.set_editor_context(
            EditorContext(
                size=self.generation_size,
                annotator_folders=lambda: self.settings.annotator_folders,
                sources=self._history_pictures,
                jobs=self.session,
            )
        )
        self._build_layout()
        self._build_actions()
        self._build_status_bar()
        self._connect()
        self._restore()
        QTimer.singleShot(0, self._start_background)

    # ---- construction -------------------------------------------------------------------------
    def _build_layout(self) -> None:
        left = QScrollArea()
        left.setWidget(self.prompt_panel)
        left.setWidgetResizable(True)
        # The panel scrolls vertically only: never let the splitter squeeze it into clipping.
        left.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scrollbar = left.verticalScrollBar().sizeHint().width()
        left.setMinimumWidth(max(260, self.prompt_panel.minimumSizeHint().width() + scrollbar + 4))
        right = QTabWidget()
        right.addTab(self.control_panel, "ControlNet")
        right.addTab(self.sampler_panel, "Sampler")
        right.addTab(_scrolling(self.rework_panel, self.hires_box), "Rework")
        right.setTabToolTip(2, "Start from a picture: strength, mask, outpainting, hires pass.")
        right.setMinimumWidth(260)
        self.side_tabs = right
        centre = QWidget()
        column = QVBoxLayout(centre)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        self.view_bar = QToolBar()
        column.addWidget(self.view_bar)
        column.addWidget(self.message_bar)
        self.centre_tabs = QTabWidget()
        self.centre_tabs.addTab(self.canvas, "Image")
        self.centre_tabs.addTab(self.compare_view, "Compare samplers")
        self.centre_tabs.setTabToolTip(0, "The live preview and the finished image.")
        self.centre_tabs.setTabToolTip(1, "Several samplers side by side, step by step.")
        self.centre_tabs.addTab(self.mask_layer, "Input && mask")
        self.centre_tabs.setTabToolTip(2, "The input picture: paint in red what to redraw.")
        column.addWidget(self.centre_tabs, 1)
        column.addWidget(self.run_scrub)  # its own row: in the toolbar it fell into the overflow
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.gallery, "History")
        self.bottom_tabs.addTab(self.queue_panel, "Queue")
        self.bottom_tabs.setTabToolTip(0, "Every finished image; click one to show it.")
        self.bottom_tabs.setTabToolTip(1, "The running job and the waiting ones: reorder, "
                                          "duplicate, remove.")  # fmt: skip
        column.addWidget(self.bottom_tabs)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([340, 700, 340])
        self.setCentralWidget(self.splitter)
        self.resize(1400, 860)

    def _action(
        self,
        text: str,
        slot: Callable[..., object],
        shortcut: str | list[str] | QKeySequence.StandardKey | None = None,
        tip: str = "",
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        self.addAction(action)  # shortcuts work whichever widget has focus
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.generate_action = a("Generate", self.generate, ["Ctrl+Return", "Ctrl+Enter"],
                                 "Generate an image (Ctrl+Enter)")  # fmt: skip
        self.cancel_action = a("Cancel", self.cancel, "Esc",
                               "Stop the running job; the waiting ones go on (Esc)")  # fmt: skip
        self.clear_queue_action = a("Clear queue", self.session.clear_queue, None,
                                    "Remove every waiting job; the running one goes on")  # fmt: skip
        self.pause_action = a("Pause", self.pause_or_resume, "F8",
                              "Hold the running generation after this step; again to resume "
                              "(F8)")  # fmt: skip
        self.step_action = a("Step", self.session.step, "F10",
                             "Let a paused generation take one more step (F10)")  # fmt: skip
        self.branch_action = a("Branch", self.branch, "F9",
                               "Go on from the paused step with the panels' prompt, negative "
                               "prompt, CFG, sampler and ControlNet strength (F9)")  # fmt: skip
        self.compare_branch_action = a("Compare with the unbranched run", self.compare_branch,
                                       None, "Show the branched image's run beside the same run "
                                       "without its branches, step by step")  # fmt: skip
        self.show_queue_action = a("Show queue", self.show_queue, "Ctrl+J",
                                   "Show the queue of running and waiting jobs (Ctrl+J)")  # fmt: skip
        self.compare_action = a("Compare samplers", self.compare,
                                ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"],
                                "Run the samplers ticked in the Sampler panel's compare mode "
                                "side by side (Ctrl+Shift+Enter)")  # fmt: skip
        self.save_action = a("Save image", self.save_shown, QKeySequence.StandardKey.Save,
                             "Save the shown image to the output folder (Ctrl+S)")  # fmt: skip
        self.save_as_action = a("Save image as…", self.save_shown_as, "Ctrl+Shift+S",
                                "Save the shown image under a chosen name")  # fmt: skip
        self.save_all_action = a("Save all", self.save_all, None,
                                 "Save every image in the history not saved yet")  # fmt: skip
        self.copy_action = a("Copy image", self.copy_shown, "Ctrl+Shift+C",
                             "Copy the shown image to the clipboard")  # fmt: skip
        self.import_action = a("Import condition…", self.control_panel.import_condition, "Ctrl+O",
                               "Import a condition image into the current control unit "
                               "(Ctrl+O)")  # fmt: skip
        self.open_png_action = a("Load settings from PNG…", self.open_png, None,
                                 "Restore the settings stored in a PNG")  # fmt: skip
        self.settings_action = a("Settings…", self.open_settings, "Ctrl+,", "Model folders, "
                                 "device, memory and output")  # fmt: skip
        self.quit_action = a("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.fit_action = a("Fit", lambda: self._shown_view().fit(), "Ctrl+0",
                            "Fit the image in the view")  # fmt: skip
        self.actual_action = a("100 %", lambda: self._shown_view().actual_size(), "Ctrl+1",
                               "Show the image at its real size")  # fmt: skip
        self.use_input_action = a("Use as input", self.use_shown_as_input, "Ctrl+I",
                                  "Rework the shown image: make it the input picture "
                                  "(Ctrl+I)")  # fmt: skip
        self.paste_input_action = a("Paste as input", self.rework_panel.paste, "Ctrl+Shift+V",
                                    "Use the picture on the clipboard as the input "
                                    "(Ctrl+Shift+V)")  # fmt: skip
        self.mask_action = a("Paint mask", self.show_mask_layer, "Ctrl+M",
                             "Show the input picture to paint its mask (Ctrl+M)")  # fmt: skip
        self.overlay_action = a("Condition overlay", self.canvas.set_show_condition, "Ctrl+T",
                                "Toggle the condition map over the result", checkable=True)  # fmt: skip

        file_menu = self.menuBar().addMenu("&File")
        for action in (self.save_action, self.save_as_action, self.save_all_action,
                       self.copy_action, None, self.import_action, self.open_png_action, None,
                       self.settings_action, None, self.quit_action):  # fmt: skip
            file_menu.addSeparator() if action is None else file_menu.addAction(action)
        run_menu = self.menuBar().addMenu("&Generate")
        run_menu.addAction(self.generate_action)
        run_menu.addAction(self.compare_action)
        run_menu.addAction(self.cancel_action)
        run_menu.addSeparator()
        for action in (self.use_input_action, self.paste_input_action, self.mask_action):
            run_menu.addAction(action)
        run_menu.addSeparator()
        for action in (self.pause_action, self.step_action, self.branch_action,
                       self.compare_branch_action):  # fmt: skip
            run_menu.addAction(action)
        run_menu.addSeparator()
        run_menu.addAction(self.show_queue_action)
        run_menu.addAction(self.clear_queue_action)
        view_menu = self.menuBar().addMenu("&View")
        for action in (self.fit_action, self.actual_action, self.overlay_action):
            view_menu.addAction(action)
            self.view_bar.addAction(action)
        self.view_bar.addSeparator()
        self.view_bar.addAction(self.save_action)
        self.view_bar.addAction(self.copy_action)
        self.view_bar.addSeparator()
        for action in (self.pause_action, self.step_action, self.branch_action):
            self.view_bar.addAction(action)
        for more in self.view_bar.findChildren(QToolButton, "qt_toolbar_ext_button"):
            more.setToolTip("More of the toolbar's commands (the window is too narrow for all)")
        help_menu = self.menuBar().addMenu("&Help")
        self.about_action = help_menu.addAction("About Diffusion Studio")
        self.about_action.triggered.connect(lambda: show_about(self))
        self._update_run_actions()

    def _build_status_bar(self) -> None:
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setToolTip("Progress of the model loading or of the run.")
        self.model_label = QLabel("No model loaded")
        self.model_label.setToolTip("The loaded base model.")
        self.statusBar().addPermanentWidget(self.model_label)
        self.statusBar().addPermanentWidget(self.progress)

    def _connect(self) -> None:
        p = self.prompt_panel
        p.generate_clicked.connect(self.generate)
        p.cancel_clicked.connect(self.cancel)
        p.model_chosen.connect(self._on_model_chosen)
        p.steps.valueChanged.connect(self.sampler_panel.steps.setValue)
        for box in (self.rework_panel, self.hires_box):  # they say how many steps a run spends
            p.steps.valueChanged.connect(box.set_steps)
            box.set_steps(p.steps.value())
            for size_box in (p.width_box, p.height_box):
                size_box.valueChanged.connect(box.refresh)
        self.rework_panel.problem.connect(lambda text: self.show_error(text))
        self.rework_panel.edit_mask_requested.connect(self.show_mask_layer)
        self.gallery.use_as_input_requested.connect(self.use_entry_as_input)
        self.canvas.use_as_input_requested.connect(self.use_shown_as_input)
        self.sampler_panel.steps.valueChanged.connect(p.steps.setValue)
        self.sampler_panel.choice_changed.connect(self._warn_of_noisy_samplers)
        p.cfg.valueChanged.connect(self._warn_of_noisy_samplers)
        self.model_guide.cfg_wanted.connect(p.cfg.setValue)
        self.control_panel.problem.connect(lambda text: self.show_error(text))
        self.control_panel.changed.connect(self._refresh_overlay)
        self.gallery.selected.connect(self.show_entry)
        self.gallery.reuse_requested.connect(self.reuse_settings)
        self.gallery.save_requested.connect(self.save_entry)
        self.gallery.copy_requested.connect(self.copy_entry)
        self.gallery.files_dropped.connect(self.restore_from_files)
        self.gallery.delete_requested.connect(self.delete_entry)
        self.gallery.open_folder_requested.connect(self.open_entry_folder)
        self.gallery.export_requested.connect(self.export_entries)
        self.gallery.skipped.connect(lambda note: self.statusBar().showMessage(note, 8000))
        self.sampler_panel.compare_clicked.connect(self.compare)
        self.compare_view.problem.connect(lambda text: self.show_error(text))
        self.compare_view.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.session.event.connect(self._on_event)
        self.queue_panel.count_changed.connect(self._on_queue_count)

    def _on_event(self, event: JobEvent) -> None:
        """Everything the worker reports, one event at a time, in the GUI thread."""
        kind = event.kind
        if kind is EventKind.LOADING:
            self._on_loading(event.progress, event.message)
        elif kind is EventKind.LOADED:
            self._on_loaded(event.result)
        elif kind is EventKind.LOAD_FAILED:
            self._on_load_failed(event.error)
        elif kind is EventKind.CATALOG:
            self._on_catalog(event.result)
        elif kind is EventKind.MODELS_FOUND:
            self._on_models_found(event.result)
        elif kind is EventKind.NOTICE:
            self.show_error(event.error)
        elif event.is_for(JobKind.GENERATE):
            self._on_generation_event(event)
        elif event.is_for(JobKind.COMPARE):
            self._on_comparison_event(event)

    def _on_generation_event(self, event: JobEvent) -> None:
        if event.kind in (EventKind.QUEUED, EventKind.REMOVED, *ENDINGS):
            self._on_busy(self.session.busy)
        if event.kind in (EventKind.STARTED, *ENDINGS):
            self.run_scrub.clear()  # its frames are the running generation's only
        if event.kind is EventKind.STARTED:
            self._on_started(event.job.request)
        elif event.kind is EventKind.PREVIEW:
            self._on_preview(event.frames[-1])
        elif event.kind in (EventKind.PAUSED, EventKind.RESUMED, EventKind.BRANCHED):
            self._on_held(event)
        elif event.kind is EventKind.FINISHED:
            count = max(1, len(event.result.images))  # a batch adds one entry per image
            for index in range(len(self.session.history) - count, len(self.session.history)):
                self._on_history_added(index)
            if count > 1:
                self._show_batch(event.result)
            self._on_finished(event.result)
        elif event.kind is EventKind.CANCELLED:
            self._on_cancelled(event.result)
        elif event.kind is EventKind.FAILED:
            self._on_failed(event.error)

    def _on_comparison_event(self, event: JobEvent) -> None:
        if event.kind in (EventKind.QUEUED, EventKind.REMOVED, *ENDINGS):
            self._on_busy(self.session.busy)
        if event.kind is EventKind.STARTED:
            self.centre_tabs.setCurrentWidget(self.compare_view)
            self.statusBar().showMessage("Comparing samplers…")
            # The compare view counts each column's steps; this bar only says the studio is busy.
            self._set_progress_text("comparing", busy=True)
        elif event.kind is EventKind.FINISHED:
            self._on_compare_finished(event.result)
        elif event.kind is EventKind.CANCELLED:
            self._on_compare_cancelled(event.result)
        elif event.kind is EventKind.FAILED:
            self._on_failed(event.error)

    def _restore(self) -> None:
        s = self.settings
        for name, restore in (("geometry", self.restoreGeometry),
                              ("splitter", self.splitter.restoreState)):  # fmt: skip
            state = s.window_state(name)
            if state is not None:
                restore(state)
        data = s.last_request
        if data:
            try:
                self.apply_request(GenerationRequest.from_dict(data))
            except (StudioError, ValueError, TypeError, KeyError) as error:
                log.warning("last session's settings not restored: %s", error)
        if s.random_seed is not None:
            self.prompt_panel.random_seed.setChecked(s.random_seed)
        self.prompt_panel.batch_count.setValue(s.batch_count)
        compare_mode, samplers = s.comparison
        if samplers:
            self.sampler_panel.set_compare_entries(samplers)
        self.sampler_panel.set_compare_mode(compare_mode)

    def _start_background(self) -> None:
        # Runs after the window is shown. The history is listed first, while the worker is idle:
        # the worker's start-up (imports, the tokenizer) holds the interpreter lock for tens of
        # milliseconds at a time, and the strip's reading in the same moments froze the window
        # for up to 200 ms with 5,000 entries (BENCHMARKS.md). A long history delays the
        # model's loading by at most WORKER_WAITS_FOR_HISTORY_S.
        self.session.configure(self.settings.engine_config())  # a job queued meanwhile uses it
        self.history_store.purge_deleted()  # deleted in an earlier session: no undo any more
        self.history_store.prune()  # a limit lowered since, or entries another process added
        if self.session.restore_comparisons(self.history_store):
            self.compare_view._refresh_history()
        kept = {entry.stored_id for entry in self.session.history}
        self.gallery.show_store(self.history_store, skip=kept.__contains__)
        if self.gallery.listing:  # whichever comes first: the strip listed, or the deadline
            self.gallery.listed.connect(self._start_worker)
            QTimer.singleShot(round(WORKER_WAITS_FOR_HISTORY_S * 1000), self._start_worker)
        else:
            self._start_worker()

    def _start_worker(self) -> None:
        if self._closed or self._worker_started:
            return
        self._worker_started = True
        # Imports, discovery and loading happen in the worker.
        self.session.start_up()
        self.session.discover()
        self._load_model(self.prompt_panel.current_model())

    def generation_size(self) -> tuple[int, int]:
        # The boxes show the effective size, the model's native one included once it is known.
        p = self.prompt_panel
        return snap8(p.width_box.value()), snap8(p.height_box.value())

    def _history_pictures(self) -> list[tuple[str, Image.Image]]:
        entries = list(enumerate(self.session.history, 1))[::-1]
        return [(f"Result {n} · seed {e.request.seed}", e.result.image) for n, e in entries]

    # ---- the input picture --------------------------------------------------------------------
    def use_entry_as_input(self, key: Key) -> bool:
        found = self._entry(key)
        return found is not None and self._use_as_input(found[1], "history image")

    def use_shown_as_input(self) -> bool:
        if self.canvas.image is None:
            self.statusBar().showMessage("No image on the canvas to use as the input.", 5000)
            return False
        return self._use_as_input(self.canvas.image, "shown image")

    def _use_as_input(self, image: Image.Image | QImage, label: str) -> bool:
        if not self.rework_panel.use_picture(image, label):
            return False
        self.side_tabs.setCurrentIndex(self.side_tabs.count() - 1)
        self.statusBar().showMessage("Input picture set: the next run reworks it.", 5000)
        return True

    def _upscaler_files(self) -> list[Path]:
        # Asked when the list opens: by then the worker has imported torch, which this needs.
        from pipelines.upscalers import find_upscalers

        return find_upscalers(Path(folder) for folder in self.settings.model_folders)

    def _shown_view(self) -> Canvas | MapView:
        """What Fit and 100 % act on: the mask layer's view while it is shown, else the canvas."""
        shown = self.centre_tabs.currentWidget() is self.mask_layer
        return self.mask_layer.view if shown else self.canvas

    def show_mask_layer(self) -> None:
        self.centre_tabs.setCurrentWidget(self.mask_layer)
        self.mask_layer.view.setFocus()

    # ---- request ↔ panels ---------------------------------------------------------------------
    def current_request(self) -> GenerationRequest:
        return GenerationRequest(
            **self.prompt_panel.values(),
            sampler=self.sampler_panel.sampler(),
            preview=self.sampler_panel.preview_mode(),
            controls=self.control_panel.controls(),
            memory=self.settings.memory,
            branches=self.recipe_branches,
            batch_size=self.sampler_panel.batch_size.value(),
            source=self.rework_panel.source(),
            hires=self.hires_box.hires(),
        )

    def apply_request(self, request: GenerationRequest) -> None:
        """Show ``request`` in the panels, all or nothing: when any part of it cannot be shown,
        a :class:`StudioError` says why and the panels keep what they showed before."""
        try:  # validated as a whole before any panel changes
            checked = GenerationRequest.from_dict(request.to_dict())
        except StudioError as error:
            raise StudioError(f"These settings cannot be restored: {error}") from error
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise StudioError(f"These settings cannot be restored ({error}).") from error
        try:
            before = self.current_request()
        except (StudioError, ValueError):
            before = None  # the panels hold no valid request to go back to
        try:
            self._show_request(checked)
        except Exception as error:  # a panel refused a value: put every panel back
            log.exception("restoring settings failed half way")
            try:
                if before is not None:
                    self._show_request(before)
            except Exception:
                log.exception("the panels could not be put back")
            raise StudioError(f"These settings cannot be restored ({error}).") from error

    def _show_request(self, request: GenerationRequest) -> None:
        self.recipe_branches = request.branches  # no panel shows them: Generate repeats them
        self.prompt_panel.apply(request)
        self.sampler_panel.set_sampler(request.sampler)
        self.sampler_panel.set_preview_mode(request.preview)
        self.sampler_panel.batch_size.setValue(request.batch_size)
        self.control_panel.apply(request.controls)
        self.rework_panel.apply(request.source)
        self.hires_box.apply(request.hires)

    # ---- running ------------------------------------------------------------------------------
    def _request_to_run(self) -> GenerationRequest | None:
        """The panels' request, or None after showing why there is none."""
        try:
            request = self.current_request()
        except (StudioError, ValueError) as error:
            self.show_error(str(error))
            return None
        self.message_bar.hide()
        self.last_error = ""
        return request

    def generate(self) -> list[Job]:
        """Queue the panels' settings as the batch count's jobs; random seeds are drawn now, so
        each job keeps its own."""
        from pipelines.batches import batch_requests

        if (request := self._request_to_run()) is None:
            return []
        count = self.prompt_panel.batch_count.value()
        jobs = [self.session.generate(each) for each in batch_requests(request, count)]
        self._say_queued(jobs[-1])
        return jobs

    def compare(self) -> Job | None:
        """Queue the current settings through the samplers ticked in the sampler panel."""
        self.sampler_panel.set_compare_mode(True)
        if not self.sampler_panel.compare_ready():
            self.show_error(self.sampler_panel.compare_count.text())
            return None
        if (request := self._request_to_run()) is None:
            return None
        # One image per sampler, each run whole: a batch size or a restored branch is no column.
        request = replace(request, batch_size=1, branches=()).resolve_seed()
        job = self.session.compare(request, self.sampler_panel.compare_entries())
        self._say_queued(job)
        return job

    def _say_queued(self, job: Job) -> None:
        if self.session.waiting:
            self.statusBar().showMessage(
                f"Queued (seed {job.request.seed}); {len(self.session.waiting)} waiting.", 5000
            )

    def cancel(self) -> None:
        if self.session.running_job is not None:
            self.session.cancel()
            self.statusBar().showMessage("Cancelling after this step…")

    # ---- pause, step, branch ------------------------------------------------------------------
    def pause_or_resume(self) -> None:
        if self.session.pausing:
            self.session.resume()
        elif self.session.pause():
            self.statusBar().showMessage("Pausing after this step…")
        self._update_run_actions()

    def branch(self) -> bool:
        """Branch the held generation with the panels' settings (see run_control.branch_between)."""
        from pipelines.run_control import branch_between, effective_request

        held, running = self.session.held_at, self.session.running_request
        if held is None or running is None:
            self.show_error("Pause the generation first (F8), then change the prompt, negative "
                            "prompt, CFG, sampler or ControlNet strength and branch.")  # fmt: skip
            return False
        if (panels := self._request_to_run()) is None:
            return False
        change = branch_between(effective_request(running, held), panels, held)
        if change is None:
            self.statusBar().showMessage("Nothing to branch: the panels' prompt, negative prompt, "
                                         "CFG, sampler and ControlNet strength are the run's.",
                                         8000)  # fmt: skip
            return False
        try:
            self.session.branch(change)
        except StudioError as error:
            self.show_error(str(error))
            return False
        return True

    def compare_branch(self) -> Job | None:
        """Queue the shown image's branched run beside its unbranched run (compare view)."""
        found = None if self.shown_index is None else self._entry(self.shown_index)
        if found is None or not found[0].branches:
            self.show_error("Show an image made with a branch first (its history entry), then "
                            "compare it with the unbranched run.")  # fmt: skip
            return None
        job = self.session.compare_branches(found[0])
        self._say_queued(job)
        return job

    def _say_branches(self) -> None:
        from pipelines.branching import branch_text

        if self.recipe_branches:
            changes = "; ".join(branch_text(b) for b in self.recipe_branches)
            self.message_bar.show_message(
                f"These settings change part way through the run ({changes}); Generate repeats "
                "that.", error=False, actions=[("Drop the changes", self.drop_branches)])  # fmt: skip

    def drop_branches(self) -> None:
        self.recipe_branches = ()
        self.message_bar.hide()

    def _on_held(self, event: JobEvent) -> None:
        if event.kind is EventKind.PAUSED:
            total = planned_steps(event.job.request)
            self.canvas.set_status(f"Paused at step {event.result}/{total} · F10 step, F8 resume, "
                                   "F9 branch with the panels' settings")  # fmt: skip
            self.statusBar().showMessage(f"Paused at step {event.result}.")
        elif event.kind is EventKind.BRANCHED:
            from pipelines.branching import branch_text

            branch = event.result.branches[-1] if event.result.branches else None
            if branch is not None:
                self.statusBar().showMessage(f"Branch: {branch_text(branch)}", 8000)
        self._update_run_actions()

    def _update_run_actions(self) -> None:
        pausing = self.session.pausing
        self.pause_action.setEnabled(self.session.can_pause)
        self.pause_action.setText("Resume" if pausing else "Pause")
        self.step_action.setEnabled(self.session.can_pause)
        self.branch_action.setEnabled(self.session.held_at is not None)

    def show_queue(self) -> None:
        self.bottom_tabs.setCurrentWidget(self.queue_panel)
        self.queue_panel.list.setFocus()

    def _on_queue_count(self, count: int) -> None:
        index = self.bottom_tabs.indexOf(self.queue_panel)
        self.bottom_tabs.setTabText(index, f"Queue ({count})" if count else "Queue")

    def _on_busy(self, _busy: bool) -> None:
        # Generate and Compare always queue; only Cancel depends on a job running.
        running = self.session.running_job is not None
        self.prompt_panel.set_running(running)
        self.cancel_action.setEnabled(running)
        self._update_run_actions()

    def _on_started(self, request: GenerationRequest) -> None:
        self.progress.setRange(0, planned_steps(request))
        self.progress.setValue(0)
        self.progress.setFormat("step %v / %m")
        self.canvas.set_status("Starting…")
        self.centre_tabs.setCurrentWidget(self.canvas)
        self.statusBar().showMessage("Generating…")

    def _on_preview(self, frame: PreviewFrame) -> None:
        self.run_scrub.add(frame.step, frame.image)  # shows it unless scrubbed back
        rate = frame.step / frame.elapsed if frame.elapsed > 0 else 0.0
        eta = (frame.total - frame.step) / rate if rate else 0.0
        self.canvas.set_status(f"Step {frame.step}/{frame.total} · {rate:.2f} it/s · "
                               f"ETA {eta:.0f} s")  # fmt: skip
        self.progress.setRange(0, frame.total)
        self.progress.setValue(frame.step)

    def _on_finished(self, result: GenerationResult) -> None:
        total = result.timings.get("total", 0.0)
        self.canvas.set_status(f"Done in {total:.1f} s · seed {result.request.seed}")
        self.progress.setValue(self.progress.maximum())
        self.prompt_panel.set_last_seed(result.request.seed)
        precision = f", {result.precision}" if result.precision else ""
        self.statusBar().showMessage(f"Finished (seed {result.request.seed}{precision}).", 8000)
        if result.warnings:
            self.message_bar.show_message("\n".join(result.warnings), error=False)

    def _on_history_added(self, index: int) -> None:
        self.gallery.add_entry(index, self.session.history[index])  # selecting it shows it
        self.show_entry(index)

    def _show_batch(self, result: GenerationResult) -> None:
        """The batch's images as one grid on the canvas; each is its own history entry."""
        import numpy as np

        from pipelines.batches import tile_grid

        grid = tile_grid([np.asarray(image.convert("RGB")) for image in result.images])
        self.canvas.set_image(pil_to_qimage(Image.fromarray(grid)))

    def _on_cancelled(self, result: GenerationResult) -> None:
        self.canvas.set_status("Cancelled")
        self.progress.setValue(0)
        self.statusBar().showMessage("Cancelled.", 8000)

    def _on_compare_finished(self, result: CompareResult) -> None:
        self.prompt_panel.set_last_seed(result.request.seed)
        self._set_progress_text("comparison done", full=True)

    def _on_compare_cancelled(self, _result: CompareResult) -> None:
        self._set_progress_text("cancelled")
        self.statusBar().showMessage("Comparison cancelled.", 8000)

    def _set_progress_text(self, text: str, busy: bool = False, full: bool = False) -> None:
        self.progress.setRange(0, 0 if busy else 1)
        self.progress.setValue(1 if full else 0)
        self.progress.setFormat(text)

    def _on_failed(self, message: str) -> None:
        self.canvas.set_status("")
        if self.progress.maximum() == 0:
            self._set_progress_text("failed")
        self.progress.setValue(0)
        self.show_error(message)

    def show_error(self, message: str, actions: Sequence[Action] = ()) -> None:
        self.last_error = message
        self.message_bar.show_message(message, error=True, actions=actions)
        self.statusBar().showMessage(message.splitlines()[0], 10000)

    # ---- models -------------------------------------------------------------------------------
    def _load_model(self, model: str) -> None:
        self.progress.setRange(0, 100)
        self.progress.setFormat("loading %p%")
        self.model_label.setText("Loading model…")
        self.session.load(model, self.settings.memory.cpu_offload)

    def _on_model_chosen(self, model: str) -> None:
        self._refresh_controlnets()
        self._load_model(model)

    def _on_loading(self, fraction: float, message: str) -> None:
        self.progress.setRange(0, 100)
        self.progress.setValue(int(fraction * 100))
        if self.session.busy:  # a job waits for the model: say so rather than look stuck
            self.progress.setFormat("waiting for the model %p%")
            self.canvas.set_status(f"Waiting for the model… {fraction:.0%}")
        else:
            self.progress.setFormat("loading %p%")
        self.statusBar().showMessage(message)

    def _on_loaded(self, summary: ModelSummary) -> None:
        precision = f" · {summary.precision}" if summary.precision else ""
        self.model_label.setText(f"{summary.path.name} · {summary.family_label}{precision}")
        self.model_label.setToolTip(str(summary.path))
        self.prompt_panel.set_native_size(summary.native_size)
        self.sampler_panel.set_preview_note(summary.previews)
        self.sampler_panel.set_family(summary.family)
        self.prompt_panel.set_distilled_guidance(summary.family == "flux")
        if not self.session.busy:
            self.progress.setValue(100)
        elif self.session.comparing:  # the bar showed the loading: back to the comparison
            self._set_progress_text("comparing", busy=True)
        elif (job := self.session.running_job) is not None:  # its steps come next
            self._on_started(job.request)
        self.statusBar().showMessage(f"{summary.path.name} ready.", 5000)
        self._refresh_controlnets()

    def _on_load_failed(self, message: str) -> None:
        self.model_label.setText("No model loaded")
        self.progress.setValue(0)
        help_text = NO_MODEL_HELP if "model" in message.lower() else ""
        self.show_error(
            message + help_text,
            actions=[("Choose model…", self.prompt_panel.browse_model.showMenu),
                     ("Settings…", self.open_settings)],
        )  # fmt: skip

    def _on_catalog(self, catalog: Catalog) -> None:
        self.sampler_panel.set_samplers(catalog.samplers, catalog.default_sampler)
        if catalog.tokenizer is not None:
            self.prompt_panel.set_tokenizer(catalog.tokenizer)

    def _on_models_found(self, discovery: Discovery) -> None:
        self._discovery = discovery
        self.prompt_panel.set_models(discovery.bases(), self.prompt_panel.current_model())
        self.prompt_panel.set_lora_folders(Path(p) for p in self.settings.model_folders)
        self._refresh_controlnets()

    def _warn_of_noisy_samplers(self) -> None:
        self.model_guide.set_run(self.sampler_panel.chosen_samplers(),
                                 self.prompt_panel.cfg.value())  # fmt: skip

    def _refresh_controlnets(self) -> None:
        self.model_guide.set_model(self.prompt_panel.current_model())
        if self._discovery is None:
            return
        family = None
        loaded = self.session.loaded_model
        chosen = self.prompt_panel.current_model()
        for info in self._discovery.bases():
            if str(info.path) == chosen:
                family = info.family
        if family is None and loaded is not None:
            from pipelines.types import ModelFamily

            family = ModelFamily(loaded.family)
        self.control_panel.set_controlnets(self._discovery.controlnets(family), chosen)

    # ---- history and export -------------------------------------------------------------------
    def _entry(self, key: Key) -> tuple[GenerationRequest, Image.Image] | None:
        """The request and image of a history item; None (with a message) when a stored one
        cannot be read any more."""
        if isinstance(key, int):
            entry = self.session.history[key]
            return entry.request, entry.result.image
        stored = self.gallery.stored_entry(key)
        request = self.gallery.stored_request(key)
        image = None if stored is None else self.history_store.image(stored)
        if request is None or image is None:
            notes = self.history_store.notes
            self.show_error(notes[-1] if notes else "This history image is no longer there.")
            return None
        return request, image

    def show_entry(self, key: Key) -> None:
        if isinstance(key, int):
            entry = self.session.history[key]
            image, maps = entry.image, entry.result.condition_maps
            condition = pil_to_qimage(maps[0]) if maps else None
        else:
            found = self._entry(key)
            if found is None:
                return
            request, picture = found
            image, condition = pil_to_qimage(picture), self._stored_condition(request)
        self.shown_index = key
        self.canvas.set_image(image)
        self.centre_tabs.setCurrentWidget(self.canvas)
        self.canvas.set_condition(condition)

    @staticmethod
    def _stored_condition(request: GenerationRequest):
        from pipelines.images import open_image

        for unit in request.controls:
            if unit.image and not unit.preprocess:
                try:
                    with open_image(unit.image) as image:
                        return pil_to_qimage(image.convert("RGB"))
                except StudioError:
                    return None  # the overlay is a convenience; the map may have been removed
        return None

    def _refresh_overlay(self) -> None:
        if self.shown_index is None:
            self.canvas.set_condition(self.control_panel.overlay_image())

    def reuse_settings(self, key: Key) -> bool:
        request = (
            self.session.history[key].request if isinstance(key, int)
            else self.gallery.stored_request(key)
        )  # fmt: skip
        if request is None:
            self.show_error("The settings of this history image cannot be read any more.")
            return False
        try:
            self.apply_request(request)
        except StudioError as error:
            self.show_error(str(error))
            return False
        self.statusBar().showMessage("Settings restored from the history.", 5000)
        self._say_branches()
        return True

    def _shown_entry(self) -> Key | None:
        if self.shown_index is None:
            self.statusBar().showMessage("No finished image to save yet.", 5000)
        return self.shown_index

    def save_entry(self, key: Key, path: Path | None = None) -> Path | None:
        from pipelines.export import next_free_path, run_details, write_png

        found = self._entry(key)
        if found is None:
            return None
        request, image = found
        if isinstance(key, int):
            extra = run_details(self.session.history[key].result)
        else:  # an earlier session's: what its PNG keeps, as Export copies it
            stored = self.gallery.stored_entry(key)
            extra = self.history_store.details(stored) if stored is not None else None
        try:
            if path is None:
                folder = Path(self.settings.output_folder)
                folder.mkdir(parents=True, exist_ok=True)
                path = next_free_path(folder, self.settings.file_pattern, request)
                written = write_png(image, request, path, extra=extra)
            else:  # chosen in a dialog that already asked before replacing a file
                written = write_png(image, request, path, overwrite=True, extra=extra)
        except (StudioError, OSError) as error:
            self.show_error(f"Could not save the image: {error}")
            return None
        self.saved[key] = written
        self.statusBar().showMessage(f"Saved {written}", 8000)
        return written

    def delete_entry(self, key: Key) -> bool:
        """Take an image out of the history (its files too); the message bar offers an undo."""
        stored_id = self.session.history[key].stored_id if isinstance(key, int) else key
        stored = self.history_store.find(stored_id) if stored_id else None
        try:
            if stored is not None:
                self.history_store.delete(stored)
        except OSError as error:
            self.show_error(f"Could not delete the image from the history: {error}")
            return False
        taken = self.gallery.take(key)
        self._deleted.add(key)
        if self.shown_index == key:
            self.shown_index = None
            self.canvas.set_image(None)

        def undo() -> None:
            if stored is not None:
                self.history_store.restore(stored.id)
            if taken is not None:
                self.gallery.put_back(*taken)
            self._deleted.discard(key)
            self.message_bar.hide()

        self.message_bar.show_message("Image deleted from the history.", error=False,
                                      actions=[("Undo", undo)])  # fmt: skip
        return True

    def export_entries(self, keys: Sequence[Key], folder: Path | None = None) -> list[Path]:
        """Copy history images, with their settings, into ``folder`` (asked for when None),
        named as Save names them and never over an existing file."""
        from studio.history_export import export_entries

        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self, "Export to folder",
                                                      self.settings.output_folder)  # fmt: skip
            if not chosen:
                return []
            folder = Path(chosen)
        sources = [self._export_source(key) for key in keys]
        found = [s for s in sources if s is not None]
        written, error = export_entries(found, folder, self.settings.file_pattern)
        if error:
            self.show_error(f"Exported {len(written)} of {len(keys)} image(s); then: {error}")
        elif len(found) < len(keys):
            self.show_error(f"Exported {len(written)} of {len(keys)} image(s) to {folder}; "
                            f"{len(keys) - len(found)} could no longer be read from the history "
                            "(deleted or moved outside the studio).")  # fmt: skip
        else:
            self.statusBar().showMessage(f"Exported {len(written)} image(s) to {folder}.", 8000)
        return written

    def _export_source(self, key: Key) -> ExportSource | None:
        """What :func:`studio.history_export.export_entries` copies for one history item."""
        from pipelines.export import run_details
        from studio.history_export import ExportSource

        if isinstance(key, int):
            entry = self.session.history[key]
            stored = self.history_store.find(entry.stored_id) if entry.stored_id else None
            if stored is not None:
                return ExportSource(entry.request, stored.image_path)
            return ExportSource(entry.request, image=entry.result.image,
                                extra=run_details(entry.result))  # fmt: skip
        stored, request = self.gallery.stored_entry(key), self.gallery.stored_request(key)
        if stored is None or request is None:
            return None
        return ExportSource(request, stored.image_path)

    def open_entry_folder(self, key: Key) -> None:
        self.open_url(QUrl.fromLocalFile(str(self.history_store.folder)))

    def save_shown(self) -> Path | None:
        index = self._shown_entry()
        return None if index is None else self.save_entry(index)

    def save_shown_as(self) -> None:
        index = self._shown_entry()
        if index is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save image", self.settings.output_folder, "PNG images (*.png)"
        )
        if path:
            self.save_entry(index, Path(path if path.lower().endswith(".png") else path + ".png"))

    def save_all(self) -> list[Path]:
        written = []
        for index in range(len(self.session.history)):
            if index not in self.saved and index not in self._deleted:
                path = self.save_entry(index)
                if path is None:
                    break
                written.append(path)
        self.statusBar().showMessage(f"Saved {len(written)} image(s) to "
                                     f"{self.settings.output_folder}.", 8000)  # fmt: skip
        return written

    def copy_entry(self, key: Key) -> None:
        if isinstance(key, int):
            image = self.session.history[key].image
        elif (found := self._entry(key)) is not None:
            image = pil_to_qimage(found[1])
        else:
            return
        QGuiApplication.clipboard().setImage(image)
        self.statusBar().showMessage("Image copied to the clipboard.", 4000)

    def copy_shown(self) -> None:
        index = self._shown_entry()
        if index is not None:
            self.copy_entry(index)

    # ---- restoring settings from PNG files ----------------------------------------------------
    def open_png(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load settings from a PNG", "", "PNG (*.png)")
        if path:
            self.restore_from_files([path])

    def restore_from_files(self, paths: list[str]) -> bool:
        from pipelines.export import read_metadata
        from pipelines.unapplied import not_applied_text

        for path in paths:
            try:
                metadata = read_metadata(path)
                # The memory options are this machine's settings, not the image's.
                self.apply_request(replace(metadata.request, memory=self.settings.memory))
            except StudioError as error:
                # A picture without settings may be meant as the input picture instead.
                use = ("Use as input", lambda _=False, p=path: self.rework_panel.open_file(p))
                self.show_error(str(error), actions=[use])
                continue
            left = not_applied_text(list(metadata.not_applied))  # listed, never dropped silently
            text = " ".join(
                t
                for t in (f"Settings restored from {Path(path).name}.", *metadata.warnings, left)
                if t
            )
            self.message_bar.show_message(text, error=False)
            self._say_branches()
            return True
        return False

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.restore_from_files(files)

    # ---- settings and closing -----------------------------------------------------------------
    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self)
        dialog.accepted.connect(self._settings_changed)
        dialog.open()
        return dialog

    def _history_limits(self) -> tuple[int, int]:
        return self.settings.history_limit, self.settings.comparison_limit

    def _settings_changed(self) -> None:
        self.history_store.limit, self.history_store.comparison_limit = self._history_limits()
        self.session.keep_history(self.history_store.folder, self._history_limits())
        self.session.configure(self.settings.engine_config())
        self.session.discover()
        self._load_model(self.prompt_panel.current_model())

    def save_state(self) -> None:
        """Save what the next start restores; a step that fails is logged and the others still
        run, so one bad value never costs the rest."""
        s, panel = self.settings, self.sampler_panel
        steps = (
            ("panel values", lambda: setattr(s, "last_request", self.current_request().to_dict())),
            ("random seed", lambda: setattr(s, "random_seed",
                                            self.prompt_panel.random_seed.isChecked())),
            ("batch count", lambda: setattr(s, "batch_count",
                                            self.prompt_panel.batch_count.value())),
            ("comparison", lambda: s.set_comparison(panel.compare_mode.isChecked(),
                                                    panel.wanted_comparison())),
            ("window geometry", lambda: s.set_window_state("geometry", self.saveGeometry())),
            ("panel sizes", lambda: s.set_window_state("splitter", self.splitter.saveState())),
            ("settings file", s.sync),
        )  # fmt: skip
        for name, step in steps:
            try:
                step()
            except (StudioError, ValueError) as error:  # e.g. a half-typed value in a panel
                log.warning("%s not saved: %s", name, error)
            except Exception:
                log.exception("%s not saved", name)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closed:
            self._closed = True
            try:
                self.save_state()
            except Exception:  # closing must never fail: the worker thread is stopped below
                log.exception("window state not saved")
            finally:
                self.session.shutdown()
        super().closeEvent(event)


def _scrolling(*widgets: QWidget) -> QScrollArea:
    """The widgets one above the other, scrolling vertically when the window is short."""
    inner = QWidget()
    column = QVBoxLayout(inner)
    column.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        column.addWidget(widget)
    column.addStretch(1)
    area = QScrollArea()
    area.setWidget(inner)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.verticalScrollBar().setToolTip("Scroll the panel.")
    scrollbar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(inner.minimumSizeHint().width() + scrollbar + 4)
    return area
