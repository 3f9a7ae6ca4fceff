"""Persistent settings: model folders, device, output, and the panels' last values.

A thin wrapper over QSettings. The location is injectable (a path to an INI file) so tests and
portable installs never touch the user's real settings; without one, Qt's per-user default is used.
INI files store everything as text, and people edit them by hand, so every getter checks what it
reads: a value of the wrong kind falls back to that key's default, with a note in the log (once per
key) and in :attr:`StudioSettings.notes`. No value in the file can stop the window from opening.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from pipelines.errors import StudioError, ValidationError
from pipelines.types import EngineSettings, GenerationRequest, MemoryOptions

log = logging.getLogger(__name__)

ORGANISATION = "Diffusion Studio"
APPLICATION = "Diffusion Studio"
DEFAULT_FILE_PATTERN = "{date}-{index:05d}-{seed}-{prompt}.png"  # same as pipelines.export's
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class _Invalid(Exception):
    """A stored value is not of its key's kind; the message says what was expected."""


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Invalid("true or false")


def _folder_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid("a list of folders")
    return [item for item in value if item.strip()]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class StudioSettings:
    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self._store = QSettings(ORGANISATION, APPLICATION)
        else:
            self._store = QSettings(str(path), QSettings.Format.IniFormat)
        self.path = Path(self._store.fileName())
        self._injected = path is not None
        self.notes: list[str] = []  # what was wrong in the file and replaced by defaults
        self._noted: set[str] = set()

    # ---- helpers ------------------------------------------------------------------------------
    def _get(self, key: str, default: Any = None) -> Any:
        return self._store.value(key, default)

    def _fallback(self, key: str, value: Any, expected: str, default: Any) -> Any:
        if key not in self._noted:
            self._noted.add(key)
            note = (
                f"The setting {key} in {self.path} is {_shown(value)}, not {expected}; "
                f"using {_shown(default)} instead."
            )
            self.notes.append(note)
            log.warning("%s", note)
        return default

    def _checked(self, key: str, default: Any, convert: Callable[[Any], Any]) -> Any:
        """The stored value of ``key`` through ``convert``; the default when it is not stored or
        ``convert`` refuses it."""
        value = self._get(key)
        if value is None:
            return default
        try:
            return convert(value)
        except _Invalid as problem:
            return self._fallback(key, value, str(problem), default)

    def _json(
        self, key: str, default: Any, convert: Callable[[Any], Any] = lambda data: data
    ) -> Any:
        def parse(text: Any) -> Any:
            if not isinstance(text, str):
                raise _Invalid("JSON text")
            if not text:
                return default
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):
                raise _Invalid("valid JSON") from None
            return convert(data)

        return self._checked(key, default, parse)

    def _set_json(self, key: str, value: Any) -> None:
        self._store.setValue(key, json.dumps(value))

    def sync(self) -> None:
        self._store.sync()

    def check_all(self) -> list[str]:
        """Read every setting once, so that all that is wrong in the file is in :attr:`notes` at
        start-up instead of turning up whenever a key is first read."""
        self.engine_config()
        for name in ("output_folder", "file_pattern", "last_request", "random_seed", "comparison"):
            getattr(self, name)
        return self.notes

    # ---- engine -------------------------------------------------------------------------------
    @property
    def model_folders(self) -> list[str]:
        return self._json("engine/model_folders", [], _folder_list)

    @model_folders.setter
    def model_folders(self, folders: list[str]) -> None:
        self._set_json("engine/model_folders", [str(f) for f in folders])

    @property
    def annotator_folders(self) -> list[str]:
        return self._json("engine/annotator_folders", [], _folder_list)

    @annotator_folders.setter
    def annotator_folders(self, folders: list[str]) -> None:
        self._set_json("engine/annotator_folders", [str(f) for f in folders])

    @property
    def device(self) -> str:
        return self._checked("engine/device", "auto", _one_of(DEVICES))

    @device.setter
    def device(self, value: str) -> None:
        self._store.setValue("engine/device", value)

    @property
    def precision(self) -> str:
        return self._checked("engine/precision", "auto", _one_of(PRECISIONS))

    @precision.setter
    def precision(self, value: str) -> None:
        self._store.setValue("engine/precision", value)

    @property
    def allow_pickle(self) -> bool:
        return self._checked("engine/allow_pickle", False, _to_bool)

    @allow_pickle.setter
    def allow_pickle(self, value: bool) -> None:
        self._store.setValue("engine/allow_pickle", bool(value))

    @property
    def compile(self) -> bool:
        """torch.compile the UNet (opt-in; see pipelines.device_tuning)."""
        return self._checked("engine/compile", False, _to_bool)

    @compile.setter
    def compile(self, value: bool) -> None:
        self._store.setValue("engine/compile", bool(value))

    @property
    def memory(self) -> MemoryOptions:
        return self._json("engine/memory", MemoryOptions(), _memory)

    @memory.setter
    def memory(self, options: MemoryOptions) -> None:
        self._set_json(
            "engine/memory",
            {
                "attention_slicing": options.attention_slicing,
                "vae_tiling": options.vae_tiling,
                "cpu_offload": options.cpu_offload,
            },
        )

    def engine_config(self) -> EngineSettings:
        """What the worker builds its Engine from; a change rebuilds it (and reloads the model)."""
        return EngineSettings(
            model_folders=tuple(Path(p) for p in self.model_folders),
            annotator_folders=tuple(Path(p) for p in self.annotator_folders),
            device=self.device,
            precision=self.precision,
            allow_pickle=self.allow_pickle,
            compile=self.compile,
        )

    # ---- output -------------------------------------------------------------------------------
    @property
    def output_folder(self) -> str:
        value = self._checked("output/folder", "", _folder)
        if value:
            return value
        pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        return str(Path(pictures or Path.home()) / "Diffusion Studio")

    @output_folder.setter
    def output_folder(self, folder: str) -> None:
        """Raises :class:`~pipelines.errors.ValidationError` for a name no folder can have."""
        if "\0" in str(folder):
            raise ValidationError("The output folder's name contains a NUL character.")
        self._store.setValue("output/folder", str(folder))

    @property
    def file_pattern(self) -> str:
        return self._checked("output/pattern", DEFAULT_FILE_PATTERN, _file_pattern)

    @file_pattern.setter
    def file_pattern(self, pattern: str) -> None:
        """Raises :class:`~pipelines.errors.ExportError` (a StudioError) for a pattern that
        cannot give a file name, before storing anything."""
        from pipelines.export import check_file_pattern

        check_file_pattern(pattern)
        self._store.setValue("output/pattern", pattern)

    @property
    def data_folder(self) -> Path:
        """Where the app keeps its own files (condition images pasted from the clipboard)."""
        if self._injected:
            return self.path.parent / "studio-data"
        location = QStandardPaths.StandardLocation.AppDataLocation
        return Path(QStandardPaths.writableLocation(location) or Path.home() / ".diffusion-studio")

    # ---- session ------------------------------------------------------------------------------
    @property
    def last_request(self) -> dict[str, Any] | None:
        return self._json("session/last_request", None, _request_data)

    @last_request.setter
    def last_request(self, data: dict[str, Any]) -> None:
        self._set_json("session/last_request", data)

    @property
    def random_seed(self) -> bool | None:
        return self._checked("session/random_seed", None, _to_bool)  # None: never stored

    @random_seed.setter
    def random_seed(self, value: bool) -> None:
        self._store.setValue("session/random_seed", bool(value))

    @property
    def batch_count(self) -> int:
        return self._checked("session/batch_count", 1, _batch_count)

    @batch_count.setter
    def batch_count(self, count: int) -> None:
        self._store.setValue("session/batch_count", int(count))

    # History kept on disk: how many images and comparisons (0: no limit), oldest first out.
    @property
    def history_limit(self) -> int:
        return self._checked("history/limit", 0, _count_limit)

    @history_limit.setter
    def history_limit(self, count: int) -> None:
        self._store.setValue("history/limit", int(count))

    @property
    def comparison_limit(self) -> int:
        from pipelines.history_store import DEFAULT_COMPARISON_LIMIT

        return self._checked("history/comparison_limit", DEFAULT_COMPARISON_LIMIT, _count_limit)

    @comparison_limit.setter
    def comparison_limit(self, count: int) -> None:
        self._store.setValue("history/comparison_limit", int(count))

    @property
    def comparison(self) -> tuple[bool, list]:
        """(compare mode on, the ticked samplers as names or [name, steps])."""
        return self._json("session/comparison", (False, []), _comparison)

    def set_comparison(self, mode: bool, samplers: list) -> None:
        self._set_json("session/comparison", {"mode": bool(mode), "samplers": list(samplers)})

    def sweep_stale_temp_files(self) -> list[Path]:
        """Remove the app's own temp files left by writes killed half-way (see
        :func:`pipelines.export.sweep_stale_temp_files`) from the folders it writes to."""
        from pipelines.export import sweep_stale_temp_files

        removed: list[Path] = []
        for folder in (Path(self.output_folder), self.data_folder,
                       self.data_folder / "condition-maps"):  # fmt: skip
            removed += sweep_stale_temp_files(folder)
        for path in removed:
            log.info("removed %s, left by an interrupted save", path)
        return removed

    def window_state(self, name: str) -> QByteArray | None:
        value = self._get(f"window/{name}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_state(self, name: str, value: QByteArray) -> None:
        self._store.setValue(f"window/{name}", value)


def _one_of(choices: tuple[str, ...]):
    def convert(value: Any) -> str:
        if value not in choices:
            raise _Invalid("one of " + ", ".join(choices))
        return value

    return convert


MAX_PANEL_BATCH = 100  # one press of Generate; the prompt panel's limit


def _whole_number(value: Any, low: int, high: int, expected: str) -> int:
    number = None
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError:
            pass
    if number is None or not low <= number <= high:
        raise _Invalid(expected)
    return number


def _batch_count(value: Any) -> int:
    return _whole_number(value, 1, MAX_PANEL_BATCH, f"a batch count from 1 to {MAX_PANEL_BATCH}")


MAX_HISTORY_LIMIT = 1_000_000


def _count_limit(value: Any) -> int:
    return _whole_number(value, 0, MAX_HISTORY_LIMIT,
                         f"a number of entries from 0 (no limit) to {MAX_HISTORY_LIMIT}")  # fmt: skip


def _folder(value: Any) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise _Invalid("a folder")
    return value


def _file_pattern(value: Any) -> str:
    from pipelines.export import check_file_pattern

    if not isinstance(value, str):
        raise _Invalid("a file name pattern")
    try:
        check_file_pattern(value)
    except StudioError as error:
        raise _Invalid(f"a usable file name pattern ({error})") from None
    return value


def _memory(data: Any) -> MemoryOptions:
    names = ("attention_slicing", "vae_tiling", "cpu_offload")
    if not isinstance(data, dict) or not all(isinstance(data.get(n, False), bool) for n in names):
        raise _Invalid("a table of memory options, each true or false")
    return MemoryOptions(**{n: data.get(n, False) for n in names})


def _request_data(data: Any) -> dict[str, Any]:
    try:
        GenerationRequest.from_dict(data)
    except StudioError as error:
        raise _Invalid(f"a stored request ({error})") from None
    return data


def _comparison(data: Any) -> tuple[bool, list]:
    if not isinstance(data, dict) or not isinstance(data.get("samplers"), list):
        raise _Invalid("a comparison (mode and samplers)")
    mode = data.get("mode", False)
    if not isinstance(mode, bool):
        raise _Invalid("a comparison whose mode is true or false")
    samplers: list = []
    for entry in data["samplers"]:
        if isinstance(entry, str):
            samplers.append(entry)
        elif (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and not isinstance(entry[1], bool)
        ):
            samplers.append((entry[0], entry[1]))
        else:
            raise _Invalid("a comparison whose samplers are names or [name, steps]")
    return mode, samplers
