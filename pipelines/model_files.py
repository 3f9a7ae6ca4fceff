"""Reading model files without loading them: safetensors tensor tables and the Hugging Face cache."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from pipelines.errors import ModelFormatError

_MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a .safetensors file: name -> {dtype, shape, data_offsets}."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelFormatError(f"{path} is too short to be a safetensors file.")
            (length,) = struct.unpack("<Q", prefix)
            if length <= 1 or length > _MAX_HEADER_BYTES:
                raise ModelFormatError(f"{path} is not a valid safetensors file (corrupt header).")
            raw = handle.read(length)
    except OSError as exc:
        raise ModelFormatError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if len(raw) < length:
        raise ModelFormatError(f"{path} is truncated (the safetensors header is incomplete).")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{path} is not a valid safetensors file (corrupt header).") from exc
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path} is not a valid safetensors file (corrupt header).")
    header.pop("__metadata__", None)
    return header


def snapshot_of(repo: Path) -> Path | None:
    """The snapshot folder of an HF cache repo (``models--org--name``): refs/main, else newest."""
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        try:
            candidate = snapshots / ref.read_text(encoding="utf-8").strip()
        except OSError:
            candidate = None
        if candidate is not None and candidate.is_dir():
            return candidate
    try:
        revisions = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(revisions, key=lambda p: p.stat().st_mtime) if revisions else None


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def read_gguf_header(path: Path) -> dict[str, Any]:
    """The tensor table of a GGUF file, as :func:`read_safetensors_header` gives it: name ->
    {shape (PyTorch's order), dtype (the GGML type's name)}."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelFormatError(f"{path.name} is not a readable GGUF file ({exc}).") from exc
    return {
        t.name: {"shape": [int(n) for n in reversed(t.shape)], "dtype": t.tensor_type.name}
        for t in reader.tensors
    }


def read_tensor_table(path: Path) -> dict[str, Any]:
    """Tensor names and shapes of a .safetensors or .gguf file, without reading the weights."""
    if path.suffix.lower() == ".gguf":
        return read_gguf_header(path)
    return read_safetensors_header(path)
