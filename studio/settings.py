"""Persistent settings: model folders, device, output, and the panels' last values.

A thin wrapper over QSettings. The location is injectable (a path to an INI file) so tests and
portable installs never touch the user's real settings; without one, Qt's per-user default is used.
INI files store everything as text, so every getter converts and falls back to a default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from pipelines.types import MemoryOptions

ORGANISATION = "Diffusion Studio"
APPLICATION = "Diffusion Studio"
DEFAULT_FILE_PATTERN = "{date}-{index:05d}-{seed}-{prompt}.png"  # same as pipelines.export's
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")


@dataclass(frozen=True)
class EngineConfig:
    """What the worker needs to build its Engine; a change rebuilds it (and reloads the model)."""

    model_folders: tuple[str, ...] = ()
    annotator_folders: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    allow_pickle: bool = False


def _to_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class StudioSettings:
    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self._store = QSettings(ORGANISATION, APPLICATION)
        else:
            self._store = QSettings(str(path), QSettings.Format.IniFormat)
        self.path = Path(self._store.fileName())
        self._injected = path is not None

    # ---- helpers ------------------------------------------------------------------------------
    def _get(self, key: str, default: Any = None) -> Any:
        return self._store.value(key, default)

    def _json(self, key: str, default: Any) -> Any:
        text = self._get(key)
        if not text:
            return default
        try:
            return json.loads(str(text))
        except ValueError:
            return default

    def _set_json(self, key: str, value: Any) -> None:
        self._store.setValue(key, json.dumps(value))

    def sync(self) -> None:
        self._store.sync()

    # ---- engine -------------------------------------------------------------------------------
    @property
    def model_folders(self) -> list[str]:
        return [str(p) for p in self._json("engine/model_folders", [])]

    @model_folders.setter
    def model_folders(self, folders: list[str]) -> None:
        self._set_json("engine/model_folders", [str(f) for f in folders])

    @property
    def annotator_folders(self) -> list[str]:
        return [str(p) for p in self._json("engine/annotator_folders", [])]

    @annotator_folders.setter
    def annotator_folders(self, folders: list[str]) -> None:
        self._set_json("engine/annotator_folders", [str(f) for f in folders])

    @property
    def device(self) -> str:
        value = str(self._get("engine/device", "auto"))
        return value if value in DEVICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        self._store.setValue("engine/device", value)

    @property
    def precision(self) -> str:
        value = str(self._get("engine/precision", "auto"))
        return value if value in PRECISIONS else "auto"

    @precision.setter
    def precision(self, value: str) -> None:
        self._store.setValue("engine/precision", value)

    @property
    def allow_pickle(self) -> bool:
        return _to_bool(self._get("engine/allow_pickle"), False)

    @allow_pickle.setter
    def allow_pickle(self, value: bool) -> None:
        self._store.setValue("engine/allow_pickle", bool(value))

    @property
    def memory(self) -> MemoryOptions:
        data = self._json("engine/memory", {})
        names = ("attention_slicing", "vae_tiling", "cpu_offload")
        return MemoryOptions(**{n: bool(data.get(n, False)) for n in names})

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

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            model_folders=tuple(self.model_folders),
            annotator_folders=tuple(self.annotator_folders),
            device=self.device,
            precision=self.precision,
            allow_pickle=self.allow_pickle,
        )

    # ---- output -------------------------------------------------------------------------------
    @property
    def output_folder(self) -> str:
        value = self._get("output/folder")
        if value:
            return str(value)
        pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        return str(Path(pictures or Path.home()) / "Diffusion Studio")

    @output_folder.setter
    def output_folder(self, folder: str) -> None:
        self._store.setValue("output/folder", str(folder))

    @property
    def file_pattern(self) -> str:
        return str(self._get("output/pattern") or DEFAULT_FILE_PATTERN)

    @file_pattern.setter
    def file_pattern(self, pattern: str) -> None:
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
        data = self._json("session/last_request", None)
        return data if isinstance(data, dict) else None

    @last_request.setter
    def last_request(self, data: dict[str, Any]) -> None:
        self._set_json("session/last_request", data)

    @property
    def random_seed(self) -> bool | None:
        value = self._get("session/random_seed")
        return None if value is None else _to_bool(value, True)  # None: never stored

    @random_seed.setter
    def random_seed(self, value: bool) -> None:
        self._store.setValue("session/random_seed", bool(value))

    @property
    def comparison(self) -> tuple[bool, list]:
        """(compare mode on, the ticked samplers as names or [name, steps])."""
        data = self._json("session/comparison", None)
        if not isinstance(data, dict) or not isinstance(data.get("samplers"), list):
            return False, []
        samplers = [
            e if isinstance(e, str) else (str(e[0]), int(e[1]))
            for e in data["samplers"]
            if isinstance(e, str) or (isinstance(e, list) and len(e) == 2 and isinstance(e[1], int))
        ]
        return bool(data.get("mode", False)), samplers

    def set_comparison(self, mode: bool, samplers: list) -> None:
        self._set_json("session/comparison", {"mode": bool(mode), "samplers": list(samplers)})

    def window_state(self, name: str) -> QByteArray | None:
        value = self._get(f"window/{name}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_state(self, name: str, value: QByteArray) -> None:
        self._store.setValue(f"window/{name}", value)
