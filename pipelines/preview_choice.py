"""Which preview decoder "Auto" uses for a model, from what the decoders cost and how true they are.

When a model loads, :func:`pipelines.preview_costs.measure_costs` times one guided denoising step
(a UNet call on a batch of two) and one decode by each decoder at a small latent size, and
measures how far the approximate linear map's colours are from the model's own VAE.
:func:`choose_plan` then picks, for the size of each run:

1. the full VAE at every step when a decode costs at most :data:`PREVIEW_BUDGET` of a step;
2. else the tiny decoder (TAESD) when the model has one, every step or every few steps so that it
   stays within the budget (unless the full VAE fits as often: then the full VAE);
3. else the full VAE every few steps, when that keeps previews within the budget and no further
   apart than :data:`MAX_PREVIEW_INTERVAL` seconds (a fast small model: its whole run takes less
   than a second, so a true preview every few steps is worth more than a wrong one every step);
4. else the approximate map at every step.

The last step of a run is never a preview: it shows the decoded final image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from pipelines.types import PreviewMode

PREVIEW_BUDGET = 0.10  # previews may add this fraction to a run's denoising time
# The tiny decoder, picked for speed, may add at most this fraction, measured as the run goes: a
# model whose step costs as little as a TAESD decode gets fewer previews, not a slower run.
TINY_DECODER_BUDGET = 0.05
MAX_PREVIEW_INTERVAL = 1.0  # seconds: a strided decoder still shows a step at least this often


@dataclass(frozen=True)
class PreviewCosts:
    """Seconds per call at ``latent_pixels``, and the approximate map's colour error."""

    latent_pixels: int
    step: float  # one guided step: the UNet on a batch of two
    full: float
    tiny: float | None  # None: the model has no tiny decoder
    approximate: float
    approximate_error: float  # mean absolute colour difference from the VAE, 0-255 per channel

    def at(self, latent_pixels: int) -> PreviewCosts:
        """The costs scaled to another size: convolutions cost in proportion to the pixels."""
        scale = latent_pixels / max(1, self.latent_pixels)
        tiny = None if self.tiny is None else self.tiny * scale
        return replace(
            self,
            latent_pixels=latent_pixels,
            step=self.step * scale,
            full=self.full * scale,
            tiny=tiny,
            approximate=self.approximate * scale,
        )


@dataclass(frozen=True)
class PreviewPlan:
    mode: PreviewMode  # a decoder, never AUTO
    # Decode the first completed step and every stride-th after it; the steps between show the
    # newest decoded frame again, the last step the final image.
    stride: int = 1

    def decodes(self, step: int) -> bool:
        return (step - 1) % self.stride == 0


def _stride(cost: float, step: float) -> int:
    # Decoding every k-th step spends cost / k per step: the smallest k within the budget.
    return max(1, math.ceil(cost / max(PREVIEW_BUDGET * step, 1e-9) - 1e-9))


def choose_plan(costs: PreviewCosts, every_step: bool = False) -> PreviewPlan:
    """The decoder and stride "Auto" uses for runs of ``costs.latent_pixels`` latent pixels;
    ``every_step`` allows no stride (a comparison keeps a preview of every step)."""
    full = _stride(costs.full, costs.step)
    if full == 1:
        return PreviewPlan(PreviewMode.FULL)
    widest = 1 if every_step else math.floor(MAX_PREVIEW_INTERVAL / max(costs.step, 1e-9))
    widest = max(1, widest)
    if costs.tiny is not None:
        tiny = _stride(costs.tiny, costs.step)
        # The tiny decoder unless the exact one fits as often (a small model's VAE can cost
        # less than TAESD's fixed-size decoder).
        if tiny <= widest and tiny < full:
            return PreviewPlan(PreviewMode.TINY, tiny)
    if full <= widest:
        return PreviewPlan(PreviewMode.FULL, full)
    return PreviewPlan(PreviewMode.APPROXIMATE)


def describe(costs: PreviewCosts | None) -> str:
    """One line for the log and the preview menu's tooltip."""
    if costs is None:
        return "Preview costs not measured yet: Auto uses the approximate map."
    plan = choose_plan(costs)
    every = "every step" if plan.stride == 1 else f"every {plan.stride} steps"
    share = costs.full / costs.step if costs.step else 0.0
    return (
        f"Auto: {plan.mode.value} decoder, {every}, at this model's native size. "
        f"Full VAE decode: {share:.0%} of a step. "
        f"Approximate colours differ from this model's VAE by {costs.approximate_error:.0f}/255 "
        "on average (measured when the model loaded)."
    )


class PreviewPacer:
    """Keeps a run's preview decoding within a share of its time, measured while it runs.

    Before each decode, :meth:`allows` checks that the time spent on previews so far plus the
    expected cost of one more stays within ``budget`` of the time spent on everything else;
    :meth:`record` adds a decode's measured time and makes it the next expectation. The first
    expectation comes from the costs measured when the model loaded, so a decoder as slow as a
    step is not run even once. ``budget`` None: every decode is allowed (the user asked for it).
    """

    def __init__(self, budget: float | None, expected: float = 0.0) -> None:
        self.budget = budget
        self.expected = expected
        self.spent = 0.0

    def allows(self, elapsed: float) -> bool:
        if self.budget is None:
            return True
        working = max(0.0, elapsed - self.spent)
        return self.spent + self.expected <= self.budget * working

    def record(self, seconds: float) -> None:
        self.spent += seconds
        self.expected = seconds


def pacer_for(plan: PreviewPlan, costs: PreviewCosts | None) -> PreviewPacer:
    """The pacer of a run whose decoders cost ``costs`` (at the run's size): the tiny decoder
    within :data:`TINY_DECODER_BUDGET`; the others as the plan says (the approximate map costs
    next to nothing; Auto spaces the full VAE out by its costs; a user who picked the full VAE
    sees every step)."""
    if plan.mode is not PreviewMode.TINY:
        return PreviewPacer(None)
    if costs is None:  # not measured (a model without a UNet): the first decode measures it
        return PreviewPacer(TINY_DECODER_BUDGET)
    if costs.tiny is None:  # no tiny decoder: the approximate map stands in for it
        return PreviewPacer(None)
    return PreviewPacer(TINY_DECODER_BUDGET, costs.tiny)
