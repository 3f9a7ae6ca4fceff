"""ControlNet panel: up to three control units, each with its condition map, model and strengths.

Each unit's "Paint / pose…" button (or a double-click on its thumbnail) opens the condition editor;
the map it saves becomes the unit's image as a ready map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pipelines.errors import StudioError
from pipelines.types import MAX_CONTROL_UNITS, ControlKind, ControlUnit, ResizeMode
from studio.qt_image import pil_to_qimage, qimage_to_pil
from studio.widgets.map_store import maps_folder, save_map

THUMBNAIL = 144
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*)"
KIND_TIPS = {
    ControlKind.CANNY: "Edges: keeps outlines and structure.",
    ControlKind.POSE: "OpenPose skeleton: keeps people's poses.",
    ControlKind.DEPTH: "Depth map: keeps the 3-D layout.",
    ControlKind.CUSTOM: "A ready-made map for any other ControlNet (no preprocessor).",
}
RESIZE_TIPS = {
    ResizeMode.FIT: "Fit: letterbox into the image size (black bars).",
    ResizeMode.CROP: "Crop: fill the image size, cutting the overflow.",
    ResizeMode.STRETCH: "Stretch: ignore the aspect ratio.",
}
MODEL_ROLE = Qt.ItemDataRole.UserRole
DEFAULT_EDITOR_SIZE = (512, 512)


@dataclass
class EditorContext:
    """What the condition editor needs from the rest of the window: the generation size, where
    annotator weights are, and pictures to use as a source (newest results first)."""

    size: Callable[[], tuple[int, int]] = lambda: DEFAULT_EDITOR_SIZE
    annotator_folders: Callable[[], Sequence[str]] = lambda: ()
    sources: Callable[[], Sequence[tuple[str, object]]] = lambda: ()


def window_context(window: QWidget) -> EditorContext:
    """The context read from a main window that has a prompt panel, settings and a session.

    Duck-typed so that the panel works in any window (and alone in tests) without importing it.
    """
    context = EditorContext()
    prompt = getattr(window, "prompt_panel", None)
    if prompt is not None and hasattr(prompt, "width_box"):
        # The boxes show the effective size, the model's native one included once it is known.
        def size() -> tuple[int, int]:
            return _snap8(prompt.width_box.value()), _snap8(prompt.height_box.value())

        context.size = size
    settings = getattr(window, "settings", None)
    if settings is not None and hasattr(settings, "annotator_folders"):
        context.annotator_folders = lambda: settings.annotator_folders
    session = getattr(window, "session", None)
    if session is not None and hasattr(session, "history"):

        def sources() -> list[tuple[str, object]]:
            entries = list(enumerate(session.history, 1))[::-1]
            return [(f"Result {n} · seed {e.request.seed}", e.result.image) for n, e in entries]

        context.sources = sources
    return context


def _snap8(value: int) -> int:
    return max(8, int(value) // 8 * 8)


class ThumbnailLabel(QLabel):
    """The condition map's thumbnail; accepts dropped image files and image data."""

    dropped = Signal(object)  # QMimeData
    double_clicked = Signal()

    def __init__(self) -> None:
        super().__init__("Drop an image here\nor use Import / Paste")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFixedSize(THUMBNAIL, THUMBNAIL)
        self.setAcceptDrops(True)
        self.setWordWrap(True)
        self.setStyleSheet("QLabel { border: 1px dashed palette(mid); color: palette(mid); }")
        self.setToolTip("The condition map the ControlNet will receive. Drop an image here; "
                        "double-click to paint or pose it.")  # fmt: skip

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.double_clicked.emit()

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        self.dropped.emit(event.mimeData())
        event.acceptProposedAction()


