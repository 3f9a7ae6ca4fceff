"""Turn latents (the model's denoised estimate) into RGB previews.

Three decoders, from nearly free to exact: a linear latent -> RGB map fitted to the model's own VAE,
a tiny autoencoder (TAESD family) when its weights are present, and the full VAE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from pipelines.types import PreviewMode

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, AutoencoderTiny

MAX_PREVIEW_SIDE = 512
_FIT_IMAGES = 12
_FIT_SIZE = 64


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


def preview_size(latent_height: int, latent_width: int, scale_factor: int = 8) -> tuple[int, int]:
    height, width = latent_height * scale_factor, latent_width * scale_factor
    scale = min(1.0, MAX_PREVIEW_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _synthetic_images(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    # Smooth colour fields (low-frequency noise upsampled): like real images, colour varies slowly,
    # so the per-latent-pixel average colour is well defined.
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    return images.clamp(-1, 1)


@torch.no_grad()
def fit_linear_decoder(vae: AutoencoderKL, seed: int = 0) -> torch.Tensor:
    """Least-squares fit of RGB ≈ [latent, 1] @ W on VAE-encoded synthetic images; W is (C+1, 3)."""
    generator = torch.Generator().manual_seed(seed)
    images = _synthetic_images(_FIT_IMAGES, _FIT_SIZE, generator)
    param = next(vae.parameters())
    latents = vae.encode(images.to(param.device, param.dtype)).latent_dist.mean.float().cpu()
    # The model's latent space: SD 3.x and Flux VAEs shift before scaling (shift_factor).
    latents = (latents - _shift(vae)) * vae.config.scaling_factor
    factor = _FIT_SIZE // latents.shape[-1]
    targets = torch.nn.functional.avg_pool2d(images, factor)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    return torch.linalg.lstsq(x.double(), y.double()).solution.float()


class PreviewDecoder:
    """Decodes x0 latents (scaled as the UNet sees them) to uint8 RGB previews of bounded size."""

    def __init__(
        self, vae: AutoencoderKL, tiny_vae: AutoencoderTiny | None = None, upcast: bool = False
    ) -> None:
        self.vae = vae
        self.tiny_vae = tiny_vae
        self.upcast = upcast
        # Image pixels per latent pixel: each of the VAE's blocks but the last halves the size.
        self.scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._linear: torch.Tensor | None = None

    @property
    def linear(self) -> torch.Tensor:
        if self._linear is None:
            self._linear = fit_linear_decoder(self.vae)
        return self._linear

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, mode: PreviewMode) -> np.ndarray | None:
        if mode is PreviewMode.NONE:
            return None
        if mode is PreviewMode.TINY and self.tiny_vae is None:
            mode = PreviewMode.APPROXIMATE
        size = preview_size(latents.shape[-2], latents.shape[-1], self.scale_factor)
        if mode is PreviewMode.APPROXIMATE:
            weights = self.linear.to(latents.device)
            x = latents.float().permute(0, 2, 3, 1)
            rgb = (x @ weights[:-1] + weights[-1]).permute(0, 3, 1, 2)
            rgb = torch.nn.functional.interpolate(rgb, size=size, mode="bilinear")
            return to_uint8(rgb)[0]
        if mode is PreviewMode.TINY:
            param = next(self.tiny_vae.parameters())
            scale = getattr(self.tiny_vae.config, "scaling_factor", 1.0)
            latents = latents.to(param.device, param.dtype) / scale + _shift(self.tiny_vae)
            rgb = self.tiny_vae.decode(latents).sample
        else:
            rgb = decode_full(self.vae, latents, self.upcast)
        if tuple(rgb.shape[-2:]) != size:
            rgb = torch.nn.functional.interpolate(rgb.float(), size=size, mode="bilinear")
        return to_uint8(rgb)[0]


@torch.no_grad()
def decode_full(vae: AutoencoderKL, latents: torch.Tensor, upcast: bool = False) -> torch.Tensor:
    param = next(vae.parameters())
    # SDXL's VAE overflows in fp16; its config asks for fp32 decoding.
    wants_upcast = upcast and param.dtype == torch.float16 and vae.config.get("force_upcast", False)
    dtype = torch.float32 if wants_upcast else param.dtype
    if dtype != param.dtype:
        vae = vae.to(dtype)
    try:
        unscaled = latents.to(param.device, dtype) / vae.config.scaling_factor + _shift(vae)
        return vae.decode(unscaled).sample
    finally:
        if dtype != param.dtype:
            vae.to(param.dtype)


def to_pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb, "RGB")


def _shift(vae: AutoencoderKL | AutoencoderTiny) -> float:
    return float(getattr(vae.config, "shift_factor", None) or 0.0)
