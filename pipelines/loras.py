"""LoRA and LyCORIS files: where they are, which model family they fit, and applying them.

Files are found in the folders other front ends keep them in (``Lora``, ``LyCORIS``, ``loras``,
beside or under the chosen model folders). Both the kohya/AUTOMATIC1111 layout (``lora_unet_…``,
``lora_te_…`` keys, the files people download) and the diffusers/PEFT layout load, through diffusers'
PEFT LoRA loading. Each file becomes a named adapter on the loaded pipeline and stays there: changing
the LoRAs or their weights of the next run only switches adapters (``set_adapters``), and a run
without LoRAs disables them, which makes every layer compute exactly what it computed before any was
loaded. The base model is never reloaded for a LoRA.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import ModelFormatError
from pipelines.models import read_safetensors_header
from pipelines.types import ModelFamily

log = logging.getLogger(__name__)

LORA_SUBFOLDERS = ("Lora", "LyCORIS", "loras", "models/Lora", "models/LyCORIS", "models/loras")
_MAX_DEPTH = 2
_MAX_ADAPTERS = 8  # adapters kept on the pipeline; the least recently used beyond are deleted
_LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", "lora.down", "lora.up", "hada_w1",
                 "lokr_w1")  # fmt: skip
_CONTEXT_FAMILIES = {768: ModelFamily.SD1, 2048: ModelFamily.SDXL}


@dataclass(frozen=True)
class LoraInfo:
    path: Path
    name: str  # the file name without its extension: what <lora:name:w> calls
    family: ModelFamily | None  # None: the keys do not tell
    context_dim: int | None = None  # the width of the text the UNet's LoRA layers read
    second_encoder: bool = False  # carries layers for SDXL's second text encoder

    @property
    def family_label(self) -> str:
        return self.family.label if self.family else "unknown family"


@dataclass
class LoraDiscovery:
    loras: list[LoraInfo] = field(default_factory=list)
    searched: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it is not listed)

    def find(self, name: str) -> LoraInfo | None:
        """The LoRA a tag or ``--lora`` names: a path, a file name, or a name in any case."""
        path = Path(name).expanduser()
        if path.suffix.lower() == ".safetensors" and path.is_file():
            return describe_lora(path)
        for match in (lambda i: i.name == name, lambda i: i.name.lower() == name.lower()):
            found = [info for info in self.loras if match(info)]
            if found:
                return found[0]
        return None

    def searched_text(self) -> str:
        return ", ".join(str(p) for p in self.searched) or "no folders (choose model folders)"


def lora_folders(model_folders: Iterable[Path], base_model: Path | None = None) -> list[Path]:
    """Where LoRAs may be: each model folder, its LoRA subfolders, and those of its parent (a
    model folder is often ``models/Stable-diffusion``, beside ``models/Lora``)."""
    roots = [Path(f).expanduser() for f in model_folders]
    if base_model is not None:
        roots.append(base_model.parent)
    folders: list[Path] = []
    for root in roots:
        for folder in [root, *(root / s for s in LORA_SUBFOLDERS),
                       *(root.parent / s for s in LORA_SUBFOLDERS[:3])]:  # fmt: skip
            if folder not in folders:
                folders.append(folder)
    return folders


def is_lora_keys(keys: Iterable[str]) -> bool:
    return any(marker in key for key in keys for marker in _LORA_MARKERS)


def _context_dim(header: dict[str, Any]) -> int | None:
    # The cross-attention key projection reads the text encoder's width: 768 SD 1.x, 2048 SDXL.
    for key, entry in header.items():
        flat = key.replace(".", "_")
        if "attn2_to_k" in flat and ("lora_down" in flat or "lora_A" in flat):
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if shape and len(shape) >= 2:
                return int(shape[1])
    return None


def describe_lora(path: Path) -> LoraInfo:
    """Read a LoRA file's header (not its weights) for its family; ModelFormatError if it is not
    a LoRA."""
    stat = path.stat()
    described = _describe(path.resolve(), stat.st_mtime_ns, stat.st_size)
    if isinstance(described, str):
        raise ModelFormatError(described)
    return described


# Kept per file version, refusals too: each prompt with a LoRA tag looks the folders over again,
# and a model folder's checkpoints are no LoRAs every time.
@functools.lru_cache(maxsize=1024)
def _describe(path: Path, _mtime: int, _size: int) -> LoraInfo | str:
    try:
        header = read_safetensors_header(path)
    except ModelFormatError as error:
        return str(error)
    if not is_lora_keys(header):
        return f"{path.name} is not a LoRA (no LoRA layers in it)."
    keys = list(header)
    second = any(k.startswith(("lora_te2_", "text_encoder_2.", "te2.")) for k in keys)
    sgm = any(re.match(r"lora_unet_(input_blocks|output_blocks|middle_block)", k) for k in keys)
    context = _context_dim(header)
    if context == 1024:
        return f"{path.name} is a LoRA for Stable Diffusion 2.x (not supported)."
    family = _CONTEXT_FAMILIES.get(context) if context else None
    if family is None and (second or sgm):  # SDXL's kohya files use its own block names
        family = ModelFamily.SDXL
    if family is None and any(k.startswith(("lora_te_", "lora_unet_")) for k in keys):
        family = ModelFamily.SD1
    return LoraInfo(path, path.stem, family, context, second)


def discover_loras(folders: Iterable[Path]) -> LoraDiscovery:
    discovery = LoraDiscovery()
    seen: set[Path] = set()

    def walk(folder: Path, depth: int, strict: bool) -> None:
        try:
            entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir() and depth < _MAX_DEPTH:
                walk(entry, depth + 1, strict)
            elif entry.suffix.lower() == ".safetensors" and entry.resolve() not in seen:
                seen.add(entry.resolve())
                try:
                    discovery.loras.append(describe_lora(entry))
                except (ModelFormatError, OSError) as error:
                    if strict:  # elsewhere, checkpoints and VAEs are not LoRAs, as expected
                        discovery.skipped.append((entry, str(error)))

    for folder in folders:
        if folder.is_dir():
            discovery.searched.append(folder)
            # A model folder holds checkpoints too: only its own LoRA-shaped files count there.
            own = folder.name.lower() in {"lora", "lycoris", "loras"}
            walk(folder, 0 if own else _MAX_DEPTH, strict=own)
    return discovery


def fits(info: LoraInfo, family: ModelFamily, context_dim: int) -> str | None:
    """Why ``info`` cannot be applied to a model of ``family`` whose UNet reads text of width
    ``context_dim``; None when it can."""
    if info.family is not None and info.family is not family:
        return f"it is a LoRA for {info.family.label} and the model is {family.label}"
    if info.second_encoder and family is not ModelFamily.SDXL:
        return f"it has layers for SDXL's second text encoder and the model is {family.label}"
    if info.context_dim is not None and info.context_dim != context_dim:
        return (
            f"its layers read text {info.context_dim} wide and this model's UNet reads "
            f"{context_dim}"
        )
    return None


def short_hash(path: Path, skip_header: bool = False) -> str:
    """The 12-digit SHA-256 AUTOMATIC1111 writes: of the tensors only (past the safetensors
    header) for a LoRA, as its ``Lora hashes`` do, of the whole file for an embedding."""
    stat = path.stat()
    return _hash(path.resolve(), stat.st_mtime_ns, stat.st_size, skip_header)


@functools.lru_cache(maxsize=256)
def _hash(path: Path, _mtime: int, _size: int, skip_header: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if skip_header:
            length = int.from_bytes(handle.read(8), "little")
            handle.seek(8 + length)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class LoraUse:
    info: LoraInfo
    weight: float
    unet_weight: float | None = None  # None: ``weight`` for the UNet too


class AdapterState:
    """The LoRA adapters loaded onto one pipeline, by file, and which of them are active."""

    def __init__(self) -> None:
        # Weak: a model switch must free the old pipeline before the new one loads.
        self._pipe: weakref.ref[Any] | None = None
        self._names: dict[Path, str] = {}  # file -> adapter name, least recently used first

    def apply(self, pipe: Any, uses: Sequence[LoraUse]) -> list[str]:
        """Make exactly ``uses`` active on ``pipe``; problems as messages (the run goes on)."""
        if self._pipe is None or self._pipe() is not pipe:
            self._pipe, self._names = weakref.ref(pipe), {}
        problems: list[str] = []
        active: list[tuple[str, float | dict[str, float]]] = []
        for use in uses:
            name = self._load(pipe, use.info, problems)
            if name is not None:
                active.append((name, self._weights(pipe, use)))
        self._forget_unused(pipe, {name for name, _ in active})
        if active:
            pipe.enable_lora()
            pipe.set_adapters([n for n, _ in active], adapter_weights=[w for _, w in active])
        elif self._names:
            pipe.disable_lora()  # every LoRA layer computes its base layer alone again
        return problems

    def holds(self, path: Path) -> bool:
        return path in self._names

    def _load(self, pipe: Any, info: LoraInfo, problems: list[str]) -> str | None:
        if info.path in self._names:
            self._names[info.path] = self._names.pop(info.path)  # most recently used last
            return self._names[info.path]
        name = f"lora{len(self._names)}_{re.sub(r'[^0-9A-Za-z_]', '_', info.name)}"
        while name in self._names.values():
            name += "_"
        try:
            with warnings.catch_warnings():
                # Several adapters on one model is the point here, not a mistake PEFT warns of.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                pipe.load_lora_weights(str(info.path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            log.warning("LoRA %s not loaded", info.path, exc_info=True)
            self._delete(pipe, name)
            reason = " ".join(str(error).split())  # torch's messages run over several lines
            reason = reason if len(reason) <= 300 else reason[:300] + "…"
            problems.append(f"LoRA “{info.name}” could not be loaded ({reason}); not applied.")
            return None
        self._names[info.path] = name
        return name

    @staticmethod
    def _weights(pipe: Any, use: LoraUse) -> float | dict[str, float]:
        if use.unet_weight is None:
            return use.weight
        weights = {"unet": use.unet_weight, "text_encoder": use.weight}
        if getattr(pipe, "text_encoder_2", None) is not None:
            weights["text_encoder_2"] = use.weight
        return weights

    def _forget_unused(self, pipe: Any, keep: set[str]) -> None:
        for path, name in list(self._names.items()):
            if len(self._names) <= _MAX_ADAPTERS:
                break
            if name not in keep:
                self._delete(pipe, name)
                del self._names[path]

    @staticmethod
    def _delete(pipe: Any, name: str) -> None:
        listed = {n for names in pipe.get_list_adapters().values() for n in names}
        if name in listed:
            pipe.delete_adapters(name)
