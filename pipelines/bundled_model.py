"""The bundled toy-world model: where it lives, how to tell it from a model the user chose, which
samplers it draws well with and what to tell a user who picks another. Free of torch and Qt, so
that the window, the engine and the tests of the shipped weights share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipelines.resources import resource_path

FOLDER = ("models", "toy-world")  # under the resources


def is_bundled_model(path: str | Path) -> bool:
    """Whether ``path`` (a model picker's value; "" is the bundled default) is the bundled model."""
    if not str(path):
        return True
    try:
        return Path(path).expanduser().resolve() == resource_path(*FOLDER).resolve()
    except OSError:
        return False


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
