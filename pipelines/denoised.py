"""The model's denoised estimate (x0) at a scheduler step, for any of the registry's schedulers.

Most schedulers report it as ``pred_original_sample``; the multistep solvers (DPM++, UniPC) and PNDM
do not, so it is computed from the model output and the noise level of the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import SchedulerMixin


def noise_level(
    scheduler: SchedulerMixin, timestep: torch.Tensor | float, step_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) with x_t = alpha_t * x0 + sigma_t * noise, in the scheduler's sample space."""
    if step_index is not None and hasattr(scheduler, "_sigma_to_alpha_sigma_t"):
        return scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[step_index])
    alphas_cumprod = scheduler.alphas_cumprod
    index = int(torch.as_tensor(timestep).round().long().clamp(0, len(alphas_cumprod) - 1))
    alpha_prod = alphas_cumprod[index]
    return alpha_prod.sqrt(), (1 - alpha_prod).sqrt()


def denoised_estimate(
    scheduler: SchedulerMixin,
    model_output: torch.Tensor,
    timestep: torch.Tensor | float,
    sample: torch.Tensor,
    step_index: int | None,
    output: Any,  # the scheduler's step output: a dataclass, or a tuple with return_dict=False
) -> torch.Tensor:
    predicted = getattr(output, "pred_original_sample", None)
    if predicted is not None:
        return predicted
    if _predicts_velocity(scheduler):
        # Rectified flow: x_t = (1 - σ)·x0 + σ·noise and v = noise - x0, so x0 = x_t - σ·v. The
        # step has just moved the scheduler on by one index, past the σ of this evaluation.
        sigma = scheduler.sigmas[scheduler.step_index - 1].to(sample.device, torch.float32)
        return sample.float() - sigma * model_output.float()
    alpha_t, sigma_t = noise_level(scheduler, timestep, step_index)
    alpha_t = alpha_t.to(sample.device, torch.float32)
    sigma_t = sigma_t.to(sample.device, torch.float32)
    sample, model_output = sample.float(), model_output.float()
    prediction = scheduler.config.prediction_type
    if prediction == "epsilon":
        return (sample - sigma_t * model_output) / alpha_t
    if prediction == "v_prediction":
        return alpha_t * sample - sigma_t * model_output
    return model_output  # "sample": the model predicts x0 itself


def _predicts_velocity(scheduler: SchedulerMixin) -> bool:
    name = type(scheduler).__name__
    return (
        name.startswith("FlowMatch") or scheduler.config.get("prediction_type") == "flow_prediction"
    )
