"""History strip: every finished image with its request, newest first; drop a PNG here to restore
its settings.

An item's key is either an ``int`` (an image of this session: its index in ``Session.history``)
or a ``str`` (an entry of the history kept on disk from earlier sessions, by its id). Entries on
disk are shown without delaying the window: the listing is read at once (one folder scan), the
items are added in batches, and requests (for tooltips and the filter) and thumbnails are read by
a zero-interval timer a few milliseconds per turn of the event loop, thumbnails only for items in
view, so thousands of entries cost neither start-up time nor an image each in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.qt_image import pil_to_qimage

if TYPE_CHECKING:
    from pipelines.history_store import HistoryStore, StoredEntry
    from pipelines.types import GenerationRequest

log = logging.getLogger(__name__)

ICON = 96
KEY_ROLE = Qt.ItemDataRole.UserRole
PROMPT_ROLE = Qt.ItemDataRole.UserRole + 1  # lower-cased prompt, once read; None before
ITEMS_PER_TURN = 200
TURN_BUDGET_S = 0.012  # per turn of the event loop, so the window never stalls on the history
THUMBNAIL_MARGIN = 8  # items beyond each edge of the view whose thumbnails load ahead

Key = int | str


def request_tooltip(request: GenerationRequest) -> str:
    return (
        f"{request.prompt[:120]}\nseed {request.seed} · {request.sampler} · "
        f"{request.steps} steps · CFG {request.cfg_scale:g} · {request.width}×{request.height}"
    )


class _Strip(QListWidget):
    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(ICON, ICON))
        self.setGridSize(QSize(ICON + 12, ICON + 28))
        self.setUniformItemSizes(True)
        self.setSpacing(4)
        self.setFixedHeight(ICON + 36)
        self.setHorizontalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        # Drops arrive at the viewport; Static movement leaves it refusing them unless told.
        self.setDragDropMode(QListView.DragDropMode.DropOnly)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setToolTip("History, newest first: click an image to show it; right-click to delete "
                        "it or open its folder. Drop a PNG from this app or AUTOMATIC1111 here to "
                        "restore its settings.")  # fmt: skip

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


def _icon(image) -> QIcon:
    pixmap = QPixmap.fromImage(image).scaled(
        ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    return QIcon(pixmap)


class Gallery(QWidget):
    selected = Signal(object)  # key
    reuse_requested = Signal(object)
    save_requested = Signal(object)
    copy_requested = Signal(object)
    delete_requested = Signal(object)
    open_folder_requested = Signal(object)
    files_dropped = Signal(list)
    skipped = Signal(str)  # a note about a stored entry that cannot be read

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip = _Strip()
        self.strip.currentItemChanged.connect(self._on_current)
        self.strip.files_dropped.connect(self.files_dropped)
        self.strip.customContextMenuRequested.connect(self._context_menu)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by prompt")
        self.filter.setClearButtonEnabled(True)
        self.filter.setToolTip("Show only images whose prompt contains this text.")
        self.filter.textChanged.connect(self._apply_filter)
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
        buttons.addWidget(self.filter)
        for button in (self.reuse_button, self.save_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 4)
        layout.addWidget(self.strip, 1)
        layout.addLayout(buttons)

        self._store: HistoryStore | None = None
        self._pending: list[StoredEntry] = []  # listed on disk, not added as items yet
        self._entries: dict[str, StoredEntry] = {}
        self._unread: list[QListWidgetItem] = []  # stored items whose request is not read yet
        self._requests: dict[str, GenerationRequest] = {}
        self._thumbnailed: set[str] = set()
        self._loader = QTimer(self, interval=0)
        self._loader.timeout.connect(self._load_some)
        self.strip.horizontalScrollBar().valueChanged.connect(lambda _: self._loader.start())

    # ---- this session's images ----------------------------------------------------------------
    def add_entry(self, index: int, entry) -> None:
        item = QListWidgetItem(_icon(entry.image), f"#{index + 1}")
        item.setData(KEY_ROLE, index)
        item.setData(PROMPT_ROLE, entry.request.prompt.lower())
        item.setToolTip(request_tooltip(entry.request))
        self.strip.insertItem(0, item)  # newest first
        self._filter_item(item)
        self.strip.setCurrentItem(item)
        self.strip.scrollToItem(item)

    # ---- entries kept on disk -----------------------------------------------------------------
    def show_store(self, store: HistoryStore, skip: Callable[[str], bool] = lambda _: False) -> int:
        """List ``store``'s entries after the items already shown and start loading them in the
        background; returns how many were listed."""
        self._store = store
        self._pending = [entry for entry in store.entries() if not skip(entry.id)]
        self._pending.reverse()  # popped from the end: newest first
        self._loader.start()
        return len(self._pending)

    def stored_entry(self, entry_id: str) -> StoredEntry | None:
        return self._entries.get(entry_id)

    def stored_request(self, entry_id: str) -> GenerationRequest | None:
        if entry_id not in self._requests and self._store is not None:
            entry = self._entries.get(entry_id)
            request = None if entry is None else self._store.request(entry)
            if request is not None:
                self._requests[entry_id] = request
        return self._requests.get(entry_id)

    @property
    def loading(self) -> bool:
        return self._loader.isActive()

    def _load_some(self) -> None:
        deadline = time.perf_counter() + TURN_BUDGET_S
        if self._pending:
            self._add_stored_items()
        self._load_visible_thumbnails(deadline)
        while self._unread and time.perf_counter() < deadline:
            self._read_request(self._unread.pop())
        if not self._pending and not self._unread and not self._thumbnails_missing():
            self._loader.stop()

    def _add_stored_items(self) -> None:
        self.strip.setUpdatesEnabled(False)
        added = []
        for _ in range(min(ITEMS_PER_TURN, len(self._pending))):
            entry = self._pending.pop()
            self._entries[entry.id] = entry
            item = QListWidgetItem(entry.created.strftime("%d %b %H:%M"))
            item.setData(KEY_ROLE, entry.id)
            item.setSizeHint(self.strip.gridSize())
            self.strip.addItem(item)
            self._filter_item(item)
            added.append(item)
        self.strip.setUpdatesEnabled(True)
        self._unread[:0] = reversed(added)  # read from the end: in the order shown

    def _read_request(self, item: QListWidgetItem) -> None:
        key = item.data(KEY_ROLE)
        request = self.stored_request(key)
        if request is None:
            self._drop_unreadable(item)
            return
        item.setData(PROMPT_ROLE, request.prompt.lower())
        item.setToolTip(request_tooltip(request))
        self._filter_item(item)

    def _drop_unreadable(self, item: QListWidgetItem) -> None:
        key = item.data(KEY_ROLE)
        row = self.strip.row(item)
        if row >= 0:
            self.strip.takeItem(row)
        if item in self._unread:
            self._unread.remove(item)
        self._entries.pop(key, None)
        notes = self._store.notes if self._store is not None else []
        self.skipped.emit(notes[-1] if notes else f"History entry {key} skipped.")

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._loader.start()  # thumbnails wait while the strip is hidden

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._loader.start()

    def _visible_rows(self) -> range:
        if not self.strip.isVisible():
            return range(0)
        viewport = self.strip.viewport()
        middle = viewport.height() // 2
        first = self.strip.indexAt(QPoint(2, middle)).row()
        last = self.strip.indexAt(QPoint(viewport.width() - 2, middle)).row()
        count = self.strip.count()
        if first < 0:
            first = 0
        if last < 0:
            last = count - 1
        return range(max(0, first - THUMBNAIL_MARGIN), min(count, last + THUMBNAIL_MARGIN + 1))

    def _missing_thumbnails(self) -> list[QListWidgetItem]:
        items = (self.strip.item(row) for row in self._visible_rows())
        return [
            item for item in items
            if isinstance(item.data(KEY_ROLE), str) and not item.isHidden()
            and item.data(KEY_ROLE) not in self._thumbnailed
        ]  # fmt: skip

    def _thumbnails_missing(self) -> bool:
        return bool(self._missing_thumbnails())

    def _load_visible_thumbnails(self, deadline: float) -> None:
        if self._store is None:
            return
        for item in self._missing_thumbnails():
            if time.perf_counter() >= deadline:
                return
            key = item.data(KEY_ROLE)
            self._thumbnailed.add(key)
            thumb = self._store.thumbnail(self._entries[key])
            if thumb is None:
                self._drop_unreadable(item)
            else:
                item.setIcon(_icon(pil_to_qimage(thumb)))

    # ---- filter -------------------------------------------------------------------------------
    def _filter_item(self, item: QListWidgetItem) -> None:
        text = self.filter.text().strip().lower()
        prompt = item.data(PROMPT_ROLE)
        item.setHidden(bool(text) and (prompt is None or text not in prompt))

    def _apply_filter(self) -> None:
        for row in range(self.strip.count()):
            self._filter_item(self.strip.item(row))
        self._loader.start()  # items now in view may want thumbnails

    def shown_keys(self) -> list[Key]:
        return [self.strip.item(row).data(KEY_ROLE) for row in range(self.strip.count())
                if not self.strip.item(row).isHidden()]  # fmt: skip

    # ---- items --------------------------------------------------------------------------------
    def count(self) -> int:
        return self.strip.count()

    def _item(self, key: Key) -> QListWidgetItem | None:
        for row in range(self.strip.count()):
            if self.strip.item(row).data(KEY_ROLE) == key:
                return self.strip.item(row)
        return None

    def current_index(self) -> Key | None:
        item = self.strip.currentItem()
        return None if item is None else item.data(KEY_ROLE)

    def select(self, key: Key) -> None:
        item = self._item(key)
        if item is not None:
            self.strip.setCurrentItem(item)

    def take(self, key: Key) -> tuple[int, QListWidgetItem] | None:
        """Remove the item of ``key`` from the strip; :meth:`put_back` restores it."""
        item = self._item(key)
        if item is None:
            return None
        row = self.strip.row(item)
        return row, self.strip.takeItem(row)

    def put_back(self, row: int, item: QListWidgetItem) -> None:
        self.strip.insertItem(min(row, self.strip.count()), item)
        self._filter_item(item)
        self.strip.setCurrentItem(item)

    def _emit_current(self, signal) -> None:
        key = self.current_index()
        if key is not None:
            signal.emit(key)

    def _on_current(self, item, _previous) -> None:
        for button in (self.reuse_button, self.save_button, self.copy_button):
            button.setEnabled(item is not None)
        if item is not None:
            self.selected.emit(item.data(KEY_ROLE))

    def _context_menu(self, position: QPoint) -> None:
        item = self.strip.itemAt(position)
        if item is None:
            return
        key = item.data(KEY_ROLE)
        menu = QMenu(self)
        menu.addAction("Reuse settings", lambda: self.reuse_requested.emit(key))
        menu.addAction("Save…", lambda: self.save_requested.emit(key))
        menu.addAction("Copy", lambda: self.copy_requested.emit(key))
        menu.addSeparator()
        menu.addAction("Delete from history", lambda: self.delete_requested.emit(key))
        menu.addAction("Open folder", lambda: self.open_folder_requested.emit(key))
        menu.popup(self.strip.viewport().mapToGlobal(position))
