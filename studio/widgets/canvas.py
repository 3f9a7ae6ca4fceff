"""The canvas: shows the live denoised preview, then the final image; zoom, pan, condition overlay;
and the bar that scrubs back through the previews the running generation delivered so far."""

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
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QSizePolicy, QSlider, QWidget

from studio.qt_image import paint_image
from studio.scrubbing import Change, RunFrames

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


class RunScrubBar(QWidget):
    """A slider over the running generation's delivered previews (:class:`RunFrames`): moved
    back, the canvas shows that step's frame while the run goes on or holds; at the right end it
    follows the run again. Emptied when the next run starts."""

    def __init__(self, canvas: Canvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.frames: RunFrames[QImage] = RunFrames()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("run-scrubber")
        self.slider.setRange(1, 1)
        self.slider.setPageStep(1)
        self.slider.setMinimumWidth(120)
        self.slider.setToolTip(
            "The previews of the running generation so far, by step: drag "
            "back to look at an earlier step (it keeps running, or holds "
            "while paused); at the right end the canvas follows the run."
        )
        self.label = QLabel()
        self.label.setMinimumWidth(150)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        layout.addWidget(QLabel("Steps:"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self.frames.set_position)
        self.frames.subscribe(self._on_change)
        self.setEnabled(False)

    def add(self, step: int, image: QImage) -> None:
        self.setEnabled(True)
        self.frames.add(step, image)

    def clear(self) -> None:
        self.frames.clear()
        self.setEnabled(False)

    def _on_change(self, what: Change) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(1, self.frames.top)
        self.slider.setValue(self.frames.position)
        self.slider.blockSignals(False)
        self.label.setText(self.frames.position_text())
        shown = self.frames.shown
        if what == "position" and shown is not None and shown[1] is not self.canvas.image:
            self.canvas.set_image(shown[1])
