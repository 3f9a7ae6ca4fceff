"""Enlarging a picture for the high-resolution pass: Lanczos, or an upscaler model file.

Upscaler models (ESRGAN, Real-ESRGAN, SwinIR, 4x-UltraSharp and the other architectures spandrel
knows) are the files users keep in ``models/ESRGAN`` or ``models/upscale_models``. Safetensors files
load as they are; ``.pth``/``.pt``/``.ckpt`` pickles only with the same opt-in as checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipelines.errors import ModelFormatError, ModelNotFoundError
from pipelines.models import PICKLE_SUFFIXES

UPSCALER_FOLDERS = (("models", "ESRGAN"), ("models", "upscale_models"), ("ESRGAN",),
                    ("upscale_models",))  # fmt: skip
UPSCALER_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
# Side of the pieces a model upscales at once: bounds the memory of large pictures.
TILE = 512


def find_upscalers(folders: Iterable[Path]) -> list[Path]:
    """Upscaler model files in each folder's ``models/ESRGAN``, ``models/upscale_models`` (or
    those folders themselves), sorted by name."""
    found: set[Path] = set()
    for folder in folders:
        for parts in UPSCALER_FOLDERS:
            place = Path(folder).expanduser().joinpath(*parts)
            if place.is_dir():
                found.update(p for p in place.iterdir() if p.suffix.lower() in UPSCALER_SUFFIXES)
    return sorted(found, key=lambda p: p.name.lower())


def resolve_upscaler(name: str, folders: Iterable[Path]) -> Path:
    """The upscaler file ``name`` means: a path, or the name of a file in the model folders'
    upscaler folders (as AUTOMATIC1111's text names it: ``4x-UltraSharp``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for found in find_upscalers(folders):
        if name in (found.name, found.stem):
            return found
    raise ModelNotFoundError(
        f"The upscaler {name!r} was found neither as a file nor in the model folders' "
        "models/ESRGAN or models/upscale_models."
    )


@functools.lru_cache(maxsize=2)
def load_upscaler(path: Path, allow_pickle: bool = False) -> Any:
    """The spandrel model in ``path`` (kept for the next run); every way it can fail is a
    :class:`ModelFormatError` or :class:`ModelNotFoundError` naming the file."""
    if not path.is_file():
        raise ModelNotFoundError(f"The upscaler model {path} does not exist.")
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelFormatError(
            f"{path.name} is a pickle file, which can run code when loaded. Use a .safetensors "
            "upscaler, or allow pickle files in Settings (or pass --allow-pickle)."
        )
    if path.suffix.lower() not in UPSCALER_SUFFIXES:
        raise ModelFormatError(f"{path.name} is not an upscaler model (.safetensors or .pth).")
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        model = ModelLoader().load_from_file(path)
    except UnsupportedModelError:
        raise ModelFormatError(
            f"{path.name} is not an upscaler architecture the studio knows (ESRGAN, Real-ESRGAN, "
            "SwinIR, ...)."
        ) from None
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelFormatError(f"Cannot load the upscaler {path.name}: {exc}") from None
    if not isinstance(model, ImageModelDescriptor) or model.purpose != "SR":
        raise ModelFormatError(f"{path.name} is not a super-resolution (upscaler) model.")
    return model.eval()


def upscale_with_model(
    image: Image.Image, path: Path, size: tuple[int, int], device: torch.device,
    allow_pickle: bool = False,
) -> Image.Image:  # fmt: skip
    """``image`` enlarged by the model in ``path``, then fitted to ``size`` with Lanczos (a 4x
    model serves a 2x pass)."""
    model = load_upscaler(path, allow_pickle).to(device)
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    batch = pixels.permute(2, 0, 1)[None].to(device, model.dtype)
    scale = model.scale
    out = torch.zeros(1, 3, batch.shape[2] * scale, batch.shape[3] * scale)
    for top in range(0, batch.shape[2], TILE):
        for left in range(0, batch.shape[3], TILE):
            piece = batch[:, :, top : top + TILE, left : left + TILE]
            result = model(piece).float().cpu()
            out[:, :, top * scale : top * scale + result.shape[2],
                left * scale : left * scale + result.shape[3]] = result  # fmt: skip
    array = (out[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    enlarged = Image.fromarray(array)
    if enlarged.size != size:
        enlarged = enlarged.resize(size, Image.Resampling.LANCZOS)
    return enlarged
