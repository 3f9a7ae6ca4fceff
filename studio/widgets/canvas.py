"""The canvas: shows the live denoised preview, then the final image; zoom, pan, condition overlay."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from studio.qt_image import paint_image

MIN_ZOOM, MAX_ZOOM = 0.05, 32.0


class Canvas(QWidget):
    zoom_changed = Signal(float)
    use_as_input_requested = Signal()  # the shown image should become the input picture

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        self.setMinimumSize(200, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip(
            "Wheel: zoom · drag: pan · double-click: fit · right-click: use as input\n"
            "Shows the model's denoised estimate at every step, then the final image."
        )
        self.image: QImage | None = None
        self.condition: QImage | None = None
        self.show_condition = False
        self.status_text = ""
        self.placeholder = "Type a prompt and press Ctrl+Enter to generate."
        self._fit = True
        self._zoom = 1.0
        self._offset = QPointF(0, 0)  # pan, in widget pixels, from the centred position
        self._drag_from: QPointF | None = None

    # ---- content ------------------------------------------------------------------------------
    def set_image(self, image: QImage | None, keep_view: bool = True) -> None:
        size_changed = image is None or self.image is None or image.size() != self.image.size()
        self.image = image
        if size_changed or not keep_view:
            self._offset = QPointF(0, 0)
        self.update()

    def set_condition(self, image: QImage | None) -> None:
        self.condition = image
        self.update()

    def set_show_condition(self, show: bool) -> None:
        self.show_condition = show
        self.update()

    def set_status(self, text: str) -> None:
        self.status_text = text
        self.update()

    # ---- view ---------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self._fit_zoom() if self._fit else self._zoom

    def _fit_zoom(self) -> float:
        if self.image is None or self.image.isNull():
            return 1.0
        margin = 16
        sx = max(1, self.width() - margin) / self.image.width()
        sy = max(1, self.height() - margin) / self.image.height()
        return max(MIN_ZOOM, min(sx, sy))

    def fit(self) -> None:
        self._fit = True
        self._offset = QPointF(0, 0)
        self.update()
        self.zoom_changed.emit(self.zoom)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, zoom: float) -> None:
        self._fit = False
        self._zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        self.update()
        self.zoom_changed.emit(self._zoom)

    def image_rect(self) -> QRectF:
        if self.image is None:
            return QRectF()
        zoom = self.zoom
        w, h = self.image.width() * zoom, self.image.height() * zoom
        x = (self.width() - w) / 2 + self._offset.x()
        y = (self.height() - h) / 2 + self._offset.y()
        return QRectF(x, y, w, h)

    # ---- events -------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        target = self.image_rect()
        # Nearest-neighbour when magnified, so single pixels stay visible at high zoom.
        if paint_image(painter, self.rect(), self.image, target, self.zoom < 1.0, self.placeholder):
            if self.show_condition and self.condition is not None:
                painter.setOpacity(0.5)
                painter.drawImage(target, self.condition)
                painter.setOpacity(1.0)
            painter.setPen(QPen(QColor(70, 70, 75)))
            painter.drawRect(target.adjusted(-1, -1, 0, 0))
        if self.status_text:
            metrics = painter.fontMetrics()
            box = metrics.boundingRect(self.status_text).adjusted(-8, -4, 8, 4)
            box.moveTopLeft(self.rect().topLeft() + QPointF(8, 8).toPoint())
            painter.fillRect(box, QColor(0, 0, 0, 160))
            painter.setPen(QColor(235, 235, 235))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self.status_text)
        painter.end()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if self.image is None:
            return
        steps = event.angleDelta().y() / 120
        if not steps:
            return
        old = self.zoom
        new = max(MIN_ZOOM, min(MAX_ZOOM, old * (1.25**steps)))
        # Keep the point under the cursor still while zooming.
        centre = QPointF(self.width() / 2, self.height() / 2) + self._offset
        cursor = event.position()
        self._offset += (cursor - centre) * (1 - new / old)
        self.set_zoom(new)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is not None:
            self._offset += event.position() - self._drag_from
            self._drag_from = event.position()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag_from = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.fit()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802
        if self.image is None:
            return
        menu = QMenu(self)
        menu.addAction("Use as input", self.use_as_input_requested.emit)
        menu.popup(event.globalPos())
