"""Samplers for rectified-flow models (SD 3.x, Flux.1) under the names users know.

A flow model's scheduler config is a FlowMatchEulerDiscreteScheduler's: its ``shift`` (or, with
``use_dynamic_shifting``, a shift the pipeline computes from the image size) bends the noise levels
toward the noisy end. Every sampler here keeps that schedule: the multistep solvers run on flow
sigmas with the same shift and predict a velocity ("flow_prediction").
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import diffusers

from pipelines.errors import ValidationError
from pipelines.samplers import SamplerSpec, get_sampler, sampler_names
from pipelines.types import ModelFamily

_BOTH = frozenset({ModelFamily.SD3, ModelFamily.FLUX})


@dataclass(frozen=True)
class FlowSamplerSpec(SamplerSpec):
    families: frozenset[ModelFamily] = field(default=_BOTH)
    solver: bool = False  # a multistep solver on flow sigmas, configured from the model's shift
    # Flux's pipeline always hands the scheduler a size-dependent shift; DPM++ accepts one only
    # when it shifts dynamically itself, which a fixed-shift model (schnell) does not.
    needs_dynamic_shift_on_flux: bool = False

    def runs(self, family: ModelFamily, base_config: Any = None) -> bool:
        if family not in self.families:
            return False
        if family is ModelFamily.FLUX and self.needs_dynamic_shift_on_flux and base_config:
            return bool(base_config.get("use_dynamic_shifting", False))
        return True

    def make(self, base_config: Any, seed: int | None = None) -> Any:
        cls = getattr(diffusers, self.scheduler)
        overrides = dict(self.overrides)
        if self.solver:
            overrides.update(
                use_flow_sigmas=True,
                prediction_type="flow_prediction",
                flow_shift=float(base_config.get("shift", 1.0)),
                use_dynamic_shifting=bool(base_config.get("use_dynamic_shifting", False)),
                time_shift_type=base_config.get("time_shift_type", "exponential"),
            )
        return cls.from_config(base_config, **overrides)

    def total_evaluations(self, steps: int, base_config: Any) -> int:
        scheduler = self.make(base_config)
        accepts_shift = "mu" in inspect.signature(scheduler.set_timesteps).parameters
        # A dynamically shifting schedule needs a shift to be built; its length does not depend
        # on which.
        dynamic = scheduler.config.get("use_dynamic_shifting", False) and accepts_shift
        scheduler.set_timesteps(steps, **({"mu": 0.0} if dynamic else {}))
        return len(scheduler.timesteps)


FLOW_SAMPLERS: dict[str, FlowSamplerSpec] = {
    spec.name: spec
    for spec in (
        FlowSamplerSpec(
            "Euler",
            "FlowMatchEulerDiscreteScheduler",
            description="Follows the predicted velocity: the models' own sampler.",
        ),
        FlowSamplerSpec(
            "Heun",
            "FlowMatchHeunDiscreteScheduler",
            evaluations_per_step=2,
            # Flux's pipeline hands the scheduler its own noise levels, which Heun cannot take.
            families=frozenset({ModelFamily.SD3}),
            description="Second order: more accurate per step, twice the cost.",
        ),
        FlowSamplerSpec(
            "DPM++ 2M",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2},
            solver=True,
            needs_dynamic_shift_on_flux=True,
            description="Multistep solver on the flow schedule: sharp in fewer steps.",
        ),
        FlowSamplerSpec(
            "UniPC",
            "UniPCMultistepScheduler",
            solver=True,
            description="Predictor-corrector on the flow schedule; good in very few steps.",
        ),
    )
}


def flow_sampler_names(family: ModelFamily, base_config: Any = None) -> list[str]:
    return [name for name, spec in FLOW_SAMPLERS.items() if spec.runs(family, base_config)]


def flow_sampler(name: str, family: ModelFamily, base_config: Any = None) -> FlowSamplerSpec:
    spec = FLOW_SAMPLERS.get(name)
    if spec is None or not spec.runs(family, base_config):
        valid = ", ".join(flow_sampler_names(family, base_config))
        raise ValidationError(
            f"The sampler {name!r} cannot run this {family.label} model. Choose one of: {valid}."
        )
    return spec


def sampler_names_for(family: ModelFamily | None, base_config: Any = None) -> list[str]:
    """The samplers a family (with this scheduler config, when given) can run; every UNet
    sampler when the family is not known."""
    if family is not None and family.is_flow:
        return flow_sampler_names(family, base_config)
    return sampler_names()


def sampler_for(name: str, family: ModelFamily | None, base_config: Any = None) -> SamplerSpec:
    """The sampler ``name`` as a model of ``family`` runs it; a clear error when it cannot."""
    if family is not None and family.is_flow:
        return flow_sampler(name, family, base_config)
    return get_sampler(name)
