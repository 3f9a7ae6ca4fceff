"""Reworking a picture: image-to-image, inpainting and outpainting on the loaded model.

Every reworking run goes through diffusers' inpainting pipelines (plain, ControlNet, SD 1.x and
SDXL), assembled from the components the engine already holds: image-to-image is inpainting with
the whole picture masked. Those pipelines blend the known latents back at every step for ordinary
4-channel UNets and feed the mask to 9-channel inpainting UNets. Two things are added here:

* the run starts from the engine's seeded noise (:class:`PreparedRun.initial_noise`), so that a
  reworking run at strength 1 is exactly the text-to-image run of the same seed and sampler, and
  the sampler's noise stream is the one text-to-image uses;
* the picture is prepared (fitted, outpainted, masked content, a crop around the mask) before the
  run, and the result is pasted back into the input after decoding, so pixels outside the blurred
  mask are the input's, bit for bit.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter

from pipelines.conditions import fit_to_size, load_image
from pipelines.outpaint import extend_canvas
from pipelines.previews import preview_size
from pipelines.types import (  # run_steps is re-exported: the hires pass counts with it
    GenerationRequest,
    ImageInput,
    InpaintArea,
    MaskedContent,
    ModelFamily,
    run_steps,
)

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

Box = tuple[int, int, int, int]  # left, top, right, bottom in canvas pixels

# Radii (px) of the normalised blurs that fill a masked area from its surroundings, coarse to fine.
_FILL_RADII = (128, 32, 8, 2)


def pipeline_strength(strength: float, steps: int) -> float:
    """The strength that makes diffusers spend exactly :func:`run_steps` steps: it takes
    ``int(steps * strength)``, so the count is passed half a step up (floating error cannot then
    round it down). All the steps means starting from pure noise, as text-to-image does."""
    count = run_steps(strength, steps)
    return 1.0 if count == steps else (count + 0.5) / steps


# ---------------------------------------------------------------------------------------------
# The picture and its mask


@dataclass(frozen=True)
class ReworkPlan:
    """What a reworking run receives and how its result goes back into the picture."""

    source: ImageInput
    canvas: Image.Image  # RGB: the fitted (and outpainted) input, what the result is pasted into
    blend: Image.Image | None  # L, canvas size: the blurred mask (255 = repaint); None: img2img
    box: Box | None  # the region the run renders at full size (InpaintArea.MASKED)
    run_image: Image.Image  # RGB at the run size: the canvas (or its box) with masked content
    run_mask: Image.Image  # L at the run size, white = repaint

    @property
    def run_size(self) -> tuple[int, int]:
        return self.run_image.size

    def steps(self, steps: int) -> int:
        return run_steps(self.source.strength, steps)

    def call_arguments(self, kwargs: dict[str, Any], *, controlnet: bool) -> dict[str, Any]:
        """The inpainting pipeline's arguments from the text-to-image ones."""
        kwargs = dict(kwargs)
        width, height = self.run_size
        if controlnet:
            maps = kwargs.pop("image")
            kwargs["control_image"] = (
                [self.crop_map(m) for m in maps] if isinstance(maps, list) else self.crop_map(maps)
            )
        kwargs.update(
            image=self.run_image,
            mask_image=self.run_mask,
            strength=pipeline_strength(self.source.strength, kwargs["num_inference_steps"]),
            width=width,
            height=height,
        )
        return kwargs

    def crop_map(self, condition: Image.Image) -> Image.Image:
        """A condition map drawn for the canvas, cut to the region the run renders."""
        if self.box is None:
            return condition
        return condition.crop(self.box).resize(self.run_size, Image.Resampling.LANCZOS)

    def finish(self, image: Image.Image) -> Image.Image:
        """The run's output placed into the picture: outside the blurred mask the input's pixels."""
        if self.blend is None:
            return image
        generated = self.canvas.copy()
        if self.box is None:
            generated = image.convert("RGB")
        else:
            size = (self.box[2] - self.box[0], self.box[3] - self.box[1])
            generated.paste(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), self.box)
        return composite(generated, self.canvas, self.blend)

    def compose_preview(self, preview: np.ndarray) -> np.ndarray:
        """A step's estimate of the run shown in the whole picture, kept pixels around it, at
        the preview size of the picture (at most 512 px a side)."""
        if self.blend is None:
            return preview
        canvas, blend = self._preview_layers
        estimate = Image.fromarray(preview)
        if self.box is None:
            generated = estimate.resize(canvas.size, Image.Resampling.BILINEAR)
        else:
            scale = canvas.width / self.canvas.width
            box = tuple(round(v * scale) for v in self.box)
            size = (max(1, box[2] - box[0]), max(1, box[3] - box[1]))
            generated = canvas.copy()
            generated.paste(estimate.resize(size, Image.Resampling.BILINEAR), box[:2])
        return np.asarray(composite(generated, canvas, blend))

    @functools.cached_property
    def _preview_layers(self) -> tuple[Image.Image, Image.Image]:
        # The picture and its mask at the preview size, made once for all the steps of a run.
        assert self.blend is not None
        height, width = preview_size(self.canvas.height, self.canvas.width, 1)
        if (width, height) == self.canvas.size:
            return self.canvas, self.blend
        return (
            self.canvas.resize((width, height), Image.Resampling.BILINEAR),
            self.blend.resize((width, height), Image.Resampling.BILINEAR),
        )


