"""The only place that converts between numpy / PIL images and QImage, and paints one.

QImage may be built and used in any thread (unlike QPixmap), so previews are converted in the
worker and only the finished QImage crosses to the GUI thread.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter


def array_to_qimage(array: np.ndarray) -> QImage:
    """RGB uint8 (H, W, 3) or grey (H, W) -> a QImage that owns a copy of the pixels."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if array.ndim == 2:
        height, width = array.shape
        image = QImage(array.data, width, height, array.strides[0], QImage.Format.Format_Grayscale8)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        height, width, channels = array.shape
        fmt = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGBA8888
        image = QImage(array.data, width, height, array.strides[0], fmt)
    else:
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    # The QImage above borrows numpy's buffer; copy() detaches it before the array goes away.
    return image.copy()


def pil_to_qimage(image: Image.Image) -> QImage:
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    return array_to_qimage(np.asarray(image))


def qimage_to_array(image: QImage) -> np.ndarray:
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = converted.width(), converted.height(), converted.bytesPerLine()
    buffer = np.frombuffer(converted.constBits(), dtype=np.uint8, count=stride * height)
    return buffer.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()


def qimage_to_pil(image: QImage) -> Image.Image:
    return Image.fromarray(qimage_to_array(image), "RGB")


BACKDROP = QColor(24, 24, 26)


def paint_image(
    painter: QPainter, area: QRect, image: QImage | None, target: QRectF, smooth: bool,
    placeholder: str,
) -> bool:  # fmt: skip
    """The dark backdrop over ``area``, then ``image`` in ``target`` (or the placeholder text
    when there is none). True when an image was drawn."""
    painter.fillRect(area, BACKDROP)
    if image is None or image.isNull():
        painter.setPen(QColor(150, 150, 150))
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter, placeholder)
        return False
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
    painter.drawImage(target, image)
    return True
