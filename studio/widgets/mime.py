"""What a drop or the clipboard offers as a picture: a local file, or pixels."""

from __future__ import annotations

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage


def mime_picture(mime: QMimeData | None) -> str | QImage | None:
    """The first local file's path, else the image data, else None."""
    if mime is None:
        return None
    files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
    if files:
        return files[0]
    if mime.hasImage():
        image = QImage(mime.imageData())
        if not image.isNull():
            return image
    return None