def composite(generated: Image.Image, kept: Image.Image, mask: Image.Image) -> Image.Image:
    """``generated`` where ``mask`` is white, ``kept`` where it is black, blended between; where
    the mask is 0 the result is ``kept`` exactly."""
    weight = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    new = np.asarray(generated, dtype=np.float32)
    old = np.asarray(kept)
    mixed = np.round(new * weight + old.astype(np.float32) * (1.0 - weight))
    out = np.where(weight > 0, np.clip(mixed, 0, 255).astype(np.uint8), old)
    return Image.fromarray(out)


def load_mask(path: str, size: tuple[int, int], warnings: list[str]) -> Image.Image:
    """The mask file as L (white = repaint), at ``size`` (the input's); another size is stretched
    to it with a warning."""
    mask = load_image(path).convert("L")
    if mask.size != size:
        warnings.append(
            f"The mask is {mask.width}x{mask.height} but the input is {size[0]}x{size[1]}; "
            "the mask was stretched to the input's size."
        )
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return mask


def absolute_source(source: ImageInput | None) -> ImageInput | None:
    """``source`` with absolute paths: the resolved request goes into history and PNG metadata,
    where a path relative to the folder the run started in would find nothing."""
    if source is None:
        return None

    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().absolute()) if path else path

    return replace(source, image=absolute(source.image) or "", mask=absolute(source.mask))


def prepare_source(request: GenerationRequest) -> tuple[ReworkPlan | None, list[str]]:
    """The plan of a request that reworks a picture (None for text-to-image), with warnings; the
    input and mask files are read here, so a bad one stops the run before any step."""
    source = request.source
    if source is None:
        return None, []
    assert request.width and request.height and request.seed is not None  # resolved by prepare
    warnings: list[str] = []
    image = load_image(source.image)
    mask = load_mask(source.mask, image.size, warnings) if source.mask else None
    plan = plan_rework(source, image, mask, request.width, request.height, request.seed)
    return plan, warnings


def text_to_image_plan(request: GenerationRequest) -> ReworkPlan:
    """Text-to-image on an inpainting model: the whole (blank) picture repainted from noise."""
    assert request.width and request.height and request.seed is not None
    blank = Image.new("RGB", (request.width, request.height), (127, 127, 127))
    source = ImageInput(image="", strength=1.0)
    return plan_rework(source, blank, None, request.width, request.height, request.seed)


def canvas_request(request: GenerationRequest) -> GenerationRequest:
    """``request`` at the size of the picture it makes (outpainting adds its border)."""
    if request.source is None or not request.source.outpainting:
        return request
    left, top, right, bottom = request.source.outpaint
    assert request.width and request.height
    return replace(
        request, width=request.width + left + right, height=request.height + top + bottom
    )


