"""Batches: N images of one request, each with its own seed and its own output file.

The seeds follow AUTOMATIC1111's batch count: ``seed, seed + 1, …`` from a given seed (wrapping
past the largest seed), or N seeds drawn independently when none is given. Every image keeps its
own complete request, so each one reproduces alone.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from pipelines.errors import ValidationError
from pipelines.types import MAX_SEED, GenerationRequest

MAX_BATCH_COUNT = 1000


def check_batch_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH_COUNT:
        raise ValidationError(f"Batch count must be a whole number from 1 to {MAX_BATCH_COUNT}, "
                              f"not {count!r}.")  # fmt: skip


def batch_seeds(seed: int | None, count: int, rng: random.Random | None = None) -> list[int]:
    check_batch_count(count)
    if seed is None:
        draw = rng or random.SystemRandom()
        return [draw.randint(0, MAX_SEED) for _ in range(count)]
    return [(seed + offset) % (MAX_SEED + 1) for offset in range(count)]


def batch_requests(
    request: GenerationRequest, count: int, rng: random.Random | None = None
) -> list[GenerationRequest]:
    """``count`` copies of ``request``, each with its seed (see :func:`batch_seeds`)."""
    return [replace(request, seed=seed) for seed in batch_seeds(request.seed, count, rng)]


def batch_paths(out: str | Path, count: int) -> list[Path]:
    """``OUT.png`` for one image; ``OUT-0001.png``, ``OUT-0002.png``, … for a batch."""
    check_batch_count(count)
    out = Path(out)
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{number:04d}{out.suffix}") for number in range(1, count + 1)]
