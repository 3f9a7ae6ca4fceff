"""The mask layer: the input picture with the inpainting mask painted over it in red.

The mask is a :class:`~studio.widgets.paint_tools.MapDocument` at the input picture's size (white:
repaint, black: keep), painted with the same tools, undo stack and shortcuts as a condition map
(:class:`~studio.widgets.paint_bar.PaintBar`). Whether it is saved, and where, is the Rework
panel's business: this widget only edits pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QLabel, QStackedWidget, QToolBar, QVBoxLayout, QWidget

from pipelines.types import ResizeMode
from studio.qt_image import pil_to_qimage, qimage_to_array
from studio.widgets.map_view import MapView
from studio.widgets.paint_bar import PaintBar, ToolSpec
from studio.widgets.paint_tools import (
    BrushTool,
    EraserTool,
    FillTool,
    LineTool,
    MapDocument,
    ToolOptions,
)

MASK_TINT = QColor(255, 40, 40)
NO_INPUT = (
    "No input picture yet.\n\nChoose one in the Rework panel (Open…, Paste, or “Use as input” "
    "on a result), or drop a picture here; then paint here what should be redrawn."
)


class MaskLayer(QWidget):
    edited = Signal()  # the mask's pixels changed (a stroke, an undo, an import)
    pictures_dropped = Signal(object)  # QMimeData with pictures or files, to use as the input

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.document = MapDocument(8, 8, self)
        self.options = ToolOptions(size=24, hardness=0.8, value=255)
        self.view = MapView(self.document)
        self.view.tint = MASK_TINT
        self.view.backdrop_opacity = 0.5
        self.view.setToolTip(
            "Paint what should be redrawn (red); the rest is kept.\n"
            "B brush · E eraser · [ ] brush size · Ctrl+Z undo · wheel zoom · middle drag pan"
        )
        d, o = self.document, self.options
        self.tools = {"brush": BrushTool(d, o), "eraser": EraserTool(d, o),
                      "line": LineTool(d, o), "fill": FillTool(d, o)}  # fmt: skip
        specs = (
            ToolSpec("brush", "Brush", "Paint the mask: these pixels are redrawn (B).", ("B",)),
            ToolSpec("eraser", "Eraser", "Take pixels out of the mask: they are kept (E).",
                     ("E",)),
            ToolSpec("line", "Line", "Drag a straight stroke of mask (L).", ("L",)),
            ToolSpec("fill", "Fill", "Fill the area of one value with mask (G).", ("G",)),
        )  # fmt: skip
        self.toolbar = QToolBar()
        self.paint = PaintBar(
            self, self.view, o, self.tools, specs,
            clear_tip="Empty the mask: nothing is redrawn (plain image-to-image).",
            invert_tip="Swap what is redrawn and what is kept.",
            context=Qt.ShortcutContext.WidgetWithChildrenShortcut, zoom_keys=False,
        )  # fmt: skip
        self.paint.fill_toolbar(self.toolbar)
        self.paint.set_tool("brush")
        # A bound method, not a lambda: Qt drops the connection when this widget goes first.
        self.document.undo_stack.indexChanged.connect(self._on_undo_index)

        self.placeholder = QLabel(NO_INPUT)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.stack, 1)
        self.set_picture(None)

    def _on_undo_index(self, _index: int) -> None:
        self.edited.emit()

    # ---- the picture and its mask -------------------------------------------------------------
    @property
    def has_picture(self) -> bool:
        return self.view.backdrop is not None

    def set_picture(self, picture: QImage | None, mask: QImage | None = None) -> None:
        """Paint over ``picture`` starting from ``mask`` (None: empty), with a fresh undo history."""
        self.view.backdrop = picture
        size = picture.size() if picture is not None else self.document.image.size()
        start = QImage(size, QImage.Format.Format_RGB32)
        start.fill(Qt.GlobalColor.black)
        if mask is not None and picture is not None:
            start = _fitted_mask(mask, picture.width(), picture.height())
        new_size = start.size() != self.document.image.size()
        self.document.reset(start)
        self.document.undo_stack.setClean()
        has = picture is not None
        if has and new_size:  # the same share of any picture: a few strokes cover an object
            self.paint.size_box.setValue(max(4, round(min(size.width(), size.height()) / 8)))
        self.stack.setCurrentWidget(self.view if has else self.placeholder)
        self.toolbar.setEnabled(has)
        self.view.fit()
        self.edited.emit()

    def set_surround(self, surround: tuple[QRectF, QImage] | None) -> None:
        """Show the canvas the picture becomes part of around it (see :attr:`MapView.surround`)."""
        self.view.surround = surround
        if self.view.fitted:
            self.view.fit()
        self.view.update()

    def import_mask(self, path: str | Path) -> None:
        """Replace the mask with a file's (white: redraw), as one undo step; a
        :class:`~pipelines.errors.StudioError` says why a file cannot be used."""
        from pipelines.conditions import load_image  # OpenCV loads only once a picture is used

        image = load_image(path)
        self.document.replace(_fitted_mask(pil_to_qimage(image), self.document.width,
                                           self.document.height), f"Import {Path(path).name}")  # fmt: skip

    @property
    def empty(self) -> bool:
        return not self.document.array().any()

    def mask_image(self) -> Image.Image:
        return Image.fromarray(self.document.array()[:, :, 0], "L")

    @property
    def saved(self) -> bool:
        """The mask as shown is the one last loaded or saved."""
        return self.document.undo_stack.isClean()

    def mark_saved(self) -> None:
        self.document.undo_stack.setClean()

    # ---- drops --------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        event.acceptProposedAction()
        self.pictures_dropped.emit(event.mimeData())


def _fitted_mask(mask: QImage, width: int, height: int) -> QImage:
    """A grey mask stretched over the picture: a mask is drawn on its picture, so its corners are
    the picture's corners whatever its size."""
    grey = qimage_to_array(mask).max(axis=2)
    image = Image.fromarray(np.ascontiguousarray(grey), "L").convert("RGB")
    if image.size != (width, height):
        from pipelines.conditions import fit_to_size

        image = fit_to_size(image, width, height, ResizeMode.STRETCH)
    return pil_to_qimage(image).convertToFormat(QImage.Format.Format_RGB32)
