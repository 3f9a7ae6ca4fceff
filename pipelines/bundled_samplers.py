"""Which samplers the bundled toy-world model draws well with, and what to tell a user who picks
another. Kept apart from the window so that the tests of the shipped weights check these lists.
"""

from __future__ import annotations

from collections.abc import Sequence

# Samplers with which the bundled model draws colour noise above a CFG, and that CFG (60 held-out
# captions at CFG 7: the background right on 0.02-0.85 of them, 1.00 with the other samplers; at
# these CFGs 1.00): their multistep or ancestral updates blow up the gap between its captioned
# and empty-caption noise predictions, which guidance multiplies. The model card has the figures.
NOISY_SAMPLERS = {
    "Euler a": 3.0, "DPM2 a": 3.0, "DPM++ 2M SDE": 3.0, "UniPC": 3.0, "LMS": 3.0, "PNDM": 2.0,
    "DDPM": 3.0,
}  # fmt: skip
GOOD_SAMPLERS = "Euler, Heun, DPM++ 2M or DDIM"


def safe_cfg(samplers: Sequence[str]) -> float | None:
    """The highest CFG at which the bundled model draws well with all of ``samplers`` (None: any)."""
    limits = [NOISY_SAMPLERS[name] for name in samplers if name in NOISY_SAMPLERS]
    return min(limits) if limits else None


def sampler_warning(samplers: Sequence[str], cfg: float) -> str:
    """What to tell a user about to run the bundled model with ``samplers`` at ``cfg``."""
    noisy = [name for name in samplers if cfg > NOISY_SAMPLERS.get(name, cfg)]
    if not noisy:
        return ""
    names = " and ".join([", ".join(noisy[:-1]), noisy[-1]] if len(noisy) > 1 else noisy)
    return (f"With {names} the bundled model draws noise at CFG {cfg:g}: set CFG to "
            f"{safe_cfg(noisy):g} or use {GOOD_SAMPLERS}.")  # fmt: skip
