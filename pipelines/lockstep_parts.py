"""What the UNet and flow lockstep comparisons share: splitting a batched model output into the
columns' guided predictions, and a column's step preview."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.types import StepPreview


def column_predictions(
    output: torch.Tensor, count: int, guided: bool, scale: float
) -> list[torch.Tensor]:
    """Split a batch of ``count`` columns (``[uncond x n, cond x n]`` when guided) into each
    column's guided prediction, as the pipelines combine one image's two halves."""
    if not guided:
        return [output[k : k + 1] for k in range(count)]
    uncond, text = output.chunk(2)
    return [uncond[k : k + 1] + scale * (text[k : k + 1] - uncond[k : k + 1]) for k in range(count)]


def column_preview(
    sampler: str, step: int, total: int, image: np.ndarray | None, elapsed: float
) -> StepPreview:
    # One evaluation per step is what makes a column lockstep: its evaluations are its steps.
    return StepPreview(
        step=step, total=total, sampler=sampler, image=image, elapsed=elapsed, evaluations=step
    )
