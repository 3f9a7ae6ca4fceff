"""ControlNet panel: up to three control units, each with its condition map, model and strengths.

Each unit's "Paint / pose…" button (or a double-click on its thumbnail) opens the condition editor;
the map it saves becomes the unit's image as a ready map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from PySide6.QtCore import QMimeData, QSignalBlocker, Qt, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QMouseEvent,
    QPixmap,
)
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
from pipelines.export import condition_maps_folder, save_condition_map
from pipelines.types import MAX_CONTROL_UNITS, ControlKind, ControlUnit, ResizeMode
from studio.control_unit import ControlUnitModel, pick_controlnet
from studio.qt_image import pil_to_qimage, qimage_to_pil
from studio.widgets.layout import row

if TYPE_CHECKING:
    from pipelines.models import ModelInfo
    from studio.session import Session
    from studio.widgets.condition_editor import ConditionEditor

THUMBNAIL = 144
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*)"
CHOOSE_CONTROLNET = "(choose a ControlNet)"

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
DEFAULT_EDITOR_SIZE = (512, 512)
EMPTY_THUMBNAIL = "Drop an image here\nor use Import / Paste"


@dataclass
class EditorContext:
    """What a unit needs from the rest of the window, given to it by the window: the generation
    size, where annotator weights are, pictures to use as a source (newest results first), and the
    session that runs detection jobs (None: the editor detects by itself)."""

    size: Callable[[], tuple[int, int]] = lambda: DEFAULT_EDITOR_SIZE
    annotator_folders: Callable[[], Sequence[str]] = lambda: ()
    sources: Callable[[], Sequence[tuple[str, Image.Image]]] = lambda: ()
    jobs: Session | None = None


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

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.double_clicked.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.dropped.emit(event.mimeData())
        event.acceptProposedAction()


class ControlUnitWidget(QWidget):
    """Shows and edits one :class:`~studio.control_unit.ControlUnitModel` (``self.control``)."""

    changed = Signal()
    problem = Signal(str)

    def __init__(self, number: int, data_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.number = number
        self.data_folder = data_folder
        self.control = ControlUnitModel(self)
        self._source: Image.Image | None = None  # the image file's picture, for the thumbnail
        self.map_image: QImage | None = None
        self.editor: ConditionEditor | None = None  # kept (hidden) between uses
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
        self.model.addItem(CHOOSE_CONTROLNET, "")
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
        form.addRow("Model", row(self.model, self.browse_model))
        form.addRow("", self.preprocess)
        form.addRow("Canny", row(QLabel("low"), self.canny_low, QLabel("high"), self.canny_high))
        form.addRow("Strength", self.strength)
        form.addRow("Range", row(self.start, QLabel("to"), self.end))
        form.addRow("Resize", self.resize_mode)
        layout = QVBoxLayout(self)
        layout.addWidget(self.enabled)
        layout.addLayout(top)
        layout.addLayout(form)
        layout.addStretch(1)
        self._bind()

    # ---- binding: each control edits one field, each field change updates its control ---------
    def _bind(self) -> None:
        c = self.control
        self.enabled.toggled.connect(lambda on: setattr(c, "enabled", on))
        self.kind.currentIndexChanged.connect(
            lambda _: setattr(c, "kind", ControlKind(self.kind.currentData()))
        )
        self.model.currentIndexChanged.connect(
            lambda _: setattr(c, "model", str(self.model.currentData() or ""))
        )
        self.preprocess.toggled.connect(lambda on: setattr(c, "preprocess", on))
        for box in (self.canny_low, self.canny_high):
            box.valueChanged.connect(
                lambda _: setattr(c, "canny", (self.canny_low.value(), self.canny_high.value()))
            )
        self.strength.valueChanged.connect(lambda v: setattr(c, "strength", round(v, 3)))
        self.start.valueChanged.connect(lambda v: setattr(c, "start", round(v, 3)))
        self.end.valueChanged.connect(lambda v: setattr(c, "end", round(v, 3)))
        self.resize_mode.currentIndexChanged.connect(
            lambda _: setattr(c, "resize_mode", ResizeMode(self.resize_mode.currentData()))
        )
        c.changed.connect(self._show_field)
        self._update_canny_enabled()

    def _show_field(self, name: str) -> None:
        c = self.control
        if name == "enabled":
            _quietly(self.enabled, self.enabled.setChecked, c.enabled)
        elif name == "kind":
            _quietly(self.kind, self.kind.setCurrentIndex, max(0, self.kind.findData(c.kind.value)))
        elif name == "model":
            self._show_model(c.model)
        elif name == "preprocess":
            _quietly(self.preprocess, self.preprocess.setChecked, c.preprocess)
        elif name == "canny":
            _quietly(self.canny_low, self.canny_low.setValue, c.canny[0])
            _quietly(self.canny_high, self.canny_high.setValue, c.canny[1])
        elif name in ("strength", "start", "end"):
            box = getattr(self, name)
            _quietly(box, box.setValue, getattr(c, name))
        elif name == "resize_mode":
            index = max(0, self.resize_mode.findData(c.resize_mode.value))
            _quietly(self.resize_mode, self.resize_mode.setCurrentIndex, index)
        if name == "kind":
            self._show_automatic()
        if name in ("kind", "preprocess"):
            self._update_canny_enabled()
        if name in ("image", "kind", "preprocess", "canny", "resize_mode"):
            self._refresh_map()
        if name == "enabled":
            self.changed.emit()

    # ---- models -------------------------------------------------------------------------------
    def set_controlnets(self, controlnets: Iterable[ModelInfo], base_model: str = "") -> None:
        """Fill the model picker (ModelInfo list already filtered to the family); the automatic
        choice comes from those beside ``base_model`` ("": the bundled default)."""
        controlnets = list(controlnets)
        current = self.control.model
        self.control.automatic = {
            kind: str(info.path)
            for kind in ControlKind
            if (info := pick_controlnet(controlnets, kind, base_model)) is not None
        }
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(CHOOSE_CONTROLNET, "")
        self._show_automatic()
        for info in sorted(controlnets, key=lambda m: m.name.lower()):
            kind = f" [{info.control_kind.value}]" if info.control_kind else ""
            self.model.addItem(f"{info.name}{kind}", str(info.path))
            self.model.setItemData(self.model.count() - 1, str(info.path),
                                   Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.model.blockSignals(False)
        self._show_model(current)

    def _show_automatic(self) -> None:
        """The first entry stands for "no choice": it names the ControlNet used then."""
        path = self.control.automatic_model
        self.model.setItemText(0, f"{Path(path).name} (automatic)" if path else CHOOSE_CONTROLNET)
        self.model.setItemData(
            0, "Used until you choose another: the ControlNet of this kind that came with the "
            "model" if path else "", Qt.ItemDataRole.ToolTipRole,
        )  # fmt: skip

    def _show_model(self, path: str) -> None:
        index = self.model.findData(path) if path else 0
        if index < 0:
            self.model.addItem(Path(path).name, path)
            index = self.model.count() - 1
        _quietly(self.model, self.model.setCurrentIndex, index)

    def set_model(self, path: str) -> None:
        self.control.model = path or ""

    def current_model(self) -> str:
        return self.control.model

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a ControlNet", "", "ControlNet (*.safetensors *.json);;All files (*)"
        )
        if path:
            # A diffusers ControlNet is a folder: picking its config.json means the folder.
            chosen = Path(path)
            self.set_model(str(chosen.parent if chosen.name == "config.json" else chosen))

    # ---- condition image ----------------------------------------------------------------------
    @property
    def image_path(self) -> str | None:
        return self.control.image

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
            try:
                stored = self._store(image)
            except (StudioError, OSError) as error:
                self.problem.emit(f"The pasted image could not be kept: {error}")
                return
            self.set_image(str(stored))
        elif mime.hasText() and Path(mime.text().strip()).is_file():
            self.set_image(mime.text().strip())
        else:
            self.problem.emit("There is no image on the clipboard.")

    def _store(self, image: QImage) -> Path:
        # ControlUnit.image is a path (it goes into the PNG metadata), so pasted images get a file.
        return save_condition_map(
            qimage_to_pil(image), condition_maps_folder(self.data_folder), "pasted"
        )

    # ---- condition editor ---------------------------------------------------------------------
    def open_editor(self) -> ConditionEditor:
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
                unit, width, height, condition_maps_folder(self.data_folder),
                annotator_folders=context.annotator_folders(), sources=context.sources,
                jobs=context.jobs, parent=self,
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
        c = self.control
        return (c.image, c.kind, c.preprocess, c.resize_mode,
                c.canny if c.preprocess else None)  # fmt: skip

    def use_edited_map(self, path: str) -> None:
        # The editor's PNG is the exact map at the generation size: no preprocessor runs on it.
        self.control.preprocess = False
        self.set_image(path)
        if self.editor is not None:  # it shows exactly this map: keep it and its history
            self._editor_key = (self._editor_state(), self._editor_key[1])

    def set_image(self, path: str | None) -> bool:
        """Use the image file at ``path`` (None: none); False, with a message, if it is unreadable."""
        if path is None:
            self._source = None
            self.control.image = None
            self.changed.emit()
            return True
        from pipelines.conditions import load_image  # OpenCV loads only once a map is used

        try:
            self._source = load_image(path)
        except StudioError as error:
            self.problem.emit(str(error))
            return False
        self.thumbnail.setToolTip(f"{path}\nDrop another image to replace it.")
        self.control.enabled = True
        if self.control.image == str(path):
            self._refresh_map()  # the file may have changed
        self.control.image = str(path)
        self.changed.emit()
        return True

    def _update_canny_enabled(self) -> None:
        on = self.control.preprocesses_canny
        self.canny_low.setEnabled(on)
        self.canny_high.setEnabled(on)

    def _refresh_map(self) -> None:
        """Show the map the ControlNet will get; Canny runs live as the thresholds move."""
        c = self.control
        if self._source is None or c.image is None:
            self.map_image = None
            self.thumbnail.setPixmap(QPixmap())
            self.thumbnail.setText(EMPTY_THUMBNAIL)
            return
        image = self._source
        if c.preprocesses_canny:
            from pipelines.conditions import detect_map

            width, height = self.context().size()
            image = detect_map(ControlKind.CANNY, image, width, height, c.resize_mode,
                               canny=c.canny).image  # fmt: skip
        self.map_image = pil_to_qimage(image)
        pixmap = QPixmap.fromImage(self.map_image).scaled(
            THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )  # fmt: skip
        self.thumbnail.setPixmap(pixmap)
        self.changed.emit()

    # ---- request ------------------------------------------------------------------------------
    def kind_value(self) -> ControlKind:
        return self.control.kind

    def unit(self) -> ControlUnit | None:
        return self.control.unit()

    def apply(self, unit: ControlUnit | None) -> None:
        """Show ``unit`` (None: an empty unit); an image file that is gone is left out."""
        image = unit.image if unit is not None else None
        self._source = None
        self.control.apply(None if unit is None else replace(unit, image=None))
        if image and Path(image).is_file():
            self.set_image(image)
        if unit is not None:
            self.control.enabled = unit.enabled
        self.changed.emit()


class ControlPanel(QWidget):
    problem = Signal(str)
    changed = Signal()

    def __init__(self, data_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tabs = QTabWidget()
        self.tabs.setToolTip("Up to three ControlNets can steer one image together.")
        self.units = [ControlUnitWidget(i + 1, data_folder) for i in range(MAX_CONTROL_UNITS)]
        self.editor_context = EditorContext()
        for unit in self.units:
            unit.context = self._context
            self.tabs.addTab(unit, f"Unit {unit.number}")
            unit.problem.connect(self.problem)
            unit.changed.connect(self._update_titles)
            unit.changed.connect(self.changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

    def set_editor_context(self, context: EditorContext) -> None:
        """What the units' editors use: given by the window (size, folders, history, jobs)."""
        self.editor_context = context

    def _context(self) -> EditorContext:
        return self.editor_context

    def _update_titles(self) -> None:
        for i, unit in enumerate(self.units):
            mark = "● " if unit.enabled.isChecked() else ""
            self.tabs.setTabText(i, f"{mark}Unit {unit.number}")

    def set_controlnets(self, controlnets: Iterable[ModelInfo], base_model: str = "") -> None:
        controlnets = list(controlnets)
        for unit in self.units:
            unit.set_controlnets(controlnets, base_model)

    def current_unit(self) -> ControlUnitWidget:
        return self.units[self.tabs.currentIndex()]

    def import_condition(self) -> None:
        self.current_unit().import_dialog()

    def controls(self) -> tuple[ControlUnit, ...]:
        return tuple(u for u in (w.unit() for w in self.units) if u is not None)

    def apply(self, controls: Sequence[ControlUnit]) -> None:
        for i, widget in enumerate(self.units):
            widget.apply(controls[i] if i < len(controls) else None)
        self._update_titles()

    def overlay_image(self) -> QImage | None:
        """The first active unit's map, for the canvas overlay before a run has one."""
        for unit in self.units:
            if unit.enabled.isChecked() and unit.map_image is not None:
                return unit.map_image
        return None


def _quietly(widget: QWidget, setter: Callable[[Any], None], value: Any) -> None:
    # Showing a field's new value must not echo back into the model as an edit.
    blocker = QSignalBlocker(widget)
    setter(value)
    blocker.unblock()
