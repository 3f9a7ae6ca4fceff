"""The model's denoised estimate (x0) at a scheduler step, for any of the registry's schedulers.

Most schedulers report it as ``pred_original_sample``; the multistep solvers (DPM++, UniPC) and PNDM
do not, so it is computed from the model output and the noise level of the step. The
``timestep`` must be the host's (:meth:`pipelines.schedules.SyncFreeSchedule.host_timestep`) for
schedulers without noise levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import SchedulerMixin


def noise_level(
    scheduler: SchedulerMixin, timestep: torch.Tensor | float, step_index: int | None
) -> tuple[float, float]:
    """(alpha_t, sigma_t) with x_t = alpha_t * x0 + sigma_t * noise, in the scheduler's sample space.

    Read from the scheduler's tables on the host (its ``sigmas``, or ``alphas_cumprod`` at a host
    ``timestep``): as Python numbers they enter the arithmetic on the device without a copy, where
    a tensor moved there every step would make the host wait for the GPU.
    """
    if step_index is not None and hasattr(scheduler, "_sigma_to_alpha_sigma_t"):
        alpha_t, sigma_t = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[step_index])
        return float(alpha_t), float(sigma_t)
    alphas_cumprod = scheduler.alphas_cumprod
    index = int(torch.as_tensor(timestep).round().long().clamp(0, len(alphas_cumprod) - 1))
    alpha_prod = float(alphas_cumprod[index])
    return alpha_prod**0.5, (1 - alpha_prod) ** 0.5


def denoised_estimate(
    scheduler: SchedulerMixin,
    model_output: torch.Tensor,
    timestep: torch.Tensor | float,
    sample: torch.Tensor,
    step_index: int | None,
    output: Any,  # the scheduler's step output: a dataclass, or a tuple with return_dict=False
) -> torch.Tensor:
    predicted = getattr(output, "pred_original_sample", None)
    if isinstance(output, tuple) and len(output) > 1:
        # return_dict=False (how the pipelines call step): (prev_sample, pred_original_sample).
        predicted = output[1]
    if predicted is not None:
        return predicted
    if _predicts_velocity(scheduler):
        # Rectified flow: x_t = (1 - σ)·x0 + σ·noise and v = noise - x0, so x0 = x_t - σ·v. The
        # step has just moved the scheduler on by one index, past the σ of this evaluation.
        sigma = scheduler.sigmas[scheduler.step_index - 1].to(sample.device, torch.float32)
        return sample.float() - sigma * model_output.float()
    alpha_t, sigma_t = noise_level(scheduler, timestep, step_index)
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
