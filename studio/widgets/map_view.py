"""The editor's canvas: the map at the generation size, zoomed and panned, over a dimmed photo.

Mouse positions are turned into map coordinates here and handed to the current tool; the view itself
never changes pixels. Middle-button drag (or Space + drag) pans, the wheel zooms about the pointer.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.widgets.paint_tools import MapDocument, Tool

MIN_ZOOM, MAX_ZOOM = 0.05, 32.0
MARGIN = 12


class MapView(QWidget):
    zoom_changed = Signal(float)
    hovered = Signal(QPointF)  # map coordinates under the pointer, for the status line

    def __init__(self, document: MapDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.tool: Tool | None = None
        self.backdrop: QImage | None = None  # the source photo at the map's size
        self.backdrop_opacity = 0.35
        self.show_backdrop = True
        # Set: the map is a mask drawn in this colour over the full-strength backdrop, white
        # opaque and black clear, instead of a map lightening a dimmed photo.
        self.tint: QColor | None = None
        self._tinted: tuple[int, QImage] | None = None  # (the map's cache key, its tinted copy)
        # (where, what) in map coordinates, drawn under the map: the bigger canvas it becomes part
        # of (an outpainted picture's border), so the user sees the result's frame while painting.
        self.surround: tuple[QRectF, QImage] | None = None
        self._zoom = 1.0
        self._offset = QPointF(MARGIN, MARGIN)
        self._fitted = True
        self._pan_from: QPointF | None = None
        self._space = False
        self._pointer: QPointF | None = None
        self._painting = False
        self.setMinimumSize(320, 320)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip("Left drag: use the tool · wheel: zoom · middle drag or Space+drag: pan\n"
                        "Double-click with the middle button: fit the map in the view.")  # fmt: skip
        document.changed.connect(lambda _rect: self.update())

    # ---- view transform -----------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self._zoom

    def transform(self) -> QTransform:
        return QTransform(self._zoom, 0, 0, self._zoom, self._offset.x(), self._offset.y())

    def to_map(self, point: QPointF) -> QPointF:
        return (point - self._offset) / self._zoom

    def from_map(self, point: QPointF) -> QPointF:
        return point * self._zoom + self._offset

    def fit(self) -> None:
        self._fitted = True
        room_w = max(1, self.width() - 2 * MARGIN)
        room_h = max(1, self.height() - 2 * MARGIN)
        shown = self.shown_rect()
        zoom = min(room_w / shown.width(), room_h / shown.height())
        self._set_zoom(zoom, QPointF(0, 0))
        centre = QPointF(self.width() / 2, self.height() / 2)
        self._offset = centre - shown.center() * self._zoom
        self.update()

    @property
    def fitted(self) -> bool:
        """The view follows its size (fit), rather than a zoom the user chose."""
        return self._fitted

    def shown_rect(self) -> QRectF:
        """The map, and the surrounding canvas when there is one, in map coordinates."""
        area = QRectF(self.document.rect())
        return area.united(self.surround[0]) if self.surround is not None else area

    def actual_size(self) -> None:
        self._fitted = False
        centre = QPointF(self.width() / 2, self.height() / 2)
        self._set_zoom(1.0, centre)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self._fitted = False
        self._set_zoom(self._zoom * factor, anchor or QPointF(self.width() / 2, self.height() / 2))

    def _set_zoom(self, zoom: float, anchor: QPointF) -> None:
        # Keep the map point under ``anchor`` where it is, as image viewers do.
        fixed = self.to_map(anchor)
        self._zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        self._offset = anchor - fixed * self._zoom
        self.zoom_changed.emit(self._zoom)
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        if self._fitted:
            self.fit()
        super().resizeEvent(event)

    # ---- painting -----------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(38, 38, 40))
        painter.setTransform(self.transform())
        # Sharp pixels when zoomed in: the user edits single pixels of the map.
        smooth = self._zoom < 1.0
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        area = QRectF(self.document.rect())
        painter.fillRect(area, Qt.GlobalColor.black)
        if self.surround is not None:
            painter.drawImage(*self.surround)
        if self.tint is not None:
            self._paint_mask(painter, area)
        elif self.backdrop is not None and self.show_backdrop:
            painter.setOpacity(self.backdrop_opacity)
            painter.drawImage(area, self.backdrop)
            painter.setOpacity(1.0)
            # Lighten: the map's black ("nothing") lets the dimmed photo through, its lines do not.
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Lighten)
        if self.tint is None:
            painter.drawImage(area, self.document.image)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.tool is not None:
            self.tool.paint_overlay(painter, self._zoom)
            size = getattr(getattr(self.tool, "options", None), "size", 0)
            if self.tool.shows_brush and self._pointer is not None and size:
                painter.setPen(QPen(QColor(255, 255, 255, 160), 1.0 / self._zoom))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawEllipse(self._pointer, size / 2, size / 2)
        painter.resetTransform()
        painter.setPen(QPen(QColor(90, 90, 96), 1))
        painter.drawRect(self.transform().mapRect(area).toRect().adjusted(0, 0, -1, -1))
        painter.end()

    def _paint_mask(self, painter: QPainter, area: QRectF) -> None:
        if self.backdrop is not None:
            painter.drawImage(area, self.backdrop)
        key = self.document.image.cacheKey()
        if self._tinted is None or self._tinted[0] != key:
            tinted = QImage(self.document.image.size(), QImage.Format.Format_ARGB32)
            tinted.fill(self.tint)
            # The map's grey level becomes the colour's opacity: a soft brush edge stays soft.
            tinted.setAlphaChannel(self.document.image)
            self._tinted = (key, tinted)
        painter.setOpacity(self.backdrop_opacity)
        painter.drawImage(area, self._tinted[1])
        painter.setOpacity(1.0)

    def update_map_rect(self, rect: QRect) -> None:
        self.update(self.transform().mapRect(QRectF(rect)).toAlignedRect().adjusted(-2, -2, 2, 2))

    # ---- input --------------------------------------------------------------------------------
    def _panning(self, event: QMouseEvent) -> bool:
        return event.button() == Qt.MouseButton.MiddleButton or (
            self._space and event.button() == Qt.MouseButton.LeftButton
        )

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._panning(event):
            self._pan_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.tool is None:
            return
        self.tool.zoom = self._zoom  # the pose tool's handles are a fixed size on screen
        if event.button() == Qt.MouseButton.LeftButton:
            self._painting = True
            self.tool.press(self.to_map(event.position()), event.modifiers())
        elif event.button() == Qt.MouseButton.RightButton:
            self.tool.context_click(self.to_map(event.position()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = self.to_map(event.position())
        self._pointer = pos
        self.hovered.emit(pos)
        if self._pan_from is not None:
            self._fitted = False
            self._offset += event.position() - self._pan_from
            self._pan_from = event.position()
            self.update()
            return
        if self._painting and self.tool is not None:
            self.tool.move(pos)
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None:
            self._pan_from = None
            self.unsetCursor()
            return
        if self._painting and self.tool is not None:
            self._painting = False
            self.tool.release(self.to_map(event.position()))

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.MiddleButton:
            self.fit()
        else:
            self.mousePressEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        self._pointer = None
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(1.25**steps, event.position())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.unsetCursor()
            return
        super().keyReleaseEvent(event)
