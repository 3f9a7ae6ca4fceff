"""Turn latents (the model's denoised estimate) into RGB previews.

Three decoders, from nearly free to exact: a linear latent -> RGB map fitted to the model's own VAE,
a tiny autoencoder (TAESD family) when its weights are present, and the full VAE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from pipelines.preview_choice import PreviewCosts, PreviewPlan, choose_plan
from pipelines.types import PreviewMode

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, AutoencoderTiny

MAX_PREVIEW_SIDE = 512
_FIT_IMAGES = 12
_FIT_SIZE = 64


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8, in host memory."""
    return _pixels(images).cpu().numpy()


def _pixels(images: torch.Tensor) -> torch.Tensor:
    # On the images' own device: the copy to the host is the caller's (see PendingFrame).
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1)


class PendingFrame:
    """A decoded preview on its way to host memory.

    On CUDA the decode runs on a side stream and the pixels are copied into pinned host memory
    without waiting; :meth:`ready` asks (without blocking) whether the copy is complete, so the
    step loop hands the frame on at a later step instead of stalling the GPU's queue. Elsewhere
    the pixels are in host memory already and the frame is ready at once.
    """

    def __init__(self, pixels: torch.Tensor, done: Any | None = None) -> None:
        self.pixels = pixels  # (H, W, 3) uint8, host memory
        self.done = done  # torch.cuda.Event recorded after the copy, or None

    def ready(self) -> bool:
        return self.done is None or bool(self.done.query())

    def array(self) -> np.ndarray:
        if self.done is not None:
            self.done.synchronize()
        return self.pixels.numpy()


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
        self.costs: PreviewCosts | None = None  # measured when the model loads (Auto's choice)
        self._linear_on: dict[torch.device, torch.Tensor] = {}  # the map's weights per device
        self._stream: Any | None = None  # CUDA: the side stream previews are decoded on

    @property
    def linear(self) -> torch.Tensor:
        if self._linear is None:
            self._linear = fit_linear_decoder(self.vae)
        return self._linear

    def plan(self, mode: PreviewMode, latent_pixels: int, every_step: bool = False) -> PreviewPlan:
        """The decoder (and stride) a run of ``latent_pixels`` uses for the requested ``mode``."""
        if mode is not PreviewMode.AUTO:
            return PreviewPlan(mode)
        if self.costs is None:
            return PreviewPlan(PreviewMode.APPROXIMATE)
        return choose_plan(self.costs.at(latent_pixels), every_step)

    def _weights_on(self, device: torch.device) -> torch.Tensor:
        # Kept on the device: a copy per step would make the host wait for the GPU each time.
        if device not in self._linear_on:
            self._linear_on[device] = self.linear.to(device)
        return self._linear_on[device]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, mode: PreviewMode) -> np.ndarray | None:
        frame = self.decode_async(latents, mode)
        return None if frame is None else frame.array()

    @torch.no_grad()
    def decode_async(self, latents: torch.Tensor, mode: PreviewMode) -> PendingFrame | None:
        """Start decoding ``latents``; the frame is ready at once except on CUDA (see
        :class:`PendingFrame`)."""
        if mode is PreviewMode.AUTO:
            mode = self.plan(mode, latents.shape[-2] * latents.shape[-1]).mode
        if mode is PreviewMode.NONE:
            return None
        with self._side_stream(latents):
            pixels = self._decode_pixels(latents, mode)
            return _to_host(pixels)

    def _decode_pixels(self, latents: torch.Tensor, mode: PreviewMode) -> torch.Tensor:
        if mode is PreviewMode.TINY and self.tiny_vae is None:
            mode = PreviewMode.APPROXIMATE
        size = preview_size(latents.shape[-2], latents.shape[-1], self.scale_factor)
        if mode is PreviewMode.APPROXIMATE:
            weights = self._weights_on(latents.device)
            x = latents.float().permute(0, 2, 3, 1)
            rgb = (x @ weights[:-1] + weights[-1]).permute(0, 3, 1, 2)
            rgb = torch.nn.functional.interpolate(rgb, size=size, mode="bilinear")
            return _pixels(rgb)[0]
        if mode is PreviewMode.TINY:
            param = next(self.tiny_vae.parameters())
            scale = getattr(self.tiny_vae.config, "scaling_factor", 1.0)
            latents = latents.to(param.device, param.dtype) / scale + _shift(self.tiny_vae)
            rgb = self.tiny_vae.decode(latents).sample
        else:
            rgb = decode_full(self.vae, latents, self.upcast)
        if tuple(rgb.shape[-2:]) != size:
            rgb = torch.nn.functional.interpolate(rgb.float(), size=size, mode="bilinear")
        return _pixels(rgb)[0]

    @contextlib.contextmanager
    def _side_stream(self, latents: torch.Tensor) -> Iterator[None]:
        """CUDA: run the block on a stream of its own that starts once the latents are computed,
        so the denoising stream is never held up by a preview."""
        if latents.device.type != "cuda":
            yield
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream(latents.device)
        self._stream.wait_stream(torch.cuda.current_stream(latents.device))
        latents.record_stream(self._stream)  # not reused by the allocator before the decode ends
        with torch.cuda.stream(self._stream):
            yield


def _to_host(pixels: torch.Tensor) -> PendingFrame:
    if pixels.device.type != "cuda":
        return PendingFrame(pixels.contiguous())
    host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(pixels, non_blocking=True)
    done = torch.cuda.Event()
    done.record()  # on the current (side) stream, after the copy
    return PendingFrame(host, done)


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


def final_preview(image: Image.Image) -> np.ndarray:
    """The run's final image as its last step's preview: RGB uint8, at most the preview size."""
    width, height = image.size
    scale = min(1.0, MAX_PREVIEW_SIDE / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def to_pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb, "RGB")


def _shift(vae: AutoencoderKL | AutoencoderTiny) -> float:
    return float(getattr(vae.config, "shift_factor", None) or 0.0)
