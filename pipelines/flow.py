"""What the engine does differently for rectified-flow models (SD 3.x, Flux.1).

Both are transformers over 16-channel latents that predict a velocity; Flux packs 2x2 latent
patches into a sequence (its pipeline takes and returns latents as (1, tokens, 64)) and takes a
distilled guidance value instead of running classifier-free guidance. The engine keeps its own
shape for every family (starting noise as (1, C, H/8, W/8), previews from spatial latents) and this
module translates at the edges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from pipelines.errors import ValidationError
from pipelines.types import ControlKind, ControlUnit, GenerationRequest, MemoryOptions, ModelFamily

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

# Both transformers see 2x2 latent patches: an image side must be a multiple of 8 * 2 pixels.
SIZE_MULTIPLE = 16


@dataclass(frozen=True)
class WeightOptions:
    """How a model's weights are kept: changing either means loading the model again."""

    sequential_offload: bool = False  # stream layer by layer to the GPU (CUDA only)
    fp8_weights: bool = False  # store in fp8, upcast each layer as it runs

    @classmethod
    def of(cls, memory: MemoryOptions) -> WeightOptions:
        return cls(memory.sequential_offload, memory.fp8_weights)


FULL_WEIGHTS = WeightOptions()


def store_weights(pipe: DiffusionPipeline, options: WeightOptions, compute: torch.dtype) -> None:
    """Keep the denoiser's weights in fp8 (half of fp16's memory), each layer upcast to
    ``compute`` while it runs. Text encoders stay as they are: the pipelines take their output's
    number format from theirs."""
    if options.fp8_weights:
        # "auto" keeps embeddings, norms and the input/output projections at full precision.
        denoiser(pipe).enable_layerwise_casting(torch.float8_e4m3fn, compute)


