"""Textual-inversion embeddings: found in ``embeddings`` folders, called by their file name.

SD 1.x files hold one tensor of vectors (``emb_params`` in AUTOMATIC1111's safetensors, the
``string_to_param`` table in its ``.pt`` files, or a diffusers ``{token: vectors}`` file); SDXL files
hold ``clip_l`` and ``clip_g``, one for each text encoder. ``.pt`` and ``.bin`` files are pickles and
are read only with the same opt-in as pickled checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines.errors import ModelFormatError
from pipelines.loras import short_hash
from pipelines.models import read_safetensors_header
from pipelines.prompt_encoding import CHUNK_TOKENS
from pipelines.types import ModelFamily

EMBEDDING_SUBFOLDERS = ("embeddings", "models/embeddings")
SAFE_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".bin")
_WIDTH_FAMILIES = {768: ModelFamily.SD1}


@dataclass(frozen=True)
class EmbeddingInfo:
    path: Path
    name: str  # the file name without extension: the word that calls it
    family: ModelFamily | None  # None: the width does not tell (checked against the model on use)
    needs_pickle: bool = False

    @property
    def family_label(self) -> str:
        return self.family.label if self.family else "unknown family"


@dataclass
class EmbeddingDiscovery:
    embeddings: list[EmbeddingInfo] = field(default_factory=list)
    searched: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def embedding_folders(
    model_folders: Iterable[Path], extra: Iterable[Path] = (), base_model: Path | None = None
) -> list[Path]:
    """The chosen embedding folders, then ``embeddings`` beside or under each model folder."""
    roots = [Path(f).expanduser() for f in model_folders]
    if base_model is not None:
        roots.append(base_model.parent)
    folders = [Path(f).expanduser() for f in extra]
    for root in roots:
        for folder in [*(root / s for s in EMBEDDING_SUBFOLDERS), root.parent / "embeddings"]:
            if folder not in folders:
                folders.append(folder)
    return folders


def _family_of(tensors: dict[str, Any]) -> ModelFamily | None:
    if "clip_g" in tensors:
        return ModelFamily.SDXL
    widths = {int(shape[-1]) for shape in tensors.values() if shape}
    return _WIDTH_FAMILIES.get(widths.pop()) if len(widths) == 1 else None


def describe_embedding(path: Path) -> EmbeddingInfo:
    """What an embedding file is, from its header; ModelFormatError when it is none."""
    stat = path.stat()
    return _describe(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)  # every run looks the folders over again
def _describe(path: Path, _mtime: int, _size: int) -> EmbeddingInfo:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return EmbeddingInfo(path, path.stem, None, needs_pickle=True)
    header = read_safetensors_header(path)
    shapes = {k: v.get("shape") for k, v in header.items() if isinstance(v, dict)}
    if not shapes or any(not s or len(s) > 2 for s in shapes.values()) or len(shapes) > 2:
        raise ModelFormatError(f"{path.name} is not a textual-inversion embedding.")
    if any(len(s) == 2 and s[0] > CHUNK_TOKENS for s in shapes.values()):
        raise ModelFormatError(f"{path.name} has more vectors than a {CHUNK_TOKENS}-token chunk.")
    if 1024 in {int(s[-1]) for s in shapes.values()} and "clip_g" not in shapes:
        raise ModelFormatError(f"{path.name} is an embedding for Stable Diffusion 2.x.")
    return EmbeddingInfo(path, path.stem, _family_of(shapes))


def discover_embeddings(folders: Iterable[Path]) -> EmbeddingDiscovery:
    discovery = EmbeddingDiscovery()
    names: set[str] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        discovery.searched.append(folder)
        try:
            entries = sorted(p for p in folder.rglob("*") if p.is_file())
        except OSError:
            continue
        for entry in entries:
            if entry.suffix.lower() not in (SAFE_SUFFIX, *PICKLE_SUFFIXES):
                continue
            try:
                info = describe_embedding(entry)
            except (ModelFormatError, OSError) as error:
                discovery.skipped.append((entry, str(error)))
                continue
            if info.name.lower() in names:  # the first folder wins, as the list's order says
                discovery.skipped.append((entry, f"another embedding is named {info.name}"))
                continue
            names.add(info.name.lower())
            discovery.embeddings.append(info)
    return discovery


def load_vectors(info: EmbeddingInfo, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """``{"clip_l": (n, 768)}`` for SD 1.x, with ``"clip_g"`` too for SDXL."""
    if info.needs_pickle and not allow_pickle:
        raise ModelFormatError(
            "it is a pickle, which can run code when read; switch on pickled files "
            "(--allow-pickle) to use it, or use a .safetensors version"
        )
    stat = info.path.stat()
    return _load(info.path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _load(path: Path, _mtime: int, _size: int) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == SAFE_SUFFIX:
        from safetensors.torch import load_file

        data: Any = load_file(str(path))
    else:
        try:  # tensors and plain tables only, even with the opt-in
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means the same
            raise ModelFormatError(
                f"{path.name} cannot be read as an embedding ({error})."
            ) from None
    if isinstance(data, dict) and "string_to_param" in data:
        data = data["string_to_param"]
    if not isinstance(data, dict) or not data:
        raise ModelFormatError(f"{path.name} holds no embedding vectors.")
    if "clip_l" in data:
        return {k: _matrix(v, path) for k, v in data.items() if k in ("clip_l", "clip_g")}
    tensor = data.get("emb_params", next(iter(data.values())))
    return {"clip_l": _matrix(tensor, path)}


def _matrix(value: Any, path: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2):
        raise ModelFormatError(f"{path.name} holds no embedding vectors.")
    return (value if value.ndim == 2 else value[None]).float()


def vectors_for(
    info: EmbeddingInfo, widths: tuple[int, ...], allow_pickle: bool
) -> tuple[torch.Tensor, ...]:
    """One (n, width) tensor per text encoder of widths ``widths``; ModelFormatError saying why
    the embedding does not fit."""
    vectors = load_vectors(info, allow_pickle)
    keys = ("clip_l", "clip_g")[: len(widths)]
    if len(widths) == 1 and "clip_g" in vectors:
        raise ModelFormatError("it is an embedding for SDXL")
    if any(key not in vectors for key in keys):
        wanted = "SDXL" if len(widths) == 2 else "SD 1.x"
        raise ModelFormatError(f"it is not an embedding for {wanted}")
    for key, width in zip(keys, widths):
        if vectors[key].shape[-1] != width:
            raise ModelFormatError(
                f"its {key} vectors are {vectors[key].shape[-1]} wide and the model's text "
                f"encoder reads {width}"
            )
    return tuple(vectors[key] for key in keys)


def embedding_hash(info: EmbeddingInfo) -> str:
    return short_hash(info.path)
