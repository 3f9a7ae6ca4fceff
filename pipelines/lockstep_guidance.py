"""The per-column predictions of a lockstep batch, with classifier-free guidance applied."""

from __future__ import annotations

import torch


def column_predictions(
    output: torch.Tensor, count: int, guided: bool, scale: float
) -> list[torch.Tensor]:
    """Split a batch of ``count`` columns (``[uncond x n, cond x n]`` when guided) into each
    column's guided prediction, as the pipelines combine one image's two halves."""
    if not guided:
        return [output[k : k + 1] for k in range(count)]
    uncond, text = output.chunk(2)
    return [uncond[k : k + 1] + scale * (text[k : k + 1] - uncond[k : k + 1]) for k in range(count)]
