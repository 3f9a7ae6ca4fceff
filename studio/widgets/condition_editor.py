"""The condition editor: paint, import, detect and pose one control unit's map at the generation size.

The dialog edits a :class:`~studio.widgets.paint_tools.MapDocument` the size of the image to be
generated, so the pixels on screen are the pixels the ControlNet receives. "Use map" writes them to a
new PNG (:mod:`studio.widgets.map_store`) and the unit then points at that file as a ready map.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from pipelines.annotators import annotator_search_folders, find_annotator
from pipelines.conditions import detect_map, fit_to_size, load_image
from pipelines.errors import StudioError
from pipelines.export import save_condition_map
from pipelines.types import ControlKind, ControlUnit, ResizeMode
from studio.jobs import (
    DetectionRequest,
    DetectionResult,
    EventKind,
    JobEvent,
    readable_error,
)
from studio.qt_image import pil_to_qimage, qimage_to_pil
from studio.widgets.map_store import pose_sidecar, save_pose_sidecar
from studio.widgets.map_view import MapView
from studio.widgets.mime import mime_picture
from studio.widgets.paint_bar import PaintBar, ToolSpec, spin_box
from studio.widgets.paint_tools import (
    BrushTool,
    EraserTool,
    FillTool,
    GradientTool,
    LineTool,
    MapDocument,
    PickerTool,
    ToolOptions,
    clear,
)
from studio.widgets.pose_editor import PoseEditor, PosePanel, PoseTool
from studio.widgets.refreshing_combo import RefreshingComboBox

if TYPE_CHECKING:
    from studio.session import Session

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
POSE_FILTER = "Pose (*.json *.png *.jpg *.jpeg *.webp);;All files (*)"
CANNY_MERGE = 1  # undo id: threshold changes merge into one step
DETECTORS = {ControlKind.POSE: "openpose", ControlKind.DEPTH: "depth"}

SourceList = Callable[[], Sequence[tuple[str, Image.Image]]]


class ConditionEditor(QDialog):
    map_saved = Signal(str)  # the new PNG's path
    detection_finished = Signal(bool)  # pose or depth detection ended (True: it worked)

    def __init__(
        self,
        kind: ControlKind,
        width: int,
        height: int,
        maps_folder: Path,
        *,
        resize_mode: ResizeMode = ResizeMode.FIT,
        canny: tuple[int, int] = (100, 200),
        annotator_folders: Iterable[str | Path] = (),
        sources: SourceList | None = None,
        jobs: Session | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """``jobs`` runs pose and depth detection in the worker; without it (an editor used on
        its own) detection runs here, in the GUI thread."""
        super().__init__(parent)
        self.kind = ControlKind(kind)
        self.maps_folder = Path(maps_folder)
        self.resize_mode = ResizeMode(resize_mode)
        self.annotator_folders = [str(f) for f in annotator_folders]
        self._sources = sources or (lambda: [])
        self.source: Image.Image | None = None
        self._source_label = ""
        self._source_origin: Image.Image | None = None
        self._canny_defaults = canny
        self._detecting = False
        self._detection_job = 0
        self.jobs = jobs
        if jobs is not None:
            jobs.event.connect(self._on_job_event)
        self.saved_path: Path | None = None
        self.setWindowTitle(f"{self.kind.value.capitalize()} map · {width}×{height}")
        self.setAcceptDrops(True)

        self.document = MapDocument(width, height, self)
        self.options = ToolOptions(value=255)
        self.view = MapView(self.document)
        self.pose = PoseEditor(self.document, self.resize_mode, self)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pointer = QLabel()
        self.pointer.setToolTip("Map coordinates and value under the pointer.")

        self.toolbar = QToolBar()
        self._build_tools()
        side = QVBoxLayout()
        side.addWidget(self._source_box())
        side.addWidget(self._kind_box())
        side.addWidget(self._import_box())
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setFixedWidth(290)

        self.buttons = QDialogButtonBox()
        self.use_button = self.buttons.addButton("Use map", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.setToolTip("Save this map and give it to the control unit.")
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setToolTip("Close without changing the control unit.")
        self.buttons.accepted.connect(self.use_map)
        self.buttons.rejected.connect(self.reject)

        middle = QHBoxLayout()
        middle.addWidget(self.view, 1)
        middle.addWidget(side_widget)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(self.pointer)
        bottom.addWidget(self.buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.toolbar)
        layout.addLayout(middle, 1)
        layout.addLayout(bottom)
        self.view.hovered.connect(self._show_pointer)
        self.resize(1000, 720)
        self._check_detector()
        if self.kind is ControlKind.POSE and jobs is not None:
            # The pose renderer imports controlnet-aux (seconds on a slow machine): in the worker,
            # while the user looks at the dialog, so the first "Add person" does not freeze it.
            jobs.warm_up_pose_renderer()
        # The map has the focus, not a spin box, so that B, E, L, G, [ and ] reach the shortcuts.
        self.view.setFocus()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def for_unit(
        cls,
        unit: ControlUnit,
        width: int,
        height: int,
        maps_folder: Path,
        *,
        annotator_folders: Iterable[str | Path] = (),
        sources: SourceList | None = None,
        jobs: Session | None = None,
        parent: QWidget | None = None,
    ) -> ConditionEditor:
        """An editor opened on what ``unit`` gives the ControlNet now: its ready map, or the
        edges of its photo (pose and depth photos become the backdrop, ready for detection)."""
        editor = cls(
            unit.kind, width, height, maps_folder,
            resize_mode=unit.resize_mode, canny=(unit.canny_low, unit.canny_high),
            annotator_folders=annotator_folders, sources=sources, jobs=jobs, parent=parent,
        )  # fmt: skip
        if not unit.image:
            return editor
        try:
            image = load_image(unit.image)
        except StudioError as error:
            editor.show_message(str(error), error=True)
            return editor
        if unit.preprocess and editor.kind is not ControlKind.CUSTOM:
            editor.set_source(image, f"Photo: {Path(unit.image).name}")
            if editor.kind is ControlKind.CANNY:
                editor.document.set_image(editor._canny_image())
            else:
                editor.show_message("The photo is shown dimmed behind the map. Press Detect to "
                                    "turn it into a map, or draw one.")  # fmt: skip
            return editor
        sidecar = pose_sidecar(unit.image)
        if editor.kind is ControlKind.POSE and sidecar.is_file():
            try:  # the skeleton saved with the map: it opens editable again
                editor.pose.load_json(sidecar)
                editor.document.undo_stack.clear()
                return editor
            except StudioError:
                pass  # fall back to the picture itself
        fitted = pil_to_qimage(fit_to_size(image, width, height, editor.resize_mode))
        if editor.kind is ControlKind.POSE:
            editor.pose.raster = fitted.convertToFormat(QImage.Format.Format_RGB32)
        editor.document.set_image(fitted)
        return editor

    def _build_tools(self) -> None:
        d, o = self.document, self.options
        self.tools = {
            "brush": BrushTool(d, o),
            "eraser": EraserTool(d, o),
            "line": LineTool(d, o),
            "fill": FillTool(d, o),
            "gradient": GradientTool(d, o),
            "picker": PickerTool(d, o, on_pick=self._picked),
            "pose": PoseTool(d, o, self.pose),
        }
        specs = (
            ToolSpec("brush", "Brush", "Paint with the value (B).", ("B",)),
            ToolSpec("eraser", "Eraser", "Paint black: no edge, far away, nobody (E).", ("E",)),
            ToolSpec("line", "Line", "Drag a straight line (L).", ("L",)),
            ToolSpec("fill", "Fill", "Fill the area of one colour with the value (G)."),
            ToolSpec("gradient", "Gradient", "Drag a ramp from the value to 'Gradient to' (G "
                     "twice)."),
            ToolSpec("picker", "Pick", "Click the map to take its value (I).", ("I",)),
        )  # fmt: skip
        self.paint = PaintBar(
            self, self.view, o, self.tools, specs,
            clear_tip="Make the whole map black (no condition).",
            invert_tip="Swap bright and dark (depth: near and far).", on_clear=self.clear_map,
        )  # fmt: skip
        self.tool_actions = self.paint.tool_actions
        # G cycles between fill and gradient, the two "whole area" tools.
        self.paint.action("Fill / gradient", "", self._cycle_fill, ["G"])
        self.undo_action, self.redo_action = self.paint.undo_action, self.paint.redo_action
        self.clear_action, self.invert_action = self.paint.clear_action, self.paint.invert_action
        self.size_box, self.hardness_box = self.paint.size_box, self.paint.hardness_box
        self.value_box = spin_box(0, 255, o.value, "The grey value painted (255 white). Depth: "
                                  "bright is near, black is far.")  # fmt: skip
        self.value_to_box = spin_box(0, 255, o.value_to, "The gradient's other end.")
        self.value_box.valueChanged.connect(lambda v: setattr(o, "value", v))
        self.value_to_box.valueChanged.connect(lambda v: setattr(o, "value_to", v))
        self._paint_widgets = self.paint.fill_toolbar(
            self.toolbar, (("Value", self.value_box), ("Gradient to", self.value_to_box))
        )

        if self.kind is ControlKind.POSE:
            self.paint.action("Remove person", "", self.pose.remove_person, ["Del", "Backspace"])
        painting = self.kind is not ControlKind.POSE
        for action in (*self.tool_actions.values(), self.invert_action):
            action.setVisible(painting)
            action.setEnabled(painting)
        for widget_action in self._paint_widgets:
            widget_action.setVisible(painting)
        self.set_tool("brush" if painting else "pose")

    def _source_box(self) -> QGroupBox:
        box = QGroupBox("Source photo")
        self.source_combo = RefreshingComboBox(self._refresh_sources)
        self.source_combo.setToolTip("A picture to detect from and to show dimmed behind the map: "
                                     "the unit's photo, a result from the history, or a file.")  # fmt: skip
        self.source_combo.activated.connect(self._source_chosen)
        self._source_entries: list[tuple[str, Image.Image | None]] = []
        open_button = QPushButton("Open…")
        open_button.setToolTip("Use a photo file as the source.")
        open_button.clicked.connect(self.open_source_dialog)
        self.show_source = QCheckBox("Show behind the map")
        self.show_source.setChecked(True)
        self.show_source.setToolTip("Show the source dimmed behind the map. It is not part of the "
                                    "map: black parts of the map let it through.")  # fmt: skip
        self.show_source.toggled.connect(self._backdrop_changed)
        self.opacity = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=35)
        self.opacity.setToolTip("How bright the source shows behind the map.")
        self.opacity.valueChanged.connect(self._backdrop_changed)
        layout = QVBoxLayout(box)
        layout.addLayout(_hbox(self.source_combo, open_button, stretch_first=True))
        layout.addLayout(_hbox(self.show_source, self.opacity))
        self._refresh_sources()
        return box

    def _kind_box(self) -> QGroupBox:
        box = QGroupBox(self.kind.value.capitalize())
        layout = QVBoxLayout(box)
        self.detect_button = QPushButton()
        self.detector_note = QLabel()
        self.detector_note.setWordWrap(True)
        self.detect_button.clicked.connect(self.detect)
        if self.kind is ControlKind.CANNY:
            self.canny_low = _slider(self._canny_defaults[0], "Low threshold: weaker edges are "
                                     "kept where they connect to strong ones.")  # fmt: skip
            self.canny_high = _slider(self._canny_defaults[1], "High threshold: stronger edges "
                                      "always count.")  # fmt: skip
            self.canny_label = QLabel()
            form = QFormLayout()
            form.addRow("Low", self.canny_low)
            form.addRow("High", self.canny_high)
            layout.addLayout(form)
            layout.addWidget(self.canny_label)
            self.detect_button.setText("Edges from source")
            self.detect_button.setToolTip("Replace the map with the source's Canny edges; the "
                                          "sliders then update them live.")  # fmt: skip
            layout.addWidget(self.detect_button)
            for slider in (self.canny_low, self.canny_high):
                slider.valueChanged.connect(self._canny_changed)
            self._update_canny_label()
        elif self.kind is ControlKind.DEPTH:
            self.detect_button.setText("Estimate depth")
            layout.addWidget(self.detect_button)
            layout.addWidget(self.detector_note)
            layout.addWidget(QLabel("Near is bright, far is dark. Import 8- or 16-bit depth "
                                    "PNGs, or paint and ramp with the gradient (G)."))  # fmt: skip
        elif self.kind is ControlKind.POSE:
            self.detect_button.setText("Detect pose")
            layout.addWidget(self.detect_button)
            layout.addWidget(self.detector_note)
            self.pose_panel = PosePanel(self.pose)
            layout.addWidget(self.pose_panel)
            load = QPushButton("Load JSON…")
            load.setToolTip("Open OpenPose JSON (18- or 25-point bodies).")
            load.clicked.connect(self.load_pose_dialog)
            save = QPushButton("Save JSON…")
            save.setToolTip("Save the people as OpenPose JSON at the map's size.")
            save.clicked.connect(self.save_pose_dialog)
            layout.addLayout(_hbox(load, save))
        else:
            self.detect_button.hide()
            layout.addWidget(QLabel("A ready map for any ControlNet: import or paint it."))
        for label in box.findChildren(QLabel):
            label.setWordWrap(True)
        return box

    def _import_box(self) -> QGroupBox:
        box = QGroupBox("Map")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Replace the map with an image file (fitted to the size by "
                                      "the unit's resize mode); drop files here too.")  # fmt: skip
        self.import_button.clicked.connect(self.import_dialog)
        paste = QPushButton("Paste")
        paste.setToolTip("Replace the map with the image on the clipboard.")
        paste.clicked.connect(lambda: self.import_mime(QGuiApplication.clipboard().mimeData()))
        layout = QVBoxLayout(box)
        layout.addLayout(_hbox(self.import_button, paste))
        return box

    # ---- tools --------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        self.paint.set_tool(name)

    def tool_name(self) -> str:
        return self.paint.tool_name()

    def _cycle_fill(self) -> None:
        if self.kind is not ControlKind.POSE:
            self.set_tool("gradient" if self.tool_name() == "fill" else "fill")

    def _picked(self, value: int) -> None:
        self.value_box.setValue(value)

    def _show_pointer(self, pos: QPointF) -> None:
        x, y = int(pos.x()), int(pos.y())
        if 0 <= x < self.document.width and 0 <= y < self.document.height:
            self.pointer.setText(f"{x}, {y} · {self.document.value_at(pos)}")
        else:
            self.pointer.setText("")

    def clear_map(self) -> None:
        if self.kind is ControlKind.POSE:
            self.pose.set_people([], "Clear")
        else:
            clear(self.document)

    # ---- source -------------------------------------------------------------------------------
    def _refresh_sources(self) -> None:
        entries: list[tuple[str, Image.Image | None]] = [("(no source)", None)]
        try:
            offered = list(self._sources())
        except Exception:  # a history that cannot be read must not keep the editor from opening
            offered = []
        if self.source is not None and all(
            image is not self._source_origin for _, image in offered
        ):
            entries.append((self._source_label, self.source))
        entries.extend(offered)
        self._source_entries = entries
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for label, _image in entries:
            self.source_combo.addItem(label)
        chosen = (self.source, self._source_origin)
        current = next(
            (
                i
                for i, (_, im) in enumerate(entries)
                if im is not None and any(im is c for c in chosen)
            ),
            0,
        )
        self.source_combo.setCurrentIndex(current)
        self.source_combo.blockSignals(False)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        self._refresh_sources()  # results may have finished since the editor was last shown
        super().showEvent(event)

    def _source_chosen(self, index: int) -> None:
        label, image = self._source_entries[index]
        self.set_source(image, label)

    def set_source(self, image: Image.Image | None, label: str = "Source") -> None:
        self._source_origin = image  # a history image, to find it in the list again
        self.source = None if image is None else image.convert("RGB")
        self._source_label = label
        self._scaled_source = None
        self._backdrop_changed()
        self._refresh_sources()
        self._update_detect_enabled()

    def open_source_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a source photo", "", IMAGE_FILTER)
        if path:
            self.open_source(path)

    def open_source(self, path: str | Path) -> bool:
        try:
            image = load_image(path)
        except StudioError as error:
            self.show_message(str(error), error=True)
            return False
        self.set_source(image, f"Photo: {Path(path).name}")
        return True

    def _backdrop_changed(self, *_args: object) -> None:
        if self.source is None:
            self.view.backdrop = None
        else:
            fitted = fit_to_size(self.source, self.document.width, self.document.height,
                                 self.resize_mode)  # fmt: skip
            self.view.backdrop = pil_to_qimage(fitted)
        self.view.show_backdrop = self.show_source.isChecked()
        self.view.backdrop_opacity = self.opacity.value() / 100
        self.view.update()

    # ---- canny --------------------------------------------------------------------------------
    def canny_thresholds(self) -> tuple[int, int]:
        low, high = sorted((self.canny_low.value(), self.canny_high.value()))
        return low, high

    def _canny_image(self) -> QImage:
        # The core's own preprocessor, so the map painted here is the map a run would make.
        detected = detect_map(ControlKind.CANNY, self.source, self.document.width,
                              self.document.height, self.resize_mode,
                              canny=self.canny_thresholds())  # fmt: skip
        return pil_to_qimage(detected.image)

    def _update_canny_label(self) -> None:
        low, high = self.canny_thresholds()
        self.canny_label.setText(f"Thresholds {low} – {high}")

    def _canny_changed(self, *_args: object) -> None:
        self._update_canny_label()
        if self.source is not None:
            self.document.replace(self._canny_image(), "Canny thresholds", CANNY_MERGE)

    # ---- detection ----------------------------------------------------------------------------
    def set_annotator_folders(self, folders: Iterable[str | Path]) -> None:
        self.annotator_folders = [str(f) for f in folders]
        self._check_detector()

    def _check_detector(self) -> None:
        detector = DETECTORS.get(self.kind)
        if detector is None:
            self._update_detect_enabled()
            return
        try:
            folder = find_annotator(detector, annotator_search_folders(self.annotator_folders))
            self.detector_note.setText(f"Weights: {folder}")
            self.detector_note.setToolTip(str(folder))
            self.detect_button.setToolTip(f"Find the {self.kind.value} in the source photo.")
        except StudioError as error:
            # Say it before the user tries: which files, and where we looked.
            self.detector_note.setText(str(error).split(". ")[0] + ". Hover for where the "
                                       "app looked; painting and importing still work.")  # fmt: skip
            self.detector_note.setToolTip(str(error))
            self.detect_button.setToolTip(str(error))
        self._update_detect_enabled()

    def _update_detect_enabled(self) -> None:
        has_source = self.source is not None
        self.detect_button.setEnabled(has_source and not self._detecting)
        if self.kind is ControlKind.CANNY:
            for slider in (self.canny_low, self.canny_high):
                slider.setEnabled(has_source)

    def detect(self) -> bool:
        """Canny at once; pose and depth as a job of the worker (networks take seconds on a CPU),
        ending with ``detection_finished``. False when it could not start."""
        if self.source is None:
            self.show_message("Choose a source photo first.", error=True)
            return False
        if self.kind is ControlKind.CANNY:
            self.document.replace(self._canny_image(), "Edges from source")
            return True
        if self._detecting:
            return False
        try:  # missing weights are reported at once, with where the app looked
            find_annotator(DETECTORS[self.kind], annotator_search_folders(self.annotator_folders))
        except StudioError as error:
            self.show_message(str(error), error=True)
            return False
        self._detecting = True
        self.detect_button.setEnabled(False)
        self.show_message(f"Detecting the {self.kind.value}…")
        request = DetectionRequest(self.kind, self.source, self.document.width,
                                   self.document.height, self.resize_mode,
                                   tuple(self.annotator_folders))  # fmt: skip
        if self.jobs is not None:
            self._detection_job = self.jobs.detect(request).id
        else:  # after this call returns, as a job would
            QTimer.singleShot(0, lambda: self._on_detected(_detect_here(request)))
        return True

    def _on_job_event(self, event: JobEvent) -> None:
        if event.job_id != self._detection_job or not self._detection_job:
            return
        if event.kind is EventKind.FINISHED:
            self._on_detected(event.result)
        elif event.kind is EventKind.FAILED:
            self._on_detected(event.error)
        elif event.kind is EventKind.CANCELLED:
            self._on_detected("Detection was cancelled.")

    def _on_detected(self, outcome: DetectionResult | str) -> None:
        self._detecting = False
        self._detection_job = 0
        self._update_detect_enabled()
        ok = isinstance(outcome, DetectionResult)
        if not ok:
            self.show_message(outcome, error=True)
        elif self.kind is ControlKind.DEPTH:
            self.document.replace(pil_to_qimage(outcome.image), "Estimate depth")
            self.show_message("")
        else:
            people = list(outcome.people)
            self.pose.set_people(people, "Detect pose")
            self.pose.select(0 if people else None)
            found = "Nobody was found in the photo; add a person by hand."
            self.show_message("" if people else found)
        self.detection_finished.emit(ok)

    # ---- import -------------------------------------------------------------------------------
    def import_dialog(self) -> None:
        pattern = POSE_FILTER if self.kind is ControlKind.POSE else IMAGE_FILTER
        path, _ = QFileDialog.getOpenFileName(self, "Import a condition map", "", pattern)
        if path:
            self.import_file(path)

    def import_file(self, path: str | Path) -> bool:
        """Replace the map with a file's; on any error the map stays as it was."""
        path = Path(path)
        try:
            if self.kind is ControlKind.POSE and path.suffix.lower() == ".json":
                self.pose.load_json(path)
            else:
                self.import_image(load_image(path), f"Import {path.name}")
        except StudioError as error:
            self.show_message(str(error), error=True)
            return False
        self.show_message(f"Imported {path.name}.")
        return True

    def import_image(self, image: Image.Image, text: str = "Import") -> None:
        fitted = fit_to_size(image, self.document.width, self.document.height, self.resize_mode)
        if self.kind is ControlKind.POSE:
            self.pose.set_raster(pil_to_qimage(fitted), text)
        else:
            self.document.replace(pil_to_qimage(fitted), text)

    def import_mime(self, mime: QMimeData | None) -> bool:
        picture = mime_picture(mime)
        if isinstance(picture, str):
            return self.import_file(picture)
        if isinstance(picture, QImage):
            self.import_image(qimage_to_pil(picture), "Paste")
            return True
        self.show_message("There is no image on the clipboard.", error=True)
        return False

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.import_mime(event.mimeData())
        event.acceptProposedAction()

    # ---- pose files ---------------------------------------------------------------------------
    def load_pose_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open OpenPose JSON", "", "JSON (*.json)")
        if path:
            self.import_file(path)

    def save_pose_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save OpenPose JSON", "pose.json",
                                              "JSON (*.json)")  # fmt: skip
        if path:
            try:
                self.pose.save_json(Path(path))
                self.show_message(f"Saved {Path(path).name}.")
            except StudioError as error:
                self.show_message(str(error), error=True)

    # ---- result -------------------------------------------------------------------------------
    def map_image(self) -> Image.Image:
        return qimage_to_pil(self.document.image)

    def use_map(self) -> Path | None:
        """Write the map to a new PNG, tell the unit, and close."""
        try:
            path = save_condition_map(self.map_image(), self.maps_folder, self.kind.value)
            if self.kind is ControlKind.POSE and self.pose.raster is None:
                save_pose_sidecar(path, self.pose.to_json())
        except (StudioError, OSError) as error:
            self.show_message(f"Could not save the map in {self.maps_folder}: {error}", error=True)
            return None
        self.saved_path = path
        self.map_saved.emit(str(path))
        self.accept()
        return path

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setToolTip(text)
        self.message.setStyleSheet("color: #ff8060;" if error else "")


def _detect_here(request: DetectionRequest) -> DetectionResult | str:
    try:
        detected = detect_map(request.kind, request.image, request.width, request.height,
                              request.resize_mode, request.annotator_folders)  # fmt: skip
    except Exception as error:  # a bug in a third-party detector must not vanish silently
        if not isinstance(error, StudioError):
            log.exception("%s detection failed", request.kind.value)
        return readable_error(error)
    return DetectionResult(request, detected.image, detected.people)


def _slider(value: int, tip: str) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=255, value=value)
    slider.setToolTip(tip)
    return slider


def _hbox(*widgets: QWidget, stretch_first: bool = False) -> QHBoxLayout:
    layout = QHBoxLayout()
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if stretch_first and i == 0 else 0)
    return layout