def run_request(request: GenerationRequest, plan: ReworkPlan | None) -> GenerationRequest:
    """``request`` at the size the denoising runs at (the starting noise's size)."""
    if plan is None:
        return request
    width, height = plan.run_size
    return replace(request, width=width, height=height)


def plan_rework(
    source: ImageInput,
    image: Image.Image,
    mask: Image.Image | None,
    width: int,
    height: int,
    seed: int,
) -> ReworkPlan:
    """Fit ``image`` (and ``mask``, same size) to ``width`` x ``height``, add the outpaint border,
    and prepare what the run receives."""
    canvas = fit_to_size(image, width, height, source.resize_mode)
    if mask is not None:
        mask = fit_to_size(mask.convert("RGB"), width, height, source.resize_mode).convert("L")
    if source.outpainting:
        canvas, border = extend_canvas(canvas, source.outpaint)
        if mask is not None:
            grown = Image.new("L", canvas.size, 0)
            grown.paste(mask, (source.outpaint[0], source.outpaint[1]))
            mask = Image.fromarray(np.maximum(np.asarray(grown), np.asarray(border)))
        else:
            mask = border
    if mask is None:
        full = Image.new("L", canvas.size, 255)
        return ReworkPlan(source, canvas, None, None, canvas, full)
    blend = mask.filter(ImageFilter.GaussianBlur(source.mask_blur)) if source.mask_blur else mask
    start = masked_content(canvas, mask, source.masked_content, seed)
    box = None
    run_image, run_mask = start, blend
    if source.inpaint_area is InpaintArea.MASKED and np.asarray(blend).any():
        box = crop_box(blend, source.padding, (width, height))
        run_image = start.crop(box).resize((width, height), Image.Resampling.LANCZOS)
        run_mask = blend.crop(box).resize((width, height), Image.Resampling.BILINEAR)
    return ReworkPlan(source, canvas, blend, box, run_image, run_mask)