class ControlUnitWidget(QWidget):
    changed = Signal()
    problem = Signal(str)

    def __init__(self, number: int, data_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.number = number
        self.data_folder = data_folder
        self.image_path: str | None = None
        self._source = None  # PIL image of image_path, for the live preprocessor preview
        self.map_image: QImage | None = None
        self.editor = None  # this unit's ConditionEditor, kept (hidden) between uses
        self._editor_key: tuple | None = None
        self.context: Callable[[], EditorContext] = EditorContext

        self.enabled = QCheckBox(f"Use control unit {number}")
        self.enabled.setToolTip("Apply this ControlNet to the next run.")
        self.kind = QComboBox()
        for kind in ControlKind:
            self.kind.addItem(kind.value.capitalize(), kind.value)
            self.kind.setItemData(
                self.kind.count() - 1, KIND_TIPS[kind], Qt.ItemDataRole.ToolTipRole
            )
        self.kind.setToolTip("What the condition map describes.")
        self.model = QComboBox()
        self.model.setToolTip("ControlNet model; only those made for the base model's family are "
                              "listed.")  # fmt: skip
        self.model.setMinimumContentsLength(12)
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.browse_model = QToolButton(text="…")
        self.browse_model.setToolTip("Choose a ControlNet file or folder.")
        self.browse_model.clicked.connect(self._browse_model)

        self.thumbnail = ThumbnailLabel()
        self.thumbnail.dropped.connect(self.import_mime)
        self.thumbnail.double_clicked.connect(self.open_editor)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Open a condition map or a photo to preprocess (Ctrl+O).")
        self.import_button.clicked.connect(self.import_dialog)
        self.paste_button = QPushButton("Paste")
        self.paste_button.setToolTip("Use the image (or image file) on the clipboard.")
        self.paste_button.clicked.connect(self.paste)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove the condition image.")
        self.clear_button.clicked.connect(lambda: self.set_image(None))
        self.edit_button = QPushButton("Paint / pose…")
        self.edit_button.setToolTip("Open the condition editor: paint edges or depth, edit a pose "
                                    "skeleton, detect from a photo, at the generation size.")  # fmt: skip
        self.edit_button.clicked.connect(self.open_editor)

        self.preprocess = QCheckBox("Run preprocessor")
        self.preprocess.setToolTip("Treat the image as a photo and turn it into a condition map "
                                   "(edges, pose or depth) before the run.")  # fmt: skip
        self.canny_low = QSpinBox(minimum=0, maximum=255, value=100)
        self.canny_low.setToolTip("Canny low threshold: weaker edges above it are kept if they "
                                  "connect to strong ones.")  # fmt: skip
        self.canny_high = QSpinBox(minimum=0, maximum=255, value=200)
        self.canny_high.setToolTip("Canny high threshold: edges stronger than this always count.")
        self.strength = QDoubleSpinBox(minimum=0.0, maximum=2.0, value=1.0, singleStep=0.05)
        self.strength.setToolTip("How strongly the ControlNet steers the image (0 to 2).")
        self.start = QDoubleSpinBox(minimum=0.0, maximum=1.0, value=0.0, singleStep=0.05)
        self.start.setToolTip("Fraction of the steps after which the control starts.")
        self.end = QDoubleSpinBox(minimum=0.0, maximum=1.0, value=1.0, singleStep=0.05)
        self.end.setToolTip("Fraction of the steps after which the control stops.")
        self.resize_mode = QComboBox()
        for mode in ResizeMode:
            self.resize_mode.addItem(mode.value.capitalize(), mode.value)
            index = self.resize_mode.count() - 1
            self.resize_mode.setItemData(index, RESIZE_TIPS[mode], Qt.ItemDataRole.ToolTipRole)
        self.resize_mode.setToolTip("How the map is fitted to the image size.")

        buttons = QVBoxLayout()
        for button in (self.import_button, self.paste_button, self.clear_button, self.edit_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(self.thumbnail)
        top.addLayout(buttons)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Kind", self.kind)
        form.addRow("Model", _row(self.model, self.browse_model))
        form.addRow("", self.preprocess)
        form.addRow("Canny", _row(QLabel("low"), self.canny_low, QLabel("high"), self.canny_high))
        form.addRow("Strength", self.strength)
        form.addRow("Range", _row(self.start, QLabel("to"), self.end))
        form.addRow("Resize", self.resize_mode)
        layout = QVBoxLayout(self)
        layout.addWidget(self.enabled)
        layout.addLayout(top)
        layout.addLayout(form)
        layout.addStretch(1)

        for signal in (
            self.kind.currentIndexChanged,
            self.preprocess.toggled,
            self.canny_low.valueChanged,
            self.canny_high.valueChanged,
        ):
            signal.connect(self._refresh_map)
        self.enabled.toggled.connect(self.changed)
        self.kind.currentIndexChanged.connect(self._update_canny_enabled)
        self.preprocess.toggled.connect(self._update_canny_enabled)
        self._update_canny_enabled()

    # ---- models -------------------------------------------------------------------------------
    def set_controlnets(self, controlnets) -> None:
        """Fill the model picker (ModelInfo list already filtered to the family)."""
        current = self.current_model()
        self.model.clear()
        self.model.addItem("(choose a ControlNet)", "")
        for info in sorted(controlnets, key=lambda m: m.name.lower()):
            kind = f" [{info.control_kind.value}]" if info.control_kind else ""
            self.model.addItem(f"{info.name}{kind}", str(info.path))
            self.model.setItemData(self.model.count() - 1, str(info.path),
                                   Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.set_model(current)

    def set_model(self, path: str) -> None:
        if not path:
            self.model.setCurrentIndex(0)
            return
        index = self.model.findData(path)
        if index < 0:
            self.model.addItem(Path(path).name, path)
            index = self.model.count() - 1
        self.model.setCurrentIndex(index)

    def current_model(self) -> str:
        return str(self.model.currentData() or "")

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a ControlNet", "", "ControlNet (*.safetensors *.json);;All files (*)"
        )
        if path:
            # A diffusers ControlNet is a folder: picking its config.json means the folder.
            chosen = Path(path)
            self.set_model(str(chosen.parent if chosen.name == "config.json" else chosen))

    # ---- condition image ----------------------------------------------------------------------
    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a condition image", "", IMAGE_FILTER)
        if path:
            self.set_image(path)

    def paste(self) -> None:
        self.import_mime(QGuiApplication.clipboard().mimeData())

    def import_mime(self, mime: QMimeData | None) -> None:
        if mime is None:
            return
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if files:
            self.set_image(files[0])
        elif mime.hasImage():
            image = QImage(mime.imageData())
            if image.isNull():
                self.problem.emit("The clipboard image could not be read.")
                return
            self.set_image(str(self._store(image)))
        elif mime.hasText() and Path(mime.text().strip()).is_file():
            self.set_image(mime.text().strip())
        else:
            self.problem.emit("There is no image on the clipboard.")

    def _store(self, image: QImage) -> Path:
        # ControlUnit.image is a path (it goes into the PNG metadata), so pasted images get a file.
        return save_map(qimage_to_pil(image), maps_folder(self.data_folder), "pasted")

    # ---- condition editor ---------------------------------------------------------------------
    def open_editor(self):
        """Open this unit's editor on the map the ControlNet would receive now.

        A closed editor is kept, hidden, with its undo history: reopening it (after Cancel, Esc
        or "Use map") continues where the user left off. It is rebuilt only when what it shows
        no longer matches the unit: another image, kind, preprocessing or generation size.
        """
        from studio.widgets.condition_editor import ConditionEditor

        context = self.context()
        width, height = context.size()
        key = (self._editor_state(), (width, height))
        if self.editor is not None and self._editor_key != key:
            self.editor.deleteLater()
            self.editor = None
        if self.editor is None:
            unit = self.unit() or ControlUnit(self.kind_value(), "")
            self.editor = ConditionEditor.for_unit(
                unit, width, height, maps_folder(self.data_folder),
                annotator_folders=context.annotator_folders(), sources=context.sources,
                parent=self,
            )  # fmt: skip
            self.editor.setWindowTitle(f"Unit {self.number}: {self.editor.windowTitle()}")
            self.editor.map_saved.connect(self.use_edited_map)
            self._editor_key = key
        else:  # the settings may have gained an annotator folder meanwhile
            self.editor.set_annotator_folders(context.annotator_folders())
        self.editor.show()  # not modal: the prompt and the other units stay usable
        self.editor.raise_()
        self.editor.activateWindow()
        return self.editor

    def _editor_state(self) -> tuple:
        canny = (self.canny_low.value(), self.canny_high.value())
        return (self.image_path, self.kind_value(), self.preprocess.isChecked(),
                self.resize_mode.currentData(), canny if self.preprocess.isChecked() else None)  # fmt: skip

    def use_edited_map(self, path: str) -> None:
        # The editor's PNG is the exact map at the generation size: no preprocessor runs on it.
        self.preprocess.blockSignals(True)
        self.preprocess.setChecked(False)
        self.preprocess.blockSignals(False)
        self._update_canny_enabled()
        self.set_image(path)
        if self.editor is not None:  # it shows exactly this map: keep it and its history
            self._editor_key = (self._editor_state(), self._editor_key[1])

    def set_image(self, path: str | None) -> None:
        if path is None:
            self.image_path, self._source = None, None
            self.map_image = None
            self.thumbnail.setPixmap(QPixmap())
            self.thumbnail.setText("Drop an image here\nor use Import / Paste")
            self.changed.emit()
            return
        from pipelines.conditions import load_image

        try:
            self._source = load_image(path)
        except StudioError as error:
            self.problem.emit(str(error))
            return
        self.image_path = str(path)
        self.thumbnail.setToolTip(f"{path}\nDrop another image to replace it.")
        if not self.enabled.isChecked():
            self.enabled.setChecked(True)
        self._refresh_map()
        self.changed.emit()

    def _update_canny_enabled(self, *_args) -> None:
        on = self.preprocess.isChecked() and self.kind_value() is ControlKind.CANNY
        self.canny_low.setEnabled(on)
        self.canny_high.setEnabled(on)

    def _refresh_map(self, *_args) -> None:
        """Show the map the ControlNet will get; Canny runs live as the thresholds move."""
        if self._source is None:
            return
        image = self._source
        if self.preprocess.isChecked() and self.kind_value() is ControlKind.CANNY:
            from pipelines.conditions import canny_map

            low, high = sorted((self.canny_low.value(), self.canny_high.value()))
            preview = image.copy()
            preview.thumbnail((512, 512))
            image = canny_map(preview, low, high)
        self.map_image = pil_to_qimage(image)
        pixmap = QPixmap.fromImage(self.map_image).scaled(
            THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )  # fmt: skip
        self.thumbnail.setPixmap(pixmap)
        self.changed.emit()

    # ---- request ------------------------------------------------------------------------------
    def kind_value(self) -> ControlKind:
        return ControlKind(self.kind.currentData())

    def unit(self) -> ControlUnit | None:
        if not (self.image_path or self.current_model() or self.enabled.isChecked()):
            return None
        low, high = sorted((self.canny_low.value(), self.canny_high.value()))
        return ControlUnit(
            kind=self.kind_value(),
            model=self.current_model(),
            image=self.image_path,
            preprocess=self.preprocess.isChecked(),
            strength=round(self.strength.value(), 3),
            start=round(self.start.value(), 3),
            end=round(self.end.value(), 3),
            resize_mode=ResizeMode(self.resize_mode.currentData()),
            canny_low=low,
            canny_high=high,
            enabled=self.enabled.isChecked(),
        )

    def apply(self, unit: ControlUnit | None) -> None:
        unit = unit or ControlUnit(ControlKind.CANNY, "", enabled=False)
        self.kind.setCurrentIndex(max(0, self.kind.findData(ControlKind(unit.kind).value)))
        self.set_model(unit.model)
        self.preprocess.setChecked(unit.preprocess)
        self.canny_low.setValue(unit.canny_low)
        self.canny_high.setValue(unit.canny_high)
        self.strength.setValue(unit.strength)
        self.start.setValue(unit.start)
        self.end.setValue(unit.end)
        self.resize_mode.setCurrentIndex(max(0, self.resize_mode.findData(
            ResizeMode(unit.resize_mode).value)))  # fmt: skip
        if unit.image and Path(unit.image).is_file():
            self.set_image(unit.image)
        else:
            self.set_image(None)
        self.enabled.setChecked(unit.enabled)


class ControlPanel(QWidget):
    problem = Signal(str)
    changed = Signal()

    def __init__(self, data_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tabs = QTabWidget()
        self.tabs.setToolTip("Up to three ControlNets can steer one image together.")
        self.units = [ControlUnitWidget(i + 1, data_folder) for i in range(MAX_CONTROL_UNITS)]
        self.editor_context: EditorContext | None = None  # None: ask the window (window_context)
        for unit in self.units:
            unit.context = self._context
            self.tabs.addTab(unit, f"Unit {unit.number}")
            unit.problem.connect(self.problem)
            unit.changed.connect(self._update_titles)
            unit.changed.connect(self.changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

    def set_editor_context(self, context: EditorContext | None) -> None:
        self.editor_context = context

    def _context(self) -> EditorContext:
        if self.editor_context is not None:
            return self.editor_context
        return window_context(self.window())

    def _update_titles(self) -> None:
        for i, unit in enumerate(self.units):
            mark = "● " if unit.enabled.isChecked() else ""
            self.tabs.setTabText(i, f"{mark}Unit {unit.number}")

    def set_controlnets(self, controlnets) -> None:
        for unit in self.units:
            unit.set_controlnets(controlnets)

    def current_unit(self) -> ControlUnitWidget:
        return self.units[self.tabs.currentIndex()]

    def import_condition(self) -> None:
        self.current_unit().import_dialog()

    def controls(self) -> tuple[ControlUnit, ...]:
        return tuple(u for u in (w.unit() for w in self.units) if u is not None)

    def apply(self, controls) -> None:
        for i, widget in enumerate(self.units):
            widget.apply(controls[i] if i < len(controls) else None)
        self._update_titles()

    def overlay_image(self) -> QImage | None:
        """The first active unit's map, for the canvas overlay before a run has one."""
        for unit in self.units:
            if unit.enabled.isChecked() and unit.map_image is not None:
                return unit.map_image
        return None


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return box
