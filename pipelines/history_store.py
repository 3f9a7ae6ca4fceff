"""The history kept on disk: every finished image with its request and a thumbnail.

One entry is three files in one folder, named by the entry's id (its creation time, sortable, and
a random part so that two processes never pick the same name):

- ``ID.thumb.png``: a thumbnail at most :data:`THUMBNAIL_SIZE` pixels a side, for the strip;
- ``ID.json``: the request, so that listing and filtering never decode an image;
- ``ID.png``: the image, carrying its request like every exported PNG (:func:`write_png`).

Each file is written atomically and the PNG last, so the PNG is the entry's commit mark: a process
killed half way leaves at most a thumbnail and a JSON file without their PNG (not listed), or a
hidden temp file (swept later). The condition maps a request names are already kept, never
overwritten, by the map store.

An entry that cannot be read (a damaged file, a request a newer version wrote) is skipped with a
note in :attr:`HistoryStore.notes`; it never stops a listing. Deleting moves an entry's files to
``deleted/`` so that it can be restored until :meth:`HistoryStore.purge_deleted` runs.

Finished sampler comparisons are kept too, with their step histories, in ``comparisons/`` (see
:mod:`pipelines.stored_comparisons`). The user sets how many images and comparisons are kept: past
the limit the oldest go first, for good (:meth:`HistoryStore.prune`, after every addition).

Qt-free: the window, scripts and tests share it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from pipelines.errors import StudioError
from pipelines.export import read_metadata, read_request, write_atomically, write_png
from pipelines.images import open_image
from pipelines.stored_comparisons import (
    COMPARISONS_SUBFOLDER,
    StoredComparison,
    list_comparisons,
    read_comparison,
    remove_comparison,
    write_comparison,
)
from pipelines.types import GenerationRequest

if TYPE_CHECKING:
    from pipelines.compare import CompareResult

log = logging.getLogger(__name__)

HISTORY_SUBFOLDER = "history"
DELETED_SUBFOLDER = "deleted"
THUMBNAIL_SIZE = 128
NO_LIMIT = 0
DEFAULT_COMPARISON_LIMIT = 10  # each holds up to ~80 MB of step previews, as on disk
_ID = r"\d{8}-\d{6}-\d{6}-[0-9a-f]{6}"
_IMAGE_RE = re.compile(f"({_ID})\\.png")
_ANY_FILE_RE = re.compile(f"({_ID})\\.(png|json|thumb\\.png)")


def history_folder(data_folder: str | os.PathLike[str]) -> Path:
    return Path(data_folder) / HISTORY_SUBFOLDER


@dataclass(frozen=True)
class StoredEntry:
    id: str
    folder: Path

    @property
    def image_path(self) -> Path:
        return self.folder / f"{self.id}.png"

    @property
    def thumbnail_path(self) -> Path:
        return self.folder / f"{self.id}.thumb.png"

    @property
    def request_path(self) -> Path:
        return self.folder / f"{self.id}.json"

    @property
    def created(self) -> datetime:
        return datetime.strptime(self.id[:22], "%Y%m%d-%H%M%S-%f")


def _new_id() -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{secrets.token_hex(3)}"


def _thumbnail(image: Image.Image) -> Image.Image:
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    return thumb


class HistoryStore:
    def __init__(
        self,
        folder: str | os.PathLike[str],
        limit: int = NO_LIMIT,
        comparison_limit: int = DEFAULT_COMPARISON_LIMIT,
    ) -> None:
        self.folder = Path(folder)
        self.limit = limit  # images kept at most; NO_LIMIT: all
        self.comparison_limit = comparison_limit  # comparisons kept at most; NO_LIMIT: all
        self.notes: list[str] = []  # entries skipped, and why; also in the log
        self._noted: set[str] = set()

    @property
    def comparisons_folder(self) -> Path:
        return self.folder / COMPARISONS_SUBFOLDER

    def _note(self, entry: StoredEntry, problem: str) -> None:
        if entry.id not in self._noted:
            self._noted.add(entry.id)
            note = f"History entry {entry.image_path.name} skipped: {problem}"
            self.notes.append(note)
            log.warning("%s", note)

    # ---- listing ------------------------------------------------------------------------------
    def entries(self) -> list[StoredEntry]:
        """Every entry whose image was written, newest first; reads nothing but the folder."""
        return self.sorted_entries(self.scan())

    def sorted_entries(self, ids: Iterable[str]) -> list[StoredEntry]:
        return [StoredEntry(entry_id, self.folder) for entry_id in sorted(ids, reverse=True)]

    def scan(self) -> Iterator[str]:
        """The ids of the entries whose image was written, in the folder's order, one at a time
        (a caller that must stay responsive reads a few thousand per turn)."""
        try:
            listing = os.scandir(self.folder)
        except FileNotFoundError:
            return
        except OSError as error:
            self.notes.append(f"The history folder {self.folder} cannot be read: {error}")
            log.warning("%s", self.notes[-1])
            return
        with listing:
            for item in listing:
                name = item.name
                # A cheap test first: most names are thumbnails and requests.
                if name.endswith(".png") and not name.endswith(".thumb.png"):
                    match = _IMAGE_RE.fullmatch(name)
                    if match:
                        yield match.group(1)

    def find(self, entry_id: str) -> StoredEntry | None:
        entry = StoredEntry(entry_id, self.folder)
        valid = _IMAGE_RE.fullmatch(entry.image_path.name) is not None
        return entry if valid and entry.image_path.is_file() else None

    # ---- writing ------------------------------------------------------------------------------
    def add(
        self,
        image: Image.Image,
        request: GenerationRequest,
        extra: Mapping[str, Any] | None = None,
    ) -> StoredEntry:
        """Keep ``image`` with ``request``; failures are :class:`~pipelines.errors.ExportError`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = StoredEntry(_new_id(), self.folder)
        thumb = _thumbnail(image)
        text = json.dumps({"version": 1, "request": request.to_dict()}, ensure_ascii=False)
        write_atomically(entry.thumbnail_path, lambda handle: thumb.save(handle, format="PNG"))
        write_atomically(entry.request_path, lambda handle: handle.write(text.encode("utf-8")),
                         suffixes=(".json",))  # fmt: skip
        write_png(image, request, entry.image_path, extra=extra)  # last: the entry now exists
        self.prune()
        return entry

    # ---- comparisons --------------------------------------------------------------------------
    def add_comparison(self, result: CompareResult) -> StoredComparison:
        """Keep a finished comparison with its step history; failures are
        :class:`~pipelines.errors.ExportError` (or OSError for the folder)."""
        entry_id = _new_id()
        write_comparison(self.comparisons_folder / entry_id, result)
        self.prune()
        return StoredComparison(entry_id, self.comparisons_folder / entry_id, result.request,
                                tuple(c.sampler for c in result.columns))  # fmt: skip

    def comparisons(self) -> list[StoredComparison]:
        """The comparisons kept, newest first; reads only their small records."""
        found, notes = list_comparisons(self.comparisons_folder)
        self.notes += [note for note in notes if note not in self.notes]
        return found

    def load_comparison(self, stored: StoredComparison) -> CompareResult:
        return read_comparison(stored)

    # ---- the size limit -----------------------------------------------------------------------
    def prune(self) -> int:
        """Remove the oldest images past :attr:`limit` and the oldest comparisons past
        :attr:`comparison_limit`, for good; returns how many entries went."""
        removed = 0
        if self.limit > NO_LIMIT:
            for entry in self.entries()[self.limit :]:
                # The image first: once it is gone the entry is no longer listed.
                for path in self._files(self.folder, entry.id):
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as error:
                        log.warning("history entry %s not removed: %s", path.name, error)
                removed += 1
        if self.comparison_limit > NO_LIMIT:
            for stored in self.comparisons()[self.comparison_limit :]:
                remove_comparison(stored.folder)
                removed += 1
        return removed

    # ---- reading, lazily ----------------------------------------------------------------------
    def request(self, entry: StoredEntry) -> GenerationRequest | None:
        """The entry's request, or None (with a note) when neither its JSON file nor its PNG can
        be read."""
        try:
            data = json.loads(entry.request_path.read_text(encoding="utf-8"))
            return GenerationRequest.from_dict(data["request"])
        except (OSError, ValueError, TypeError, KeyError, RecursionError, StudioError):
            pass  # the PNG carries the same request
        try:
            return read_request(entry.image_path)
        except (OSError, StudioError) as error:
            self._note(entry, str(error))
            return None

    def details(self, entry: StoredEntry) -> dict[str, Any]:
        """The run details the entry's PNG keeps beside its request (``add``'s ``extra``); empty
        when there are none or they cannot be read (the image's own reading notes why)."""
        try:
            return read_metadata(entry.image_path).extra
        except (OSError, StudioError):
            return {}

    def image(self, entry: StoredEntry) -> Image.Image | None:
        try:
            with open_image(entry.image_path) as image:
                image.load()
                return image.convert("RGB") if image.mode != "RGB" else image.copy()
        except (OSError, StudioError) as error:
            self._note(entry, str(error))
            return None

    def thumbnail(self, entry: StoredEntry) -> Image.Image | None:
        """The entry's thumbnail; made again from its image when missing or damaged."""
        try:
            with open_image(entry.thumbnail_path) as thumb:
                thumb.load()
                return thumb.copy()
        except (OSError, StudioError):
            pass
        image = self.image(entry)
        if image is None:
            return None
        thumb = _thumbnail(image)
        try:
            write_atomically(entry.thumbnail_path, lambda h: thumb.save(h, format="PNG"),
                             overwrite=True)  # fmt: skip
        except StudioError:
            pass  # shown from memory this time; a read-only folder is not a reason to fail
        return thumb

    # ---- deleting -----------------------------------------------------------------------------
    def _files(self, folder: Path, entry_id: str) -> list[Path]:
        return [folder / f"{entry_id}{suffix}" for suffix in (".png", ".json", ".thumb.png")]

    def delete(self, entry: StoredEntry) -> None:
        """Move the entry's files to ``deleted/``; :meth:`restore` brings them back."""
        bin_folder = self.folder / DELETED_SUBFOLDER
        bin_folder.mkdir(exist_ok=True)
        # The image first: once it is gone the entry is no longer listed, whatever happens next.
        for source, target in zip(self._files(self.folder, entry.id),
                                  self._files(bin_folder, entry.id)):  # fmt: skip
            if source.exists():
                os.replace(source, target)

    def restore(self, entry_id: str) -> StoredEntry | None:
        bin_folder = self.folder / DELETED_SUBFOLDER
        # The image last, so a restore cut short never lists an entry without its request.
        pairs = list(zip(self._files(bin_folder, entry_id), self._files(self.folder, entry_id)))
        for source, target in reversed(pairs):
            if source.exists():
                os.replace(source, target)
        return self.find(entry_id)

    def purge_deleted(self) -> int:
        """Remove deleted entries for good; returns how many files went."""
        removed = 0
        try:
            names = list(os.scandir(self.folder / DELETED_SUBFOLDER))
        except OSError:
            return 0
        for item in names:
            if _ANY_FILE_RE.fullmatch(item.name):
                try:
                    os.unlink(item.path)
                    removed += 1
                except OSError:
                    continue
        return removed
