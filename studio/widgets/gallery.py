"""History strip: every finished image with its request; drop a PNG here to restore its settings."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

ICON = 96
INDEX_ROLE = Qt.ItemDataRole.UserRole


class _Strip(QListWidget):
    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(ICON, ICON))
        self.setSpacing(4)
        self.setFixedHeight(ICON + 36)
        self.setHorizontalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        # Drops arrive at the viewport; Static movement leaves it refusing them unless told.
        self.setDragDropMode(QListView.DragDropMode.DropOnly)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setToolTip("History: click an image to show it. Drop a PNG from this app or "
                        "AUTOMATIC1111 here to restore its settings.")  # fmt: skip

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            self.files_dropped.emit(files)
            event.acceptProposedAction()


class Gallery(QWidget):
    selected = Signal(int)  # history index
    reuse_requested = Signal(int)
    save_requested = Signal(int)
    copy_requested = Signal(int)
    files_dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = _Strip()
        self.strip.currentItemChanged.connect(self._on_current)
        self.strip.files_dropped.connect(self.files_dropped)
        self.reuse_button = QPushButton("Reuse settings")
        self.reuse_button.setToolTip("Load the selected image's settings back into the panels.")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the selected image as PNG with its settings.")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selected image to the clipboard.")
        for button, signal in (
            (self.reuse_button, self.reuse_requested),
            (self.save_button, self.save_requested),
            (self.copy_button, self.copy_requested),
        ):
            button.setEnabled(False)
            button.clicked.connect(lambda _=False, s=signal: self._emit_current(s))
        buttons = QVBoxLayout()
        for button in (self.reuse_button, self.save_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 4)
        layout.addWidget(self.strip, 1)
        layout.addLayout(buttons)

    def add_entry(self, index: int, entry) -> None:
        request = entry.request
        pixmap = QPixmap.fromImage(entry.image).scaled(
            ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )  # fmt: skip
        item = QListWidgetItem(QIcon(pixmap), f"#{index + 1}")
        item.setData(INDEX_ROLE, index)
        item.setToolTip(
            f"{request.prompt[:120]}\nseed {request.seed} · {request.sampler} · "
            f"{request.steps} steps · CFG {request.cfg_scale:g} · {request.width}×{request.height}"
        )
        self.strip.addItem(item)
        self.strip.setCurrentItem(item)
        self.strip.scrollToItem(item)

    def count(self) -> int:
        return self.strip.count()

    def current_index(self) -> int | None:
        item = self.strip.currentItem()
        return None if item is None else int(item.data(INDEX_ROLE))

    def select(self, index: int) -> None:
        self.strip.setCurrentRow(index)

    def _emit_current(self, signal) -> None:
        index = self.current_index()
        if index is not None:
            signal.emit(index)

    def _on_current(self, item, _previous) -> None:
        for button in (self.reuse_button, self.save_button, self.copy_button):
            button.setEnabled(item is not None)
        if item is not None:
            self.selected.emit(int(item.data(INDEX_ROLE)))
