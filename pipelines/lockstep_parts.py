"""What the UNet and flow lockstep comparisons share: the runs and columns they step together and
their cancelling, splitting a batched model output into the columns' guided predictions, and a
column's step preview."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pipelines.types import StepPreview


class LockstepLoop:
    """Several prepared runs of one request (one per sampler) stepped together, their columns
    filled as they go. ``on_step`` gets (position in the job, preview) after every step."""

    def __init__(
        self,
        runs: list[Any],  # PreparedRun
        columns: list[Any],  # CompareColumn
        cancel: threading.Event,
        on_step: Callable[[int, StepPreview], None],
    ) -> None:
        self.runs = runs
        self.columns = columns
        self.cancel = cancel
        self.on_step = on_step
        self.shared = runs[0]
        self.pipe = self.shared.pipeline
        self.request = self.shared.request
        self.steps = self.request.steps
        self.device = self.pipe._execution_device
        self.guided = self.shared.guided

    def _cancelled(self) -> bool:
        if not self.cancel.is_set():
            return False
        for column in self.columns:
            column.cancelled = True
        return True


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