def masked_content(
    canvas: Image.Image, mask: Image.Image, content: MaskedContent, seed: int
) -> Image.Image:
    """What the run starts from under the mask: the picture, its blurred surroundings, or noise."""
    if content is MaskedContent.ORIGINAL:
        return canvas
    inside = np.asarray(mask) >= 128
    pixels = np.asarray(canvas).copy()
    if content is MaskedContent.FILL:
        pixels[inside] = fill_from_surroundings(canvas, inside)[inside]
    else:
        rng = np.random.default_rng(seed)
        pixels[inside] = rng.integers(0, 256, size=(int(inside.sum()), 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def fill_from_surroundings(image: Image.Image, inside: np.ndarray) -> np.ndarray:
    """Colours for the pixels ``inside`` from the kept pixels around them: normalised Gaussian
    blurs, the finest one that reaches a pixel wins (far from any kept pixel: their mean)."""
    keep = (~inside).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32)
    if not keep.any():
        return np.full_like(pixels, 127.0).astype(np.uint8)
    filled = np.broadcast_to(pixels[keep > 0].mean(axis=0), pixels.shape).copy()
    weighted = pixels * keep[..., None]
    for radius in _FILL_RADII:
        weight = _blur(keep, radius)
        reached = weight > 1e-3
        colour = _blur(weighted, radius)
        filled[reached] = colour[reached] / weight[reached, None]
    return np.clip(np.round(filled), 0, 255).astype(np.uint8)


def _blur(channel: np.ndarray, radius: float) -> np.ndarray:
    # Zero beyond the edges: the normalising weight then accounts for the missing pixels.
    return cv2.GaussianBlur(channel, (0, 0), radius, borderType=cv2.BORDER_CONSTANT)


def crop_box(mask: Image.Image, padding: int, run_size: tuple[int, int]) -> Box:
    """The masked region plus ``padding``, widened to the run's aspect ratio, inside the mask."""
    left, top, right, bottom = mask.getbbox() or (0, 0, mask.width, mask.height)
    left, top = max(0, left - padding), max(0, top - padding)
    right, bottom = min(mask.width, right + padding), min(mask.height, bottom + padding)
    aspect = run_size[0] / run_size[1]
    width, height = right - left, bottom - top
    if width / height < aspect:
        width = min(mask.width, round(height * aspect))
    else:
        height = min(mask.height, round(width / aspect))
    left = min(max(0, (left + right - width) // 2), mask.width - width)
    top = min(max(0, (top + bottom - height) // 2), mask.height - height)
    return left, top, left + width, top + height


# ---------------------------------------------------------------------------------------------
# The pipelines


class _StartsFromGivenNoise:
    """Mixed into diffusers' inpainting pipelines: ``latents`` passed to them is the starting
    noise at any strength (diffusers would take it as already-noised latents and drop the
    picture), and encoding the picture leaves the generator's stream as it found it, so the
    sampler draws the same noise as in text-to-image."""

    def prepare_latents(self, *args: Any, **kwargs: Any) -> Any:
        args_list = list(args)
        generator = args_list[6] if len(args_list) > 6 else kwargs.get("generator")
        given = args_list[7] if len(args_list) > 7 else kwargs.get("latents")
        state = generator.get_state() if isinstance(generator, torch.Generator) else None
        try:
            if given is None or kwargs.get("is_strength_max", True):
                return super().prepare_latents(*args, **kwargs)  # type: ignore[misc]
            if len(args_list) > 7:
                args_list[7] = None
            else:
                kwargs["latents"] = None
            wants_noise = kwargs.get("return_noise", False)
            wants_image = kwargs.get("return_image_latents", False)
            kwargs.update(return_noise=True, return_image_latents=True)
            _, _, image_latents = super().prepare_latents(*args_list, **kwargs)[:3]  # type: ignore[misc]
            noise = given.to(image_latents.device, image_latents.dtype)
            latents = self.scheduler.add_noise(image_latents, noise, kwargs["timestep"])  # type: ignore[attr-defined]
            outputs: tuple[torch.Tensor, ...] = (latents,)
            if wants_noise:
                outputs += (noise,)
            if wants_image:
                outputs += (image_latents,)
            return outputs
        finally:
            if state is not None:
                generator.set_state(state)

    def _encode_vae_image(self, image: torch.Tensor, generator: Any) -> torch.Tensor:
        state = generator.get_state() if isinstance(generator, torch.Generator) else None
        try:
            return super()._encode_vae_image(image, generator)  # type: ignore[misc]
        finally:
            if state is not None:
                generator.set_state(state)


_CLASSES: dict[tuple[ModelFamily, bool], type] = {}
_ASSEMBLED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _inpaint_class(family: ModelFamily, controlnet: bool) -> type:
    key = (family, controlnet)
    if key not in _CLASSES:
        import diffusers

        name = {
            (ModelFamily.SD1, False): "StableDiffusionInpaintPipeline",
            (ModelFamily.SD1, True): "StableDiffusionControlNetInpaintPipeline",
            (ModelFamily.SDXL, False): "StableDiffusionXLInpaintPipeline",
            (ModelFamily.SDXL, True): "StableDiffusionXLControlNetInpaintPipeline",
        }[key]
        base = getattr(diffusers, name)
        _CLASSES[key] = type(name, (_StartsFromGivenNoise, base), {"__module__": __name__})
    return _CLASSES[key]


def inpainting_pipeline(pipe: DiffusionPipeline, family: ModelFamily) -> DiffusionPipeline:
    """The inpainting pipeline around ``pipe``'s own components (no weights are loaded or copied);
    kept while ``pipe`` lives."""
    if pipe not in _ASSEMBLED:
        components = dict(pipe.components)
        cls = _inpaint_class(family, "controlnet" in components)
        options: dict[str, Any] = {}
        if family is ModelFamily.SD1:
            components.update(safety_checker=None, feature_extractor=None)
            options["requires_safety_checker"] = False
        wanted = set(cls._get_signature_keys(cls)[0]) | set(cls._optional_components)
        inpaint = cls(**{k: v for k, v in components.items() if k in wanted}, **options)
        inpaint.set_progress_bar_config(disable=True)
        _ASSEMBLED[pipe] = inpaint
    return _ASSEMBLED[pipe]


def is_controlnet_pipeline(pipe: DiffusionPipeline) -> bool:
    return "controlnet" in pipe.components