def denoiser(pipe: DiffusionPipeline) -> torch.nn.Module:
    """The network evaluated every step: the UNet, or the transformer of a flow model."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def compute_dtype(pipe: DiffusionPipeline) -> torch.dtype:
    """The number format the denoiser computes in (its weights may be stored in fp8)."""
    dtype = next(denoiser(pipe).parameters()).dtype
    return pipe.vae.dtype if dtype == torch.float8_e4m3fn else dtype


def native_latent_side(pipe: DiffusionPipeline) -> int:
    # Flux's transformer has no sample size in its config; its pipeline knows the trained one.
    side = getattr(pipe, "default_sample_size", None)
    return int(side or denoiser(pipe).config.sample_size)


def latent_channels(pipe: DiffusionPipeline) -> int:
    return int(pipe.vae.config.latent_channels)


def distilled_guidance(pipe: DiffusionPipeline) -> bool:
    """True for Flux.1-dev-like models: guidance is an input of the transformer, not a second pass."""
    transformer = getattr(pipe, "transformer", None)
    return bool(transformer is not None and transformer.config.get("guidance_embeds", False))


def variant(family: ModelFamily, pipe: DiffusionPipeline) -> str:
    if family is not ModelFamily.FLUX:
        return ""
    return "dev" if distilled_guidance(pipe) else "schnell"


def check_request(request: GenerationRequest, family: ModelFamily) -> None:
    """What a flow model cannot run, refused before any step."""
    if getattr(request, "branches", ()):
        raise ValidationError(
            f"Branching a run part way (another prompt, CFG or sampler from a step on) is not "
            f"available for {family.label} models yet; remove the branches."
        )
    if getattr(request, "hires", None) is not None:
        raise ValidationError(
            f"The high-resolution second pass is not available for {family.label} models yet; "
            "switch it off, or choose an SD 1.x or SDXL model."
        )
    for name, value in (("Width", request.width), ("Height", request.height)):
        if value % SIZE_MULTIPLE:
            lower = max(SIZE_MULTIPLE, value - value % SIZE_MULTIPLE)
            raise ValidationError(
                f"{name} {value} is not a multiple of {SIZE_MULTIPLE}, which SD 3.x and Flux.1 "
                f"need; use {lower} or {lower + SIZE_MULTIPLE}."
            )


def adjust_request(
    pipe: DiffusionPipeline, family: ModelFamily, request: GenerationRequest
) -> tuple[GenerationRequest, list[str]]:
    """The request as the model runs it, and what the user should know about the difference."""
    notes = list(getattr(pipe, "load_notes", ()))
    request = replace(request, distilled_guidance=distilled_guidance(pipe))
    if family is not ModelFamily.FLUX:
        return request, notes
    if request.negative_prompt:
        notes.append("Flux.1 takes no negative prompt; it was not used.")
    if not distilled_guidance(pipe) and request.cfg_scale != 1.0:
        # schnell was distilled to run without guidance: any value does the same, 1 says so.
        notes.append(f"Flux.1-schnell takes no guidance; CFG {request.cfg_scale:g} was set to 1.")
        request = replace(request, cfg_scale=1.0)
    return request, notes


def runs_two_passes(family: ModelFamily, cfg_scale: float) -> bool:
    """Whether each step evaluates the model on a guided and an unguided batch."""
    return family is not ModelFamily.FLUX and cfg_scale > 1.0


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> Flux's (B, H/2 * W/2, C * 4) sequence of 2x2 patches."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def spatial(
    latents: torch.Tensor, request: GenerationRequest, scale_factor: int = 8
) -> torch.Tensor:
    """Flux's packed latents back as (B, C, H, W); other latents as they are."""
    if latents.ndim != 3:
        return latents
    b, _, packed = latents.shape
    h, w = request.height // scale_factor, request.width // scale_factor
    grid = latents.view(b, h // 2, w // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(b, packed // 4, h, w)


# The control modes of the Flux Union ControlNets (InstantX, Shakker Labs), by the kind of map.
UNION_MODES = {ControlKind.CANNY: 0, ControlKind.DEPTH: 2, ControlKind.POSE: 4}


def call_arguments(
    family: ModelFamily,
    kwargs: dict[str, Any],
    pipe: DiffusionPipeline,
    units: tuple[ControlUnit, ...] = (),
) -> dict[str, Any]:
    """The engine's pipeline arguments, translated for a flow model."""
    if family is ModelFamily.FLUX:
        kwargs["latents"] = pack(kwargs["latents"])
        kwargs.pop("negative_prompt", None)
    if "image" in kwargs:  # the flow ControlNet pipelines call the condition control_image
        kwargs["control_image"] = kwargs.pop("image")
        modes = control_modes(pipe, units)
        if modes is not None:
            kwargs["control_mode"] = modes[0] if len(units) == 1 else modes
    return kwargs


def _nets(pipe: DiffusionPipeline) -> list[Any]:
    controlnet = getattr(pipe, "controlnet", None)
    if controlnet is None:
        return []
    return list(getattr(controlnet, "nets", [controlnet]))


def control_modes(
    pipe: DiffusionPipeline, units: tuple[ControlUnit, ...]
) -> list[int | None] | None:
    """Each unit's mode for a Union ControlNet (None for single-kind ones); None when none is one."""
    nets = _nets(pipe)
    unions = [net.config.get("num_mode") is not None for net in nets]
    if not any(unions):
        return None
    modes: list[int | None] = []
    for unit, union in zip(units, unions, strict=True):
        if union and unit.kind not in UNION_MODES:
            kinds = ", ".join(k.value for k in UNION_MODES)
            raise ValidationError(
                f"A Union ControlNet needs to know the kind of its map ({kinds}); "
                f"{unit.kind.value} is not one of them."
            )
        modes.append(UNION_MODES[unit.kind] if union else None)
    return modes


def controlnet_pipeline(pipe: DiffusionPipeline, family: ModelFamily, nets: list[Any]) -> Any:
    """The base pipeline's components around one or several SD 3.x / Flux.1 ControlNets."""
    from diffusers import (
        FluxControlNetPipeline,
        FluxMultiControlNetModel,
        SD3MultiControlNetModel,
        StableDiffusion3ControlNetPipeline,
    )

    if family is ModelFamily.FLUX:
        cls, multi = FluxControlNetPipeline, FluxMultiControlNetModel
    else:
        cls, multi = StableDiffusion3ControlNetPipeline, SD3MultiControlNetModel
    components = dict(pipe.components)
    components["controlnet"] = nets[0] if len(nets) == 1 else multi(nets)
    wanted = set(cls._get_signature_keys(cls)[0]) | set(cls._optional_components)
    assembled = cls(**{k: v for k, v in components.items() if k in wanted})
    assembled.set_progress_bar_config(disable=True)
    assembled.load_notes = getattr(pipe, "load_notes", ())
    return assembled


def prompt_notes(request: GenerationRequest) -> list[str]:
    """What of the prompt's SD 1.x / SDXL syntax a flow model does not apply."""
    notes = []
    if "<lora:" in request.prompt:
        notes.append("LoRA tags are not applied to SD 3.x and Flux.1 models yet; ignored.")
    if request.clip_skip > 1:
        notes.append(f"Clip skip {request.clip_skip} is not applied to SD 3.x and Flux.1 models.")
    return notes


@contextlib.contextmanager
def seeded_sampling(prepared: Any) -> Iterator[None]:  # a PreparedRun
    """SD 3's ControlNet pipeline samples its control image's latents from torch's global
    generator: seeded from the request for the call (and restored after), so a seed repeats."""
    pipe = prepared.pipeline
    if prepared.model.family is not ModelFamily.SD3 or getattr(pipe, "controlnet", None) is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(prepared.request.seed + 2)
        yield


def refuse_rework(plan: object | None, family: ModelFamily) -> None:
    # Image-to-image and inpainting run through UNet pipelines; the flow families' own come later.
    if plan is not None:
        raise ValidationError(
            f"Reworking a picture (image-to-image, inpainting) is not available for {family.label} "
            "models yet; clear the source image, or choose an SD 1.x or SDXL model."
        )
