"""The high-resolution pass ("hires fix"): draw at the model's size, enlarge, rework at the size.

A model draws well only near the size it was trained at; drawn larger it repeats itself. The pass
draws at the request's size, enlarges the picture (Lanczos, the latents, or an upscaler model) and
runs image-to-image at the enlarged size with its own steps and strength, which adds the detail
the enlargement could not invent. Both passes stream previews on one step counter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import torch
from PIL import Image

from pipelines import rework
from pipelines.previews import decode_full, to_uint8
from pipelines.types import (
    HIRES_RESAMPLERS,
    EngineSettings,
    GenerationRequest,
    GenerationResult,
    HiresPass,
    ImageInput,
    ModelFamily,
    StepPreview,
    hires_size,
)
from pipelines.upscalers import resolve_upscaler, upscale_with_model

StepCallback = Callable[[StepPreview], None]
# The run's prepared inputs: an ``engine.PreparedRun``, named loosely because the engine imports
# this module.
Prepared = Any


class Runner(Protocol):
    """What the pass needs of the engine."""

    device: torch.device
    settings: EngineSettings

    def execute(
        self,
        prepared: Prepared,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
        wants_preview: Callable[[], bool] | None = None,
    ) -> GenerationResult: ...

    def initial_noise(
        self, request: GenerationRequest, channels: int = 4, scale_factor: int | None = None
    ) -> torch.Tensor: ...


# Past this many pixels the VAE decodes in tiles: a 2048x2048 decode then fits a 12 GB GPU.
TILED_VAE_PIXELS = 1024 * 1024


def hires_steps(hires: HiresPass, steps: int) -> int:
    """The steps the hires pass spends: its strength's share of its own step count."""
    return rework.run_steps(hires.strength, hires.steps or steps)


def run_hires(
    engine: Runner,
    prepared: Prepared,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    wants_preview: Callable[[], bool] | None,
) -> GenerationResult:
    request = prepared.request
    hires = request.hires
    assert hires is not None
    if hires.upscaler not in HIRES_RESAMPLERS:  # a missing file is told before the first pass
        resolve_upscaler(hires.upscaler, engine.settings.model_folders)
    started = time.perf_counter()
    first_run = replace(prepared, request=replace(request, hires=None))
    first_steps = first_run.total_steps
    total = first_steps + hires_steps(hires, request.steps)

    def counted(offset: int) -> StepCallback | None:
        if on_step is None:
            return None
        return lambda p: on_step(replace(p, step=p.step + offset, total=total))

    first = engine.execute(first_run, counted(0), cancel, wants_preview)
    if first.cancelled:
        return replace(first, request=request)
    second_run = _second_pass(engine, prepared, first)
    second = engine.execute(second_run, counted(first_steps), cancel, wants_preview)
    timings = {f"first_{k}": v for k, v in first.timings.items()}
    timings.update({f"hires_{k}": v for k, v in second.timings.items()})
    timings["total"] = time.perf_counter() - started
    return replace(second, request=request, timings=timings, condition_maps=first.condition_maps,
                   warnings=first.warnings)  # fmt: skip


def _second_pass(engine: Runner, prepared: Prepared, first: GenerationResult) -> Prepared:
    request, model = prepared.request, prepared.model
    hires = request.hires
    assert hires is not None and first.image is not None and request.seed is not None
    width = hires_size(first.image.width, hires.scale)
    height = hires_size(first.image.height, hires.scale)
    enlarged = enlarge(engine, prepared, first, (width, height))
    source = ImageInput(image="", strength=hires.strength)
    plan = rework.plan_rework(source, enlarged, None, width, height, request.seed)
    memory = request.memory
    if width * height > TILED_VAE_PIXELS:
        memory = replace(memory, vae_tiling=True)
    second = replace(request, width=width, height=height, steps=hires.steps or request.steps,
                     source=None, hires=None, memory=memory)  # fmt: skip
    pipe = rework.inpainting_pipeline(prepared.pipeline, model.family)
    noise = engine.initial_noise(second, pipe.vae.config.latent_channels, model.scale_factor)
    maps = tuple(m.resize((width, height), Image.Resampling.LANCZOS)
                 for m in prepared.condition_maps)  # fmt: skip
    return replace(prepared, request=second, pipeline=pipe, initial_noise=noise, rework=plan,
                   condition_maps=maps)  # fmt: skip


def enlarge(
    engine: Runner, prepared: Prepared, first: GenerationResult, size: tuple[int, int]
) -> Image.Image:
    """The first pass's picture at ``size`` by the request's upscaler."""
    hires = prepared.request.hires
    assert hires is not None and first.image is not None
    if hires.upscaler == "lanczos":
        return first.image.resize(size, Image.Resampling.LANCZOS)
    if hires.upscaler == "latent" and first.latents is not None and prepared.rework is None:
        return _latent_enlarge(prepared, first.latents, size)
    if hires.upscaler == "latent":  # an inpainted picture's latents cover only the run
        return first.image.resize(size, Image.Resampling.BICUBIC)
    path = resolve_upscaler(hires.upscaler, engine.settings.model_folders)
    return upscale_with_model(first.image, path, size, engine.device,
                              engine.settings.allow_pickle)  # fmt: skip


@torch.inference_mode()
def _latent_enlarge(
    prepared: Prepared, latents: torch.Tensor, size: tuple[int, int]
) -> Image.Image:
    """The final latents enlarged (bilinear, as the "latent" upscalers of other tools do) and
    decoded: the rework then starts from the enlarged latents' picture."""
    scale = prepared.model.scale_factor
    grown = torch.nn.functional.interpolate(
        latents, size=(size[1] // scale, size[0] // scale), mode="bilinear", antialias=False
    )
    vae = prepared.pipeline.vae
    if prepared.request.memory.vae_tiling or size[0] * size[1] > TILED_VAE_PIXELS:
        vae.enable_tiling()
    decoded = decode_full(vae, grown, upcast=prepared.model.family is ModelFamily.SDXL)
    return Image.fromarray(to_uint8(decoded)[0])
