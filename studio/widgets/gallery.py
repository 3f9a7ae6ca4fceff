"""History strip: every finished image with its request, newest first; drop a PNG here to restore
its settings.

An item's key is either an ``int`` (an image of this session: its index in ``Session.history``)
or a ``str`` (an entry of the history kept on disk, by its id). Entries on disk are shown without
delaying the window: the listing is one folder scan, rows are added to a list model in batches,
and a zero-interval timer reads requests (for tooltips and the filter) a few milliseconds per turn
of the event loop. Thumbnails load only when the view asks for them, that is for rows in view, and
at most :data:`MAX_THUMBNAILS` stay in memory, so thousands of entries cost neither start-up time
nor an image each.

A model rather than one QListWidgetItem per image: the view then does the work per visible row,
and adding or filtering thousands of rows is one model change, not thousands of widget calls.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
    SignalInstance,
)
from PySide6.QtGui import (
    QAction,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QImage,
    QKeySequence,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from studio.qt_image import pil_to_qimage

if TYPE_CHECKING:
    from pipelines.history_store import HistoryStore, StoredEntry
    from pipelines.types import GenerationRequest
    from studio.session import HistoryEntry

log = logging.getLogger(__name__)

ICON = 96
KEY_ROLE = Qt.ItemDataRole.UserRole
ROWS_PER_TURN = 1000
SCAN_SLICE = 50  # entry ids read from the folder between two looks at the clock
TURN_BUDGET_S = 0.008  # per turn of the event loop, so the window never stalls on the history
MAX_THUMBNAILS = 600  # thumbnails of stored entries kept in memory; the least recent go first

Key = int | str
AnyIndex = QModelIndex | QPersistentModelIndex


def request_tooltip(request: GenerationRequest) -> str:
    return (
        f"{request.prompt[:120]}\nseed {request.seed} · {request.sampler} · "
        f"{request.steps} steps · CFG {request.cfg_scale:g} · {request.width}×{request.height}"
    ) + rework_line(request)


def rework_kind(request: GenerationRequest) -> str:
    """One word under a thumbnail for a run that started from a picture or grew ("" otherwise)."""
    source = request.source
    if source is not None:
        return "outpaint" if any(source.outpaint) else "inpaint" if source.mask else "img2img"
    return "hires" if request.hires is not None else ""


def rework_line(request: GenerationRequest) -> str:
    """What the run started from and how it grew, as a line of its own ("" for text-to-image)."""
    parts = []
    source = request.source
    if source is not None:
        parts.append(f"from {Path(source.image).name} · strength {source.strength:g}")
        if source.mask:
            parts.append("inpainted")
        if any(source.outpaint):
            parts.append("outpainted by {}, {}, {}, {} px".format(*source.outpaint))
    hires = request.hires
    if hires is not None:
        parts.append(f"hires ×{hires.scale:g} with {Path(hires.upscaler).name}")
    return "\n" + " · ".join(parts) if parts else ""


def searchable(request: GenerationRequest) -> str:
    """The text the filter looks in: prompt, sampler and the model's name (not its folders)."""
    model = request.model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "default model"
    return "\n".join((request.prompt, request.sampler, model)).lower()


