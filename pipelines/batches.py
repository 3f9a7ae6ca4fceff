"""Batches: N images of one request, each with its own seed and its own output file.

The seeds follow AUTOMATIC1111's batch count: ``seed, seed + 1, …`` from a given seed (wrapping
past the largest seed), or N seeds drawn independently when none is given. Every image keeps its
own complete request, so each one reproduces alone.

A batch *size* B (``GenerationRequest.batch_size``) denoises B images in one model call per step
(for GPUs), with the seeds ``seed … seed + B - 1``; each image gets exactly the starting noise and
sampler noise its single run would, so it is that run's image (up to float rounding where the
batched kernels sum in another order).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.errors import ValidationError
from pipelines.types import (
    MAX_BATCH_SIZE,
    MAX_SEED,
    GenerationRequest,
    GenerationResult,
    PreviewMode,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pipelines.previews import PendingFrame, PreviewDecoder

MAX_BATCH_COUNT = 1000


def check_batch_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH_COUNT:
        raise ValidationError(f"Batch count must be a whole number from 1 to {MAX_BATCH_COUNT}, "
                              f"not {count!r}.")  # fmt: skip


def check_batch_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise ValidationError(f"Batch size must be a whole number from 1 to {MAX_BATCH_SIZE}, "
                              f"not {size!r}; for more images use the batch count.")  # fmt: skip


def batch_seeds(
    seed: int | None, count: int, rng: random.Random | None = None, stride: int = 1
) -> list[int]:
    """``count`` jobs' seeds; ``stride`` apart when each job makes that many images (its batch
    size), so that no two images of the batch count share a seed, as in AUTOMATIC1111."""
    check_batch_count(count)
    if seed is None:
        draw = rng or random.SystemRandom()
        return [draw.randint(0, MAX_SEED) for _ in range(count)]
    return [(seed + offset * stride) % (MAX_SEED + 1) for offset in range(count)]


def batch_requests(
    request: GenerationRequest, count: int, rng: random.Random | None = None
) -> list[GenerationRequest]:
    """``count`` copies of ``request``, each with its seed (see :func:`batch_seeds`)."""
    seeds = batch_seeds(request.seed, count, rng, stride=request.batch_size)
    return [replace(request, seed=seed) for seed in seeds]


def batch_paths(out: str | Path, count: int) -> list[Path]:
    """``OUT.png`` for one image; ``OUT-0001.png``, ``OUT-0002.png``, … for a batch (its count
    times its size)."""
    if count < 1:
        raise ValidationError(f"A batch needs at least one image, not {count}.")
    out = Path(out)
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{number:04d}{out.suffix}") for number in range(1, count + 1)]


# ---- batch size: B images denoised together, each as its own single run -----------------------


def member_seed(seed: int, index: int) -> int:
    return (seed + index) % (MAX_SEED + 1)


def batch_noise(seed: int, count: int, shape: tuple[int, ...]) -> torch.Tensor:
    """(count, C, H, W) starting latents: image ``i`` gets seed + i's noise, drawn on the CPU as a
    single run of that seed draws it, so each image of a batch is that single run's image."""
    import torch

    return torch.cat([
        torch.randn(shape, generator=torch.Generator("cpu").manual_seed(member_seed(seed, i)),
                    dtype=torch.float32)
        for i in range(count)
    ])  # fmt: skip


def sampler_generators(
    seed: int, count: int, device: torch.device | str = "cpu"
) -> torch.Generator | list[torch.Generator]:
    """The samplers' fresh-noise stream (seed + 1, kept apart from the starting noise) of each
    image, on ``device``; a list for a batch, which the schedulers draw from per image."""
    import torch

    made = [torch.Generator(device).manual_seed(member_seed(seed, i) + 1) for i in range(count)]
    return made[0] if count == 1 else made


def member_requests(request: GenerationRequest) -> list[GenerationRequest]:
    """Each image of a batch as its own request: its own seed, the batch size kept (as AUTOMATIC1111
    records it), so that it reproduces as the first image of a batch from its seed."""
    assert request.seed is not None
    return [replace(request, seed=member_seed(request.seed, i)) for i in range(request.batch_size)]


def batch_frame(previews: PreviewDecoder, latents: torch.Tensor, mode: PreviewMode
                ) -> PendingFrame | None:  # fmt: skip
    """One preview of a batch: its images side by side in a grid (a single image as it is)."""
    import torch

    from pipelines.previews import PendingFrame

    if latents.shape[0] == 1:
        return previews.decode_async(latents, mode)
    tiles = [previews.decode(latents[i : i + 1], mode) for i in range(latents.shape[0])]
    if any(tile is None for tile in tiles):
        return None
    return PendingFrame(torch.from_numpy(tile_grid(tiles)))


def tile_grid(tiles: list[np.ndarray]) -> np.ndarray:
    """Equal-sized RGB images in a near-square grid, row by row (empty cells black)."""
    import numpy as np

    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = tile
    return grid


def split_batch(result: GenerationResult) -> list[GenerationResult]:
    """A finished batch as one result per image, each with its own request (seed); a single
    image's result as it is."""
    if not result.images:
        return [result]
    requests = member_requests(result.request)
    return [replace(result, request=request, image=image, images=(),
                    latents=None if result.latents is None else result.latents[i : i + 1])
            for i, (request, image) in enumerate(zip(requests, result.images))]  # fmt: skip
