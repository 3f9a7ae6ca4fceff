"""The samplers users know by name, mapped to diffusers schedulers and their config overrides.

Every scheduler is built with ``from_config(base_config, **overrides)`` from the loaded model's own
scheduler config, so the model's training schedule (betas, prediction type) is kept.

The registry itself is plain data: the window fills its sampler list from it at start, and
importing diffusers (1.5 s or more, most of it torch's compiler stack) waits until a scheduler is
built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import ValidationError


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler: str  # class name in diffusers
    overrides: dict[str, Any] = field(default_factory=dict)
    # Used where the model's scheduler config does not set them (its own choice wins).
    defaults: dict[str, Any] = field(default_factory=dict)
    evaluations_per_step: int = 1  # model evaluations (UNet calls) per step, per sample
    stochastic: bool = False  # adds fresh noise each step: needs a seeded generator
    description: str = ""

    def make(self, base_config: Any, seed: int | None = None) -> Any:
        import diffusers

        cls = getattr(diffusers, self.scheduler)
        overrides = {k: v for k, v in self.defaults.items() if k not in base_config}
        overrides.update(self.overrides)
        if self.scheduler == "DPMSolverSDEScheduler" and seed is not None:
            # Its Brownian tree otherwise draws its own seed, which breaks reproducibility.
            overrides["noise_sampler_seed"] = seed
        return cls.from_config(base_config, **overrides)

    def total_evaluations(self, steps: int, base_config: Any) -> int:
        # Counted from the real schedule: second-order samplers skip the extra evaluation on the
        # final step, PLMS spends one extra evaluation warming up.
        scheduler = self.make(base_config)
        scheduler.set_timesteps(steps)
        return len(scheduler.timesteps)


_KARRAS = {"use_karras_sigmas": True}
# DDIM and DDPM clip their estimate of the clean sample to [-1, 1] unless told not to: right for
# pixels, ruinous for latents, which spread wider (a config saved by another scheduler class,
# as the bundled model's Euler one, does not say).
_NO_CLIPPING = {"clip_sample": False}
_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}

SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec(
            "Euler", "EulerDiscreteScheduler", description="Fast and predictable; good default."
        ),
        SamplerSpec(
            "Euler a",
            "EulerAncestralDiscreteScheduler",
            stochastic=True,
            description="Adds noise every step: varied, never fully converges.",
        ),
        SamplerSpec(
            "Heun",
            "HeunDiscreteScheduler",
            evaluations_per_step=2,
            description="Second order: more accurate per step, twice the cost.",
        ),
        SamplerSpec(
            "DPM2",
            "KDPM2DiscreteScheduler",
            evaluations_per_step=2,
            description="Second-order DPM solver; twice the cost per step.",
        ),
        SamplerSpec(
            "DPM2 a",
            "KDPM2AncestralDiscreteScheduler",
            evaluations_per_step=2,
            stochastic=True,
            description="Ancestral DPM2: second order with fresh noise each step.",
        ),
        SamplerSpec(
            "DPM++ 2M",
            "DPMSolverMultistepScheduler",
            _DPMPP,
            description="Multistep solver: sharp results in 20-30 steps.",
        ),
        SamplerSpec(
            "DPM++ 2M Karras",
            "DPMSolverMultistepScheduler",
            {**_DPMPP, **_KARRAS},
            description="DPM++ 2M with Karras noise levels: a popular all-rounder.",
        ),
        SamplerSpec(
            "DPM++ 2M SDE",
            "DPMSolverMultistepScheduler",
            _DPMPP_SDE,
            stochastic=True,
            description="Stochastic DPM++ 2M: more detail, varies with the seed.",
        ),
        SamplerSpec(
            "DPM++ 2M SDE Karras",
            "DPMSolverMultistepScheduler",
            {**_DPMPP_SDE, **_KARRAS},
            stochastic=True,
            description="DPM++ 2M SDE with Karras noise levels.",
        ),
        SamplerSpec(
            "DPM++ SDE",
            "DPMSolverSDEScheduler",
            _KARRAS,
            evaluations_per_step=2,
            stochastic=True,
            description="Second-order stochastic solver (Karras levels); slow, detailed.",
        ),
        SamplerSpec(
            "UniPC",
            "UniPCMultistepScheduler",
            description="Predictor-corrector; good images in very few steps.",
        ),
        SamplerSpec("LMS", "LMSDiscreteScheduler", description="Linear multistep (k-diffusion)."),
        SamplerSpec(
            "DDIM",
            "DDIMScheduler",
            defaults=_NO_CLIPPING,
            description="Deterministic classic; fine for 30-50 steps.",
        ),
        SamplerSpec(
            "PNDM", "PNDMScheduler", {"skip_prk_steps": True}, description="Pseudo numerical."
        ),
        SamplerSpec(
            "DDPM",
            "DDPMScheduler",
            defaults=_NO_CLIPPING,
            stochastic=True,
            description="The training sampler: needs many steps (100+).",
        ),
    )
}

DEFAULT_SAMPLER = "Euler"


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        known = ", ".join(SAMPLERS)
        raise ValidationError(f"Unknown sampler {name!r}. Known samplers: {known}.") from None