def _icon(image: QImage) -> QIcon:
    pixmap = QPixmap.fromImage(image).scaled(
        ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    return QIcon(pixmap)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _label(entry_id: str) -> str:
    # "20261130-075918-…" → "30 Nov 07:59", by slicing: strptime costs as much as the rest of a row
    month = int(entry_id[4:6])
    name = MONTHS[month - 1] if 1 <= month <= 12 else entry_id[4:6]
    return f"{entry_id[6:8]} {name} {entry_id[9:11]}:{entry_id[11:13]}"


@dataclass(eq=False)
class _Row:
    key: Key
    label: str
    prompt: str | None = None  # what the filter searches, lower-cased, once known
    tooltip: str = ""
    icon: QIcon | None = None
    entry: StoredEntry | None = None  # stored rows only


class HistoryModel(QAbstractListModel):
    def __init__(self, on_wanted: Callable[[], object] = lambda: None) -> None:
        super().__init__()
        self.rows: list[_Row] = []  # every row, newest first
        self.shown: list[_Row] = []  # those the filter lets through
        self.wanted: dict[Key, _Row] = {}  # rows in view whose thumbnail is not loaded
        self.on_wanted = on_wanted  # a plain call, not a signal: the view asks once per row
        self._filter = ""
        self._changed: list[_Row] = []
        self._positions: dict[int, int] | None = None  # id(row) -> its place in `shown`

    def rowCount(self, parent: AnyIndex | None = None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.shown)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.shown):
            return None
        row = self.shown[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.label
        if role == Qt.ItemDataRole.DecorationRole:
            if row.icon is None and row.entry is not None and row.key not in self.wanted:
                self.wanted[row.key] = row
                self.on_wanted()
            return row.icon
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.tooltip or None
        if role == KEY_ROLE:
            return row.key
        return None

    def matches(self, row: _Row) -> bool:
        return not self._filter or (row.prompt is not None and self._filter in row.prompt)

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self.refilter()

    def refilter(self) -> None:
        self.beginResetModel()
        self.shown = [row for row in self.rows if self.matches(row)]
        self.endResetModel()
        self._positions = None

    @property
    def filtering(self) -> bool:
        return bool(self._filter)

    def insert_front(self, row: _Row) -> None:
        self.rows.insert(0, row)
        if self.matches(row):
            self.beginInsertRows(QModelIndex(), 0, 0)
            self.shown.insert(0, row)
            self.endInsertRows()
            self._positions = None

    def append(self, rows: list[_Row]) -> None:
        self.rows.extend(rows)
        visible = [row for row in rows if self.matches(row)]
        if visible:
            start = len(self.shown)
            self.beginInsertRows(QModelIndex(), start, start + len(visible) - 1)
            self.shown.extend(visible)
            self.endInsertRows()
            self._positions = None

    def take(self, key: Key) -> tuple[int, _Row] | None:
        position = next((i for i, row in enumerate(self.rows) if row.key == key), None)
        if position is None:
            return None
        row = self.rows.pop(position)
        if row in self.shown:
            index = self.shown.index(row)
            self.beginRemoveRows(QModelIndex(), index, index)
            self.shown.pop(index)
            self.endRemoveRows()
            self._positions = None
        self.wanted.pop(key, None)
        return position, row

    def put_back(self, position: int, row: _Row) -> None:
        self.rows.insert(min(position, len(self.rows)), row)
        self.refilter()

    def changed(self, row: _Row) -> None:
        self._changed.append(row)

    def _position(self, row: _Row) -> int | None:
        if self._positions is None or len(self._positions) != len(self.shown):
            self._positions = {id(r): i for i, r in enumerate(self.shown)}
        return self._positions.get(id(row))

    def flush(self) -> None:
        """Tell the view about the rows changed since the last call with one signal: their rows
        are neighbours (read in the order shown), and a signal per row would cost more."""
        places = [p for row in self._changed if (p := self._position(row)) is not None]
        self._changed = []
        if places:
            self.dataChanged.emit(self.index(min(places)), self.index(max(places)))

    def row_of(self, key: Key) -> int | None:
        return next((i for i, row in enumerate(self.shown) if row.key == key), None)


class _Tile(QStyledItemDelegate):
    """A thumbnail above its label, every tile one size: the list lays out thousands of rows at
    once without asking the model for any row's icon (which would load every thumbnail)."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # noqa: N802
        super().initStyleOption(option, index)
        option.decorationPosition = QStyleOptionViewItem.Position.Top
        option.displayAlignment = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        return QSize(ICON + 12, ICON + 26)


class _Strip(QListView):
    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        # List mode with uniform sizes: its layout is one multiplication, whatever the row count.
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(ICON, ICON))
        self.setSpacing(2)
        self.setUniformItemSizes(True)
        # Laid out a few hundred rows per turn of the event loop: thousands at once stall it.
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setFixedHeight(ICON + 36)
        self.setHorizontalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        # Drops arrive at the viewport; Static movement leaves it refusing them unless told.
        self.setDragDropMode(QListView.DragDropMode.DropOnly)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._tile = _Tile(self)
        self.setItemDelegate(self._tile)
        self.setToolTip("History, newest first: click an image to show it; Ctrl/Shift-click to "
                        "select several and export them (Ctrl+Shift+E); right-click to delete "
                        "one or open its folder. Drop a PNG from this app or AUTOMATIC1111 here to "
                        "restore its settings.")  # fmt: skip

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            self.files_dropped.emit(files)
            event.acceptProposedAction()


class Gallery(QWidget):
    selected = Signal(object)  # key
    reuse_requested = Signal(object)
    use_as_input_requested = Signal(object)  # key: the entry's image becomes the input picture
    save_requested = Signal(object)
    copy_requested = Signal(object)
    delete_requested = Signal(object)
    open_folder_requested = Signal(object)
    export_requested = Signal(list)  # keys, in the order shown
    files_dropped = Signal(list)
    skipped = Signal(str)  # a note about a stored entry that cannot be read
    listed = Signal()  # the stored rows and their requests are all read (see listing)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = HistoryModel(on_wanted=self._wake)
        self.strip = _Strip()
        self.strip.setModel(self.model)
        self.strip.selectionModel().currentChanged.connect(self._on_current)
        self.strip.files_dropped.connect(self.files_dropped)
        self.strip.customContextMenuRequested.connect(self._context_menu)
        self.export_action = QAction("Export selected…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.export_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.export_action.triggered.connect(self._export_selected)
        self.addAction(self.export_action)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: prompt, sampler, model")
        self.filter.setClearButtonEnabled(True)
        self.filter.setToolTip("Show only images whose prompt, sampler or model name contains "
                               "this text.")  # fmt: skip
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

        self._current: Key | None = None
        self._store: HistoryStore | None = None
        self._scan: Iterator[str] | None = None  # the folder being read
        self._scanned: list[str] = []
        self._pending: list[StoredEntry] = []  # listed on disk, not rows yet (oldest first)
        self._unread: list[_Row] = []  # stored rows whose request is not read yet (last first)
        self._requests: dict[str, GenerationRequest] = {}
        self._entries: dict[str, StoredEntry] = {}  # listed on disk and not deleted
        self._thumbnails: OrderedDict[str, _Row] = OrderedDict()
        self._loader = QTimer(self, interval=0)
        self._loader.timeout.connect(self._load_some)

    def _wake(self) -> None:
        if not self._loader.isActive():
            self._loader.start()

    # ---- this session's images ----------------------------------------------------------------
    def add_entry(self, index: int, entry: HistoryEntry) -> None:
        request = entry.request
        kind = rework_kind(request)
        label = f"#{index + 1} · {kind}" if kind else f"#{index + 1}"
        row = _Row(index, label, searchable(request), request_tooltip(request),
                   _icon(entry.image))  # fmt: skip
        self.model.insert_front(row)  # newest first
        self.select(index)
        self.strip.scrollToTop()

    # ---- entries kept on disk -----------------------------------------------------------------
    def show_store(
        self, store: HistoryStore, skip: Callable[[str], bool] = lambda _: False
    ) -> None:
        """List ``store``'s entries after the rows already shown, in the background: the folder
        is read a slice per turn of the event loop, then the rows are added newest first."""
        self._store = store
        self._scan = (entry_id for entry_id in store.scan() if not skip(entry_id))
        self._scanned = []
        self._wake()

    def stored_entry(self, entry_id: str) -> StoredEntry | None:
        return self._entries.get(entry_id)

    def stored_request(self, entry_id: str) -> GenerationRequest | None:
        if entry_id not in self._requests and self._store is not None:
            entry = self.stored_entry(entry_id)
            request = None if entry is None else self._store.request(entry)
            if request is not None:
                self._requests[entry_id] = request
        return self._requests.get(entry_id)

    @property
    def listing(self) -> bool:
        """Rows or their requests are still being read (thumbnails aside)."""
        return self._scan is not None or bool(self._pending or self._unread)

    @property
    def loading(self) -> bool:
        """Rows, requests or thumbnails are still being read."""
        return self._loader.isActive()

    def _load_some(self) -> None:
        was_listing = self.listing
        self._load_slice()
        if was_listing and not self.listing:
            self.listed.emit()

    def _load_slice(self) -> None:
        deadline = time.perf_counter() + TURN_BUDGET_S
        if self._scan is not None:
            self._read_folder(deadline)
            return
        if self._pending:
            self._add_stored_rows()
        while self.model.wanted and time.perf_counter() < deadline:
            self._load_thumbnail(self.model.wanted.pop(next(iter(self.model.wanted))))
        read_any = False
        while self._unread and time.perf_counter() < deadline:
            self._read_request(self._unread.pop())
            read_any = True
        if read_any and self.model.filtering:
            self._refilter()  # rows whose prompt is now known may pass the filter
        self.model.flush()
        if not (self._pending or self._unread or self.model.wanted):
            self._loader.stop()

    def _read_folder(self, deadline: float) -> None:
        # Small slices: each directory read releases the GIL, and getting it back from a busy
        # worker thread can take milliseconds, so the deadline is checked often.
        scan = self._scan
        while time.perf_counter() < deadline:
            chunk = list(itertools.islice(scan, SCAN_SLICE))
            self._scanned += chunk
            if len(chunk) < SCAN_SLICE:
                self._scan = None
                self._pending = self._store.sorted_entries(self._scanned)
                self._pending.reverse()  # taken from the end: newest first
                self._scanned = []
                return

    def _add_stored_rows(self) -> None:
        rows = []
        for _ in range(min(ROWS_PER_TURN, len(self._pending))):
            entry = self._pending.pop()
            self._entries[entry.id] = entry
            rows.append(_Row(entry.id, _label(entry.id), entry=entry))
        self.model.append(rows)
        self._unread[:0] = reversed(rows)  # popped from the end: in the order shown

    def _read_request(self, row: _Row) -> None:
        request = self.stored_request(row.key)
        if request is None:
            self._drop_unreadable(row)
            return
        # Nothing to repaint: the tooltip is asked for on hover, the prompt is for the filter.
        row.prompt = searchable(request)
        row.tooltip = request_tooltip(request)

    def _load_thumbnail(self, row: _Row) -> None:
        if self._store is None or row.entry is None or row not in self.model.rows:
            return
        thumb = self._store.thumbnail(row.entry)
        if thumb is None:
            self._drop_unreadable(row)
            return
        row.icon = _icon(pil_to_qimage(thumb))
        self._thumbnails[row.key] = row
        while len(self._thumbnails) > MAX_THUMBNAILS:  # asked for again if scrolled back to
            _, oldest = self._thumbnails.popitem(last=False)
            oldest.icon = None
        self.model.changed(row)

    def _drop_unreadable(self, row: _Row) -> None:
        self.model.take(row.key)
        if row in self._unread:
            self._unread.remove(row)
        notes = self._store.notes if self._store is not None else []
        self.skipped.emit(notes[-1] if notes else f"History entry {row.key} skipped.")

    # ---- filter -------------------------------------------------------------------------------
    def _refilter(self) -> None:
        current = self._current
        self.model.refilter()
        if current is not None:
            self.select(current)

    def _apply_filter(self, text: str) -> None:
        current = self._current
        self.model.set_filter(text)
        if current is not None:
            self.select(current)

    def shown_keys(self) -> list[Key]:
        return [row.key for row in self.model.shown]

    # ---- rows ---------------------------------------------------------------------------------
    def count(self) -> int:
        return len(self.model.rows)

    def current_index(self) -> Key | None:
        return self._current

    def select(self, key: Key) -> None:
        position = self.model.row_of(key)
        if position is not None:
            self.strip.setCurrentIndex(self.model.index(position))

    def take(self, key: Key) -> tuple[int, _Row] | None:
        """Remove the row of ``key`` from the strip; :meth:`put_back` restores it."""
        taken = self.model.take(key)
        if taken is not None and self._current == key:
            self._current = None
            self._update_buttons()
        return taken

    def put_back(self, position: int, row: _Row) -> None:
        self.model.put_back(position, row)
        self.select(row.key)

    def selected_keys(self) -> list[Key]:
        """The selected rows' keys, in the order shown (newest first)."""
        rows = sorted(index.row() for index in self.strip.selectionModel().selectedIndexes())
        return [self.model.shown[row].key for row in rows if row < len(self.model.shown)]

    def _export_selected(self, clicked: Key | None = None) -> None:
        keys = self.selected_keys()
        if clicked is not None and clicked not in keys:
            keys = [clicked]  # right-clicked outside the selection: that image alone
        if keys:
            self.export_requested.emit(keys)

    def _emit_current(self, signal: SignalInstance) -> None:
        if self._current is not None:
            signal.emit(self._current)

    def _update_buttons(self) -> None:
        for button in (self.reuse_button, self.save_button, self.copy_button):
            button.setEnabled(self._current is not None)

    def _on_current(self, index: QModelIndex, _previous: QModelIndex) -> None:
        key = self.model.data(index, KEY_ROLE) if index.isValid() else None
        if key == self._current:
            return  # the same image again, after a filter change
        self._current = key
        self._update_buttons()
        if key is not None:
            self.selected.emit(key)

    def _context_menu(self, position: QPoint) -> None:
        index = self.strip.indexAt(position)
        if not index.isValid():
            return
        key = self.model.data(index, KEY_ROLE)
        menu = QMenu(self)
        menu.addAction("Reuse settings", lambda: self.reuse_requested.emit(key))
        menu.addAction("Use as input", lambda: self.use_as_input_requested.emit(key))
        menu.addAction("Save…", lambda: self.save_requested.emit(key))
        menu.addAction("Copy", lambda: self.copy_requested.emit(key))
        menu.addSeparator()
        menu.addAction("Delete from history", lambda: self.delete_requested.emit(key))
        menu.addAction("Open folder", lambda: self.open_folder_requested.emit(key))
        selected = self.selected_keys()
        count = len(selected) if key in selected else 1
        menu.addAction(f"Export selected ({count})…", lambda: self._export_selected(key))
        menu.popup(self.strip.viewport().mapToGlobal(position))
