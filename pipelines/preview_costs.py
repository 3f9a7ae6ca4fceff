"""What the preview decoders cost for a loaded model, and how true the approximate map's colours
are: measured once, when the model loads, for "Auto" (:mod:`pipelines.preview_choice`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from pipelines.preview_choice import PreviewCosts
from pipelines.previews import PreviewDecoder
from pipelines.types import PreviewMode

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

PROBE_SIDE = 16  # latent pixels per side of the timed calls, at most (the native size if smaller)
_ERROR_IMAGES = 8
_ERROR_SIZE = 64


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call: Callable[[], object], device: torch.device) -> float:
    call()  # warm-up: first calls allocate and pick kernels
    _synchronize(device)
    started = time.perf_counter()
    call()
    _synchronize(device)
    return time.perf_counter() - started


def _unet_call(unet: UNet2DConditionModel, latents: torch.Tensor) -> Callable[[], object]:
    param = next(unet.parameters())
    batch = torch.cat([latents, latents])
    config = unet.config
    hidden = torch.zeros(2, 77, config.cross_attention_dim, device=param.device, dtype=param.dtype)
    extra = {}
    if config.addition_embed_type == "text_time":
        # SDXL: pooled text embeddings and six size/crop ids, as the pipeline passes them.
        ids = 6 * config.addition_time_embed_dim
        pooled = config.projection_class_embeddings_input_dim - ids
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(2, pooled, device=param.device, dtype=param.dtype),
            "time_ids": torch.zeros(2, 6, device=param.device, dtype=param.dtype),
        }
    timestep = torch.tensor(500.0, device=param.device)

    def call() -> object:
        return unet(batch, timestep, encoder_hidden_states=hidden, return_dict=False, **extra)

    return call


def _error_images(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    # Saturated discs on plain backgrounds: colours unlike the smooth fields the map was fitted on.
    colours = torch.rand(count, 2, 3, 1, 1, generator=generator) * 2 - 1
    centres = torch.rand(count, 2, 1, 1, generator=generator) * size
    radii = (torch.rand(count, 1, 1, generator=generator) * 0.25 + 0.15) * size
    grid = torch.arange(size, dtype=torch.float32)
    inside = (grid.view(1, size, 1) - centres[:, 0]) ** 2 + (
        grid.view(1, 1, size) - centres[:, 1]
    ) ** 2
    mask = (inside <= radii**2).float().unsqueeze(1)
    return colours[:, 0] * (1 - mask) + colours[:, 1] * mask


@torch.no_grad()
def approximate_error(previews: PreviewDecoder) -> float:
    """Mean absolute colour difference (0-255) between the approximate map and the VAE, per latent
    pixel, on images the map was not fitted on."""
    vae = previews.vae
    param = next(vae.parameters())
    images = _error_images(_ERROR_IMAGES, _ERROR_SIZE, torch.Generator().manual_seed(1))
    latents = vae.encode(images.to(param.device, param.dtype)).latent_dist.mean
    latents = latents * vae.config.scaling_factor
    decoded = vae.decode(latents / vae.config.scaling_factor).sample.float().clamp(-1, 1)
    factor = decoded.shape[-1] // latents.shape[-1]
    reference = torch.nn.functional.avg_pool2d(decoded, factor)
    weights = previews.linear.to(latents.device)
    approximate = latents.float().permute(0, 2, 3, 1) @ weights[:-1] + weights[-1]
    approximate = approximate.permute(0, 3, 1, 2).clamp(-1, 1)
    return float((approximate - reference).abs().mean()) * 127.5


@torch.no_grad()
def measure_costs(
    unet: UNet2DConditionModel,
    previews: PreviewDecoder,
    native_latent: tuple[int, int],
) -> PreviewCosts:
    """Time a guided step and each decoder at the model's native latent size (at most
    :data:`PROBE_SIDE` per side), and measure the approximate map's colour error."""
    param = next(unet.parameters())
    device = param.device
    height, width = (min(side, PROBE_SIDE) for side in native_latent)
    generator = torch.Generator().manual_seed(0)
    channels = unet.config.in_channels
    noise = torch.randn(1, channels, height, width, generator=generator)
    unet_input = noise.to(device, param.dtype)
    step = _timed(_unet_call(unet, unet_input), device)
    # An inpainting UNet takes the mask and masked picture beside the latents: decoders see only
    # the latents.
    latents = unet_input[:, : previews.vae.config.latent_channels]
    full = _timed(lambda: previews.decode(latents, PreviewMode.FULL), device)
    tiny = None
    if previews.tiny_vae is not None:
        tiny = _timed(lambda: previews.decode(latents, PreviewMode.TINY), device)
    approximate = _timed(lambda: previews.decode(latents, PreviewMode.APPROXIMATE), device)
    return PreviewCosts(
        latent_pixels=height * width,
        step=step,
        full=full,
        tiny=tiny,
        approximate=approximate,
        approximate_error=approximate_error(previews),
    )
