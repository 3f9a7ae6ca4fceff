"""The condition map being edited, its undo history, and the tools that paint on it.

A :class:`MapDocument` holds the map at the generation size, so what is painted is the exact image
the ControlNet receives. Every edit is one :class:`PatchCommand` on a QUndoStack holding only the
changed rectangle before and after, which keeps the history small even for long sessions of short
strokes on large maps.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QLineF, QObject, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QLinearGradient,
    QPainter,
    QPen,
    QRadialGradient,
    QUndoCommand,
    QUndoStack,
)

from studio.qt_image import array_to_qimage, qimage_to_array

UNDO_LIMIT = 200
MAP_FORMAT = QImage.Format.Format_RGB32  # QPainter's fastest target; RGB only, like every map


class MapDocument(QObject):
    """The map image plus its undo stack. ``changed`` carries the rectangle that changed."""

    changed = Signal(QRect)

    def __init__(self, width: int, height: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.image = QImage(width, height, MAP_FORMAT)
        self.image.fill(Qt.GlobalColor.black)  # black is "no condition" in every map kind
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self._before: QImage | None = None

    @property
    def width(self) -> int:
        return self.image.width()

    @property
    def height(self) -> int:
        return self.image.height()

    def rect(self) -> QRect:
        return self.image.rect()

    def array(self) -> np.ndarray:
        return qimage_to_array(self.image)

    def value_at(self, pos: QPointF) -> int:
        point = pos.toPoint()
        if not self.rect().contains(point):
            return 0
        return QColor(self.image.pixel(point)).lightness()

    # ---- edits --------------------------------------------------------------------------------
    def begin_edit(self) -> None:
        """Remember the map before a stroke; :meth:`commit_edit` keeps only what the stroke hit."""
        self._before = self.image.copy()

    def commit_edit(self, text: str, rect: QRect) -> None:
        before, self._before = self._before, None
        rect = rect.intersected(self.rect())
        if before is None or rect.isEmpty():
            return
        old, new = before.copy(rect), self.image.copy(rect)
        if old == new:
            return  # a click that changed nothing is not worth an undo step
        self.undo_stack.push(PatchCommand(self, rect, old, new, text))

    def replace(self, image: QImage, text: str, merge_id: int = -1) -> None:
        """Replace the whole map (imports, canny, detection) as one undo step."""
        image = image.convertToFormat(MAP_FORMAT)
        if image.size() != self.image.size():
            raise ValueError(f"map is {self.width}x{self.height}, got {image.width()}x"
                             f"{image.height()}")  # fmt: skip
        before = self.image.copy()
        self.undo_stack.push(PatchCommand(self, self.rect(), before, image, text, merge_id))

    def replace_array(self, array: np.ndarray, text: str, merge_id: int = -1) -> None:
        self.replace(array_to_qimage(array), text, merge_id)

    def reset(self, image: QImage) -> None:
        """Start over on ``image``, of any size, with an empty history (a new picture's mask)."""
        self.undo_stack.clear()
        self.set_image(image)

    def set_image(self, image: QImage) -> None:
        """Show ``image`` without an undo step (the commands themselves use this)."""
        self.image = image.convertToFormat(MAP_FORMAT)
        self.changed.emit(self.rect())

    def paste(self, patch: QImage, rect: QRect) -> None:
        painter = QPainter(self.image)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(rect.topLeft(), patch)
        painter.end()
        self.changed.emit(rect)


class PackedPatch:
    """A patch of the map kept zlib-compressed: condition maps are mostly flat black, so even a
    whole-map step (an import, a Canny pass) costs a few kilobytes instead of megabytes."""

    def __init__(self, image: QImage) -> None:
        image = image.convertToFormat(MAP_FORMAT)
        self.width, self.height, self.stride = image.width(), image.height(), image.bytesPerLine()
        self.data = zlib.compress(bytes(image.constBits()), 1)

    def image(self) -> QImage:
        raw = zlib.decompress(self.data)
        # QImage borrows ``raw``; copy() gives it its own pixels before ``raw`` goes away.
        return QImage(raw, self.width, self.height, self.stride, MAP_FORMAT).copy()

    def __len__(self) -> int:
        return len(self.data)


class PatchCommand(QUndoCommand):
    """The pixels of ``rect`` before and after one edit."""

    def __init__(
        self,
        document: MapDocument,
        rect: QRect,
        before: QImage,
        after: QImage,
        text: str,
        merge_id: int = -1,
    ) -> None:
        super().__init__(text)
        self.document, self.area = document, QRect(rect)
        self.before, self.after = PackedPatch(before), PackedPatch(after)
        self._merge_id = merge_id

    def id(self) -> int:
        return self._merge_id

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802
        # Live previews (Canny thresholds) replace the whole map at each slider step; merged, they
        # undo in one step back to the map before the first change.
        if not isinstance(other, PatchCommand) or other.area != self.area:
            return False
        self.after = other.after
        return True

    def redo(self) -> None:
        self.document.paste(self.after.image(), self.area)

    def undo(self) -> None:
        self.document.paste(self.before.image(), self.area)


# ---------------------------------------------------------------------------------------------
# Painting primitives (image coordinates)


def grey(value: int, alpha: int = 255) -> QColor:
    return QColor(value, value, value, alpha)


def _bounds(points: list[QPointF], margin: float, limit: QRect) -> QRect:
    xs, ys = [p.x() for p in points], [p.y() for p in points]
    area = QRectF(min(xs) - margin, min(ys) - margin,
                  max(xs) - min(xs) + 2 * margin, max(ys) - min(ys) + 2 * margin)  # fmt: skip
    return area.toAlignedRect().intersected(limit)


def paint_segment(
    image: QImage, start: QPointF, end: QPointF, size: float, hardness: float, value: int
) -> QRect:
    """A round-tipped stroke from ``start`` to ``end``; returns the rectangle it may have touched.

    A fully hard brush paints without antialiasing, so edge maps stay two-valued (Canny maps are
    pure black and white); softer brushes stamp radial dabs whose edge fades out.
    """
    painter = QPainter(image)
    if hardness >= 1.0:
        pen = QPen(grey(value), max(1.0, size), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                   Qt.PenJoinStyle.RoundJoin)  # fmt: skip
        painter.setPen(pen)
        if start == end:
            painter.drawPoint(start)
        else:
            painter.drawLine(QLineF(start, end))
    else:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        radius = max(0.5, size / 2)
        length = QLineF(start, end).length()
        steps = max(1, int(length / max(1.0, radius * 0.25)))
        for i in range(steps + 1):
            centre = start + (end - start) * (i / steps)
            gradient = QRadialGradient(centre, radius)
            gradient.setColorAt(0.0, grey(value))
            gradient.setColorAt(max(0.0, min(0.99, hardness)), grey(value))
            gradient.setColorAt(1.0, grey(value, 0))
            painter.setBrush(QBrush(gradient))
            painter.drawEllipse(centre, radius, radius)
    painter.end()
    return _bounds([start, end], size / 2 + 2, image.rect())


def paint_gradient(image: QImage, start: QPointF, end: QPointF, first: int, last: int) -> QRect:
    """A linear ramp over the whole map: ``first`` at ``start``, ``last`` at ``end``, padded."""
    gradient = QLinearGradient(start, end)
    gradient.setColorAt(0.0, grey(first))
    gradient.setColorAt(1.0, grey(last))
    painter = QPainter(image)
    painter.fillRect(image.rect(), QBrush(gradient))
    painter.end()
    return image.rect()


def flood_fill(array: np.ndarray, seed: QPoint, value: int) -> QRect:
    """Fill the 4-connected region of exactly the seed's colour, in place; the changed rectangle."""
    import cv2  # here: the main window's mask layer opens with these tools, OpenCV loads on use

    height, width = array.shape[:2]
    if not (0 <= seed.x() < width and 0 <= seed.y() < height):
        return QRect()
    mask = np.zeros((height + 2, width + 2), np.uint8)
    _, _, _, (x, y, w, h) = cv2.floodFill(
        array, mask, (seed.x(), seed.y()), (value, value, value), (0, 0, 0), (0, 0, 0), 4
    )
    return QRect(x, y, w, h)


# ---------------------------------------------------------------------------------------------
# Tools: what a mouse drag on the map does. The view calls press/move/release with image
# coordinates and draws each tool's overlay (line previews) on top of the map.


@dataclass
class ToolOptions:
    size: int = 8
    hardness: float = 1.0  # 0..1
    value: int = 255  # grey level painted: white edges, bright = near for depth
    value_to: int = 0  # the gradient's other end


class Tool:
    name = ""
    shows_brush = False  # the view draws the brush outline under the pointer
    zoom = 1.0  # the view's, set before each press

    def __init__(self, document: MapDocument, options: ToolOptions) -> None:
        self.document, self.options = document, options

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None: ...

    def move(self, pos: QPointF) -> None: ...

    def release(self, pos: QPointF) -> None: ...

    def context_click(self, pos: QPointF) -> None:
        """A right-click; only the pose tool uses it (to hide a joint)."""

    def paint_overlay(self, painter: QPainter, zoom: float) -> None: ...


class BrushTool(Tool):
    name = "Brush"
    shows_brush = True

    def _value(self) -> int:
        return self.options.value

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self.document.begin_edit()
        self._last = pos
        self._dirty = self._paint(pos, pos)

    def move(self, pos: QPointF) -> None:
        if getattr(self, "_dirty", None) is None:
            return
        self._dirty = self._dirty.united(self._paint(self._last, pos))
        self._last = pos

    def release(self, pos: QPointF) -> None:
        if getattr(self, "_dirty", None) is None:
            return
        self.move(pos)
        self.document.commit_edit(self.name, self._dirty)
        self._dirty = None

    def _paint(self, start: QPointF, end: QPointF) -> QRect:
        o = self.options
        rect = paint_segment(self.document.image, start, end, o.size, o.hardness, self._value())
        self.document.changed.emit(rect)
        return rect


class EraserTool(BrushTool):
    name = "Eraser"

    def _value(self) -> int:
        return 0  # black: "no edge", "far", "nobody"


class _DragTool(Tool):
    """Tools that act once, between where the drag starts and where it ends."""

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self._start = self._end = pos
        self.document.changed.emit(QRect())

    def move(self, pos: QPointF) -> None:
        if getattr(self, "_start", None) is not None:
            self._end = pos
            self.document.changed.emit(QRect())

    def release(self, pos: QPointF) -> None:
        start, self._start = getattr(self, "_start", None), None
        if start is not None:
            self.apply(start, pos)

    def apply(self, start: QPointF, end: QPointF) -> None: ...

    def paint_overlay(self, painter: QPainter, zoom: float) -> None:
        if getattr(self, "_start", None) is None:
            return
        pen = QPen(QColor(255, 200, 0), 1.5 / zoom, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawLine(QLineF(self._start, self._end))


class LineTool(_DragTool):
    name = "Line"
    shows_brush = True

    def apply(self, start: QPointF, end: QPointF) -> None:
        o = self.options
        self.document.begin_edit()
        rect = paint_segment(self.document.image, start, end, o.size, o.hardness, o.value)
        self.document.commit_edit(self.name, rect)
        self.document.changed.emit(rect)


class GradientTool(_DragTool):
    name = "Gradient"

    def apply(self, start: QPointF, end: QPointF) -> None:
        if QLineF(start, end).length() < 1:
            return
        self.document.begin_edit()
        rect = paint_gradient(self.document.image, start, end,
                              self.options.value, self.options.value_to)  # fmt: skip
        self.document.commit_edit(self.name, rect)
        self.document.changed.emit(rect)


class FillTool(Tool):
    name = "Fill"

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        array = self.document.array()
        rect = flood_fill(array, QPoint(int(pos.x()), int(pos.y())), self.options.value)
        if rect.isEmpty():
            return
        self.document.begin_edit()
        self.document.set_image(array_to_qimage(array))
        self.document.commit_edit(self.name, rect)


class PickerTool(Tool):
    """Takes the grey value under the pointer as the brush value (depth: how near)."""

    name = "Picker"

    def __init__(
        self,
        document: MapDocument,
        options: ToolOptions,
        on_pick: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(document, options)
        self.on_pick = on_pick

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self.options.value = self.document.value_at(pos)
        if self.on_pick is not None:
            self.on_pick(self.options.value)


def invert(document: MapDocument) -> None:
    document.replace_array(255 - document.array(), "Invert")


def clear(document: MapDocument) -> None:
    document.replace_array(np.zeros((document.height, document.width, 3), np.uint8), "Clear")
