"""Several samplers on one SD 3.x / Flux.1 request, one batched transformer call per step.

The flow pipelines' denoising loops, replicated for a batch of schedulers (as the comparison's UNet
lockstep does for SD 1.x): each track gets the timesteps its pipeline would give it (Flux: its
noise levels and the size-dependent shift), the same prompt encoding and starting noise, and its
own scheduler step. The transformer sees ``[uncond x n, cond x n]`` for SD 3.x with guidance, and
``n`` packed sequences with the distilled guidance for Flux.1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipelines import flow
from pipelines.denoised import denoised_estimate
from pipelines.lockstep_parts import LockstepLoop, column_predictions, column_preview
from pipelines.previews import final_preview
from pipelines.types import ModelFamily, StepPreview


def capable(spec: Any, steps: int, base_config: Any) -> bool:
    """True when the flow sampler evaluates the model exactly once per step at this count."""
    return spec.evaluations_per_step == 1 and spec.total_evaluations(steps, base_config) == steps


@dataclass
class _Track:
    position: int
    run: Any  # PreparedRun
    column: Any  # CompareColumn
    scheduler: Any
    latents: torch.Tensor
    elapsed: float = 0.0


class FlowLockstep(LockstepLoop):
    @property
    def flux(self) -> bool:
        return self.shared.model.family is ModelFamily.FLUX

    def run(self) -> None:
        inputs = self._encode(len(self.runs))
        tracks = [self._track(position) for position in range(len(self.runs))]
        for column in self.columns:
            column.lockstep = True
        started = time.perf_counter()
        for i in range(self.steps):
            if self._cancelled():
                return
            predictions = self._predict(tracks, i, inputs)
            for track, prediction in zip(tracks, predictions, strict=True):
                self._step(track, i, prediction, time.perf_counter() - started)
        if self._cancelled():
            return
        for track in tracks:
            self._finish(track)

    # ---- as the pipelines prepare their inputs -------------------------------------------------
    def _encode(self, count: int) -> dict[str, Any]:
        pipe, request = self.pipe, self.request
        if self.flux:
            embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=request.prompt, prompt_2=None, device=self.device, max_sequence_length=512
            )
            height = 2 * (request.height // (pipe.vae_scale_factor * 2))
            width = 2 * (request.width // (pipe.vae_scale_factor * 2))
            image_ids = pipe._prepare_latent_image_ids(
                1, height // 2, width // 2, self.device, embeds.dtype
            )
            guidance = None
            if pipe.transformer.config.guidance_embeds:
                guidance = torch.full([count], request.cfg_scale, device=self.device,
                                      dtype=torch.float32)  # fmt: skip
            return dict(
                encoder_hidden_states=embeds.repeat(count, 1, 1),
                pooled_projections=pooled.repeat(count, 1),
                txt_ids=text_ids,
                img_ids=image_ids,
                guidance=guidance,
            )
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=request.prompt, prompt_2=None, prompt_3=None,
            negative_prompt=request.negative_prompt or None,
            do_classifier_free_guidance=self.guided, device=self.device,
        )  # fmt: skip
        if self.guided:
            return dict(
                encoder_hidden_states=torch.cat([negative] * count + [embeds] * count),
                pooled_projections=torch.cat([negative_pooled] * count + [pooled] * count),
            )
        return dict(
            encoder_hidden_states=torch.cat([embeds] * count),
            pooled_projections=torch.cat([pooled] * count),
        )

    def _track(self, position: int) -> _Track:
        run = self.runs[position]
        scheduler = run.new_scheduler()
        latents = run.initial_noise.to(self.device, run.dtype)
        if self.flux:
            from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

            latents = flow.pack(latents)
            config = scheduler.config
            mu = calculate_shift(
                latents.shape[1],
                config.get("base_image_seq_len", 256),
                config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5),
                config.get("max_shift", 1.15),
            )
            sigmas = None
            if not config.get("use_flow_sigmas", False):
                sigmas = np.linspace(1.0, 1 / self.steps, self.steps)
            retrieve_timesteps(scheduler, self.steps, self.device, sigmas=sigmas, mu=mu)
            scheduler.set_begin_index(0)
        else:
            scheduler.set_timesteps(self.steps, device=self.device)
        return _Track(position, run, self.columns[position], scheduler, latents)

    # ---- one step ------------------------------------------------------------------------------
    def _predict(self, tracks: list[_Track], i: int, inputs: dict[str, Any]) -> list[torch.Tensor]:
        copies = 2 if self.guided else 1
        hidden = torch.cat([t.latents for t in tracks] * copies)
        timesteps = torch.stack([t.scheduler.timesteps[i] for t in tracks] * copies)
        timesteps = timesteps.to(hidden.device, hidden.dtype if self.flux else timesteps.dtype)
        if self.flux:  # the Flux pipeline hands its transformer t / 1000
            timesteps = timesteps / 1000
        output = self.pipe.transformer(
            hidden_states=hidden, timestep=timesteps, return_dict=False, **inputs
        )[0]
        return column_predictions(output, len(tracks), self.guided, self.request.cfg_scale)

    def _step(self, track: _Track, i: int, prediction: torch.Tensor, elapsed: float) -> None:
        scheduler = track.scheduler
        sample = track.latents
        timestep = scheduler.timesteps[i]
        output = scheduler.step(prediction, timestep, sample, return_dict=False)
        track.latents = output[0].to(sample.dtype)
        track.elapsed = elapsed
        if i == self.steps - 1:
            return  # the last step shows the decoded final image (_finish)
        denoised = denoised_estimate(scheduler, prediction, timestep, sample, None, output)
        run = track.run
        image = run.model.previews.decode(flow.spatial(denoised, run.request), run.request.preview)
        self.on_step(track.position, self._preview(track, i + 1, image))

    def _preview(self, track: _Track, step: int, image: np.ndarray | None) -> StepPreview:
        return column_preview(track.run.request.sampler, step, self.steps, image, track.elapsed)

    def _finish(self, track: _Track) -> None:
        column = track.column
        latents = flow.spatial(track.latents, track.run.request)
        column.latents = latents.detach().float().cpu()
        vae = self.pipe.vae
        shift = vae.config.get("shift_factor") or 0.0
        decoded = vae.decode(latents / vae.config.scaling_factor + shift, return_dict=False)[0]
        column.image = self.pipe.image_processor.postprocess(decoded, output_type="pil")[0]
        self.on_step(track.position, self._preview(track, self.steps, final_preview(column.image)))
