"""The request that describes one generation, and what a run gives back.

Everything about a generation lives in :class:`GenerationRequest`: the engine runs it, the exporter
writes it into the PNG, the window rebuilds its panels from it, and the sampler comparison varies only
its sampler. It is frozen; use :func:`dataclasses.replace` to derive a changed copy.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import ValidationError

MIN_STEPS, MAX_STEPS = 1, 200
MIN_CFG, MAX_CFG = 0.0, 30.0
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_SEED = 2**32 - 1
MAX_CONTROL_UNITS = 3
MAX_BATCH_SIZE = 16  # images in one model call; more fit no GPU at useful sizes
MIN_CLIP_SKIP, MAX_CLIP_SKIP = 1, 12
# Far beyond what anyone writes (a 75-token chunk is a few hundred characters): a longer text is
# a paste gone wrong, and would only slow every step that handles it and bloat the metadata.
MAX_PROMPT_CHARS = 10_000


def snap_size(value: float) -> int:
    """The nearest multiple of 8 (halves round up) within MIN_SIZE..MAX_SIZE: the one rule for
    turning any width or height into one the models take."""
    return max(MIN_SIZE, min(MAX_SIZE, math.floor(value / 8 + 0.5) * 8))


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _require(ok: bool, field_name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValidationError(f"{field_name} must be {expected}, not {_shown(value)}.")


def _check_text(field_name: str, value: Any) -> None:
    _require(isinstance(value, str), field_name, "text", value)
    if len(value) > MAX_PROMPT_CHARS:
        raise ValidationError(
            f"{field_name} is {len(value):,} characters long; at most {MAX_PROMPT_CHARS:,} are "
            "allowed (a 75-token chunk of the text encoder is a few hundred)."
        )


class ModelFamily(str, enum.Enum):
    SD1 = "sd1"
    SDXL = "sdxl"
    # Rectified-flow transformers: they predict a velocity, not noise (pipelines/flow.py).
    SD3 = "sd3"
    FLUX = "flux"

    @property
    def label(self) -> str:
        return {"sd1": "SD 1.x", "sdxl": "SDXL", "sd3": "SD 3.x", "flux": "Flux.1"}[self.value]

    @property
    def is_flow(self) -> bool:
        return self in (ModelFamily.SD3, ModelFamily.FLUX)


class ControlKind(str, enum.Enum):
    CANNY = "canny"
    POSE = "pose"
    DEPTH = "depth"
    CUSTOM = "custom"


def guess_control_kind(name: str) -> ControlKind | None:
    """The kind a ControlNet or preprocessor name says (``control_v11p_sd15_canny``, ``openpose``,
    ``depth_midas``), or None when it names none of them."""
    lowered = name.lower()
    for word, kind in (("canny", ControlKind.CANNY), ("pose", ControlKind.POSE),
                       ("depth", ControlKind.DEPTH)):  # fmt: skip
        if word in lowered:
            return kind
    return None


class ResizeMode(str, enum.Enum):
    FIT = "fit"  # letterbox into the generation size, padding with black
    CROP = "crop"  # fill the generation size, cropping the overflow (centred)
    STRETCH = "stretch"  # ignore the aspect ratio


class PreviewMode(str, enum.Enum):
    AUTO = "auto"  # chosen per model from the decoders' measured cost (pipelines.preview_choice)
    APPROXIMATE = "approximate"  # linear latent -> RGB map fitted to the model's VAE
    TINY = "tiny"  # AutoencoderTiny (TAESD) when its weights are present
    FULL = "full"  # the model's own VAE: exact, slowest
    NONE = "none"


class MaskedContent(str, enum.Enum):
    ORIGINAL = "original"  # keep the input under the mask as the starting point
    FILL = "fill"  # fill with blurred surroundings first
    LATENT_NOISE = "latent noise"


class InpaintArea(str, enum.Enum):
    WHOLE = "whole"  # whole picture
    MASKED = "masked"  # only the masked region at full resolution, with padding, pasted back


MAX_MASK_BLUR = 256
MAX_PADDING = 1024
MIN_HIRES_SCALE, MAX_HIRES_SCALE = 1.0, 4.0
HIRES_RESAMPLERS = ("lanczos", "latent")  # an upscaler model file's path is the other choice


def run_steps(strength: float, steps: int) -> int:
    """Steps a reworking run at ``strength`` spends: ``round(strength * steps)``, at least one."""
    return max(1, min(steps, round(strength * steps)))


@dataclass(frozen=True)
class ImageInput:
    """The picture a run reworks: image-to-image, or inpainting when it carries a mask, with an
    optional border added first (outpainting). Files are checked when the engine prepares the run."""

    image: str  # path of the input picture (absolute once prepared)
    strength: float = 0.75  # denoising strength 0..1; the run spends round(strength * steps) steps
    resize_mode: ResizeMode = ResizeMode.FIT
    mask: str | None = None  # path of the mask, white = repaint; None: plain image-to-image
    mask_blur: int = 4  # px
    masked_content: MaskedContent = MaskedContent.ORIGINAL
    inpaint_area: InpaintArea = InpaintArea.WHOLE
    padding: int = 32  # px around the mask for InpaintArea.MASKED
    outpaint: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, top, right, bottom pixels added

    def check_fields(self) -> None:
        _require(isinstance(self.image, str), "The input image", "a path", self.image)
        _require(_is_number(self.strength) and math.isfinite(self.strength),
                 "Denoising strength", "a number", self.strength)  # fmt: skip
        if not 0.0 <= self.strength <= 1.0:
            raise ValidationError(
                f"Denoising strength must be between 0 and 1, not {self.strength}."
            )
        _require(isinstance(self.resize_mode, ResizeMode), "The input's resize mode",
                 "fit, crop or stretch", self.resize_mode)  # fmt: skip
        _require(self.mask is None or isinstance(self.mask, str), "The mask", "a path", self.mask)
        _require(_is_int(self.mask_blur), "Mask blur", "a whole number of pixels", self.mask_blur)
        if not 0 <= self.mask_blur <= MAX_MASK_BLUR:
            raise ValidationError(f"Mask blur must be from 0 to {MAX_MASK_BLUR} pixels.")
        _require(isinstance(self.masked_content, MaskedContent), "Masked content",
                 "original, fill or latent noise", self.masked_content)  # fmt: skip
        _require(isinstance(self.inpaint_area, InpaintArea), "Inpaint area",
                 "whole or masked", self.inpaint_area)  # fmt: skip
        _require(_is_int(self.padding), "Inpaint padding", "a whole number of pixels", self.padding)
        if not 0 <= self.padding <= MAX_PADDING:
            raise ValidationError(f"Inpaint padding must be from 0 to {MAX_PADDING} pixels.")
        _require(
            isinstance(self.outpaint, tuple) and len(self.outpaint) == 4
            and all(_is_int(v) for v in self.outpaint),
            "Outpaint", "four whole numbers (left, top, right, bottom)", self.outpaint,
        )  # fmt: skip
        if any(not 0 <= v <= MAX_SIZE for v in self.outpaint):
            raise ValidationError(f"Outpaint borders must be from 0 to {MAX_SIZE} pixels each.")

    def validate(self) -> None:
        self.check_fields()
        if not self.image:
            raise ValidationError("Image-to-image needs an input image.")
        if self.mask == "":
            raise ValidationError("The mask path is empty; give a mask file or no mask.")
        left, top, right, bottom = self.outpaint
        for name, total in (("left and right", left + right), ("top and bottom", top + bottom)):
            if total % 8:
                raise ValidationError(
                    f"The outpaint borders {name} add up to {total} pixels; the picture needs a "
                    f"multiple of 8 ({total - total % 8} or {total - total % 8 + 8})."
                )

    @property
    def outpainting(self) -> bool:
        return any(self.outpaint)

    @property
    def inpainting(self) -> bool:
        return self.mask is not None or self.outpainting


@dataclass(frozen=True)
class HiresPass:
    """Text-to-image at the model's size, upscaled by ``scale`` and reworked at that size."""

    scale: float = 2.0  # 1..4
    steps: int = 0  # 0: the request's steps
    strength: float = 0.5
    upscaler: str = "lanczos"  # "lanczos" | "latent" | path of an upscaler model file

    def check_fields(self) -> None:
        _require(_is_number(self.scale) and math.isfinite(self.scale), "Hires scale", "a number",
                 self.scale)  # fmt: skip
        if not MIN_HIRES_SCALE <= self.scale <= MAX_HIRES_SCALE:
            raise ValidationError(
                f"Hires scale must be between {MIN_HIRES_SCALE:g} and {MAX_HIRES_SCALE:g}, "
                f"not {self.scale}."
            )
        _require(_is_int(self.steps), "Hires steps", "a whole number", self.steps)
        if not 0 <= self.steps <= MAX_STEPS:
            raise ValidationError(f"Hires steps must be from 0 (the run's steps) to {MAX_STEPS}.")
        _require(_is_number(self.strength) and math.isfinite(self.strength),
                 "Hires denoising", "a number", self.strength)  # fmt: skip
        if not 0.0 <= self.strength <= 1.0:
            raise ValidationError(f"Hires denoising must be between 0 and 1, not {self.strength}.")
        _require(isinstance(self.upscaler, str) and bool(self.upscaler), "The upscaler",
                 "lanczos, latent or the path of an upscaler model", self.upscaler)  # fmt: skip

    def validate(self) -> None:
        self.check_fields()


@dataclass(frozen=True)
class EngineSettings:
    """How an Engine is set up (folders, device, precision); the window keeps these in its settings
    and rebuilds its engine when they change."""

    model_folders: tuple[Path, ...] = ()
    annotator_folders: tuple[Path, ...] = ()
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp16 | bf16 | fp32
    allow_pickle: bool = False  # .ckpt / .pt files run code when loaded: only on explicit opt-in
    tiny_vae: dict[str, Path] = field(default_factory=dict)  # family value -> AutoencoderTiny
    threads: int = 0  # CPU threads per run; 0: chosen from the work size and the cores
    # Textual-inversion embedding folders searched before those beside the model folders.
    embedding_folders: tuple[Path, ...] = ()
    # torch.compile the UNet (opt-in: the first run at each size compiles, later ones are faster)
    compile: bool = False


@dataclass(frozen=True)
class MemoryOptions:
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    # Large transformers (SD 3.x, Flux.1): weights streamed to the GPU one layer at a time; weights
    # kept in fp8 and upcast per layer as it runs.
    sequential_offload: bool = False
    fp8_weights: bool = False


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet applied to the run.

    ``image`` is either a ready condition map (``preprocess=False``) or a photo the kind's
    preprocessor turns into one. The engine always records the exact map it used in the result.
    """

    kind: ControlKind
    model: str  # path of a ControlNet folder or single file
    image: str | None = None  # path of the condition map or photo
    preprocess: bool = False
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    resize_mode: ResizeMode = ResizeMode.FIT
    canny_low: int = 100
    canny_high: int = 200
    enabled: bool = True
    # The preprocessor name it was read with from another tool (openpose_full, depth_midas),
    # written back as it was; empty: the kind's own name.
    module: str = ""

    def check_fields(self) -> None:
        """Types and ranges of every field; what a stored unit must satisfy even while unfinished."""
        _require(isinstance(self.kind, ControlKind), "A control unit's kind", "a kind", self.kind)
        _require(isinstance(self.model, str), "A control unit's model", "a path", self.model)
        _require(
            self.image is None or isinstance(self.image, str),
            "A control unit's image", "a path", self.image,
        )  # fmt: skip
        _require(isinstance(self.module, str), "A control unit's module", "a name", self.module)
        for name in ("preprocess", "enabled"):
            value = getattr(self, name)
            _require(isinstance(value, bool), f"A control unit's {name}", "true or false", value)
        for name in ("strength", "start", "end"):
            value = getattr(self, name)
            _require(_is_number(value) and math.isfinite(value), f"ControlNet {name}", "a number",
                     value)  # fmt: skip
        for name in ("canny_low", "canny_high"):
            value = getattr(self, name)
            _require(_is_int(value), f"The Canny threshold {name}", "a whole number", value)
        _require(
            isinstance(self.resize_mode, ResizeMode),
            "A control unit's resize mode", "fit, crop or stretch", self.resize_mode,
        )  # fmt: skip
        if not 0.0 <= self.strength <= 2.0:
            raise ValidationError(
                f"ControlNet strength must be between 0 and 2, not {self.strength}."
            )
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValidationError(
                f"ControlNet start ({self.start}) must be below its end ({self.end}), both in 0..1."
            )
        if not 0 <= self.canny_low <= self.canny_high <= 255:
            raise ValidationError(
                f"Canny thresholds must satisfy 0 <= low <= high <= 255 (got {self.canny_low}, "
                f"{self.canny_high})."
            )

    def validate(self) -> None:
        self.check_fields()
        if not self.model:
            raise ValidationError(f"The {self.kind.value} control unit has no ControlNet model.")
        if not self.image:
            raise ValidationError(f"The {self.kind.value} control unit has no condition image.")


@dataclass(frozen=True)
class Branch:
    """Settings that change after ``step`` completed sampler steps, for the rest of the run; a
    field left None keeps what the run had (see :mod:`pipelines.branching`)."""

    step: int
    prompt: str | None = None
    negative: str | None = None
    cfg: float | None = None
    sampler: str | None = None
    control_strength: float | None = None  # every active ControlNet unit

    def check_fields(self) -> None:
        _require(_is_int(self.step), "A branch's step", "a whole number", self.step)
        for name, label in (("prompt", "A branch's prompt"), ("negative", "A branch's negative")):
            if getattr(self, name) is not None:
                _check_text(label, getattr(self, name))
        if self.sampler is not None:
            _require(isinstance(self.sampler, str), "A branch's sampler", "a sampler name",
                     self.sampler)  # fmt: skip
        if self.cfg is not None:
            _require(_is_number(self.cfg) and math.isfinite(self.cfg)
                     and MIN_CFG <= self.cfg <= MAX_CFG, "A branch's CFG scale",
                     f"a number from {MIN_CFG:g} to {MAX_CFG:g}", self.cfg)  # fmt: skip
        if self.control_strength is not None:
            value = self.control_strength
            _require(_is_number(value) and math.isfinite(value) and 0.0 <= value <= 2.0,
                     "A branch's ControlNet strength", "a number from 0 to 2", value)  # fmt: skip
        if all(getattr(self, name) is None for name in BRANCH_KEYS):
            raise ValidationError(f"The branch at step {self.step} changes nothing.")


BRANCH_KEYS = ("prompt", "negative", "cfg", "sampler", "control_strength")


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    model: str = ""  # empty: the bundled default model
    negative_prompt: str = ""
    seed: int | None = None  # None: a random seed is drawn and recorded by resolve_seed()
    steps: int = 20
    cfg_scale: float = 7.0
    width: int | None = None  # None: the model's native size
    height: int | None = None
    sampler: str = "Euler"
    controls: tuple[ControlUnit, ...] = ()
    memory: MemoryOptions = field(default_factory=MemoryOptions)
    preview: PreviewMode = PreviewMode.AUTO
    # Reworking an image (issue 14): the input, mask and outpaint border; the high-resolution pass.
    source: ImageInput | None = None  # None: text-to-image
    hires: HiresPass | None = None
    # How the prompt is read: AUTOMATIC1111's clip skip, and the LoRA and embedding files the run
    # used as "name: hash, …" (recorded by the engine, written as "Lora hashes" / "TI hashes").
    clip_skip: int = 1
    lora_hashes: str = ""
    ti_hashes: str = ""
    # Pausing and branching: settings that change part way through the run (pipelines/branching)
    branches: tuple[Branch, ...] = ()
    # Batch size: images denoised together, seeds seed … seed + batch_size - 1 (pipelines/batches)
    batch_size: int = 1
    # Flux.1-dev (issue 18): cfg_scale is the distilled guidance the model takes as an input; the
    # engine sets this from the model, the metadata writes it as "Distilled CFG Scale".
    distilled_guidance: bool = False

    def check_fields(self) -> None:
        """Types and ranges of every field, without consulting the sampler registry or requiring
        control units to be complete: what a stored request (history, settings, a PNG) must pass."""
        _check_text("The prompt", self.prompt)
        _check_text("The negative prompt", self.negative_prompt)
        _require(isinstance(self.model, str), "The model", "a path or a name", self.model)
        _require(_is_int(self.steps), "Steps", "a whole number", self.steps)
        if not MIN_STEPS <= self.steps <= MAX_STEPS:
            raise ValidationError(f"Steps must be a whole number from {MIN_STEPS} to {MAX_STEPS}.")
        _require(_is_number(self.cfg_scale), "CFG scale", "a number", self.cfg_scale)
        if not (math.isfinite(self.cfg_scale) and MIN_CFG <= self.cfg_scale <= MAX_CFG):
            raise ValidationError(f"CFG scale must be between {MIN_CFG:g} and {MAX_CFG:g}.")
        for name, value in (("Width", self.width), ("Height", self.height)):
            if value is None:
                continue
            _require(_is_int(value), name, "a whole number of pixels", value)
            if not MIN_SIZE <= value <= MAX_SIZE:
                raise ValidationError(f"{name} must be between {MIN_SIZE} and {MAX_SIZE} pixels.")
            if value % 8:
                lower, upper = value - value % 8, value - value % 8 + 8
                raise ValidationError(
                    f"{name} {value} is not a multiple of 8; use {lower} or {upper}."
                )
        if self.seed is not None:
            _require(_is_int(self.seed), "Seed", "a whole number", self.seed)
            if not 0 <= self.seed <= MAX_SEED:
                raise ValidationError(f"Seed must be between 0 and {MAX_SEED}.")
        _require(isinstance(self.sampler, str), "Sampler", "a sampler name", self.sampler)
        _require(isinstance(self.controls, tuple), "Controls", "a tuple of control units",
                 self.controls)  # fmt: skip
        for unit in self.controls:
            _require(isinstance(unit, ControlUnit), "Each control", "a ControlUnit", unit)
            unit.check_fields()
        _require(isinstance(self.memory, MemoryOptions), "Memory", "MemoryOptions", self.memory)
        for name in ("attention_slicing", "vae_tiling", "cpu_offload"):
            value = getattr(self.memory, name)
            _require(isinstance(value, bool), f"The memory option {name}", "true or false", value)
        _require(isinstance(self.preview, PreviewMode), "Preview", "a preview mode", self.preview)
        # Branches: each well formed, at a step inside the run, in order, one per step.
        _require(isinstance(self.branches, tuple), "Branches", "a tuple of branches", self.branches)
        for branch in self.branches:
            _require(isinstance(branch, Branch), "Each branch", "a Branch", branch)
            branch.check_fields()
            if not 1 <= branch.step < self.steps:
                raise ValidationError(f"A branch's step must be from 1 to {self.steps - 1} (one "
                                      f"before the last of {self.steps} steps), not {branch.step}.")  # fmt: skip
        steps = [branch.step for branch in self.branches]
        if steps != sorted(set(steps)):
            raise ValidationError("Branches must be in step order, at most one per step.")
        # Batch size
        _require(_is_int(self.batch_size), "Batch size", "a whole number", self.batch_size)
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValidationError(f"Batch size must be from 1 to {MAX_BATCH_SIZE}; for more images "
                                  "use the batch count.")  # fmt: skip
        # Reworking an image
        if self.source is not None:
            _require(isinstance(self.source, ImageInput), "The input", "an ImageInput", self.source)
            self.source.check_fields()
        if self.hires is not None:
            _require(isinstance(self.hires, HiresPass), "Hires", "a HiresPass", self.hires)
            self.hires.check_fields()
        _require(_is_int(self.clip_skip), "Clip skip", "a whole number", self.clip_skip)
        if not MIN_CLIP_SKIP <= self.clip_skip <= MAX_CLIP_SKIP:
            raise ValidationError(f"Clip skip must be from {MIN_CLIP_SKIP} to {MAX_CLIP_SKIP}.")
        for name, value in (("LoRA hashes", self.lora_hashes), ("TI hashes", self.ti_hashes)):
            _check_text(name, value)
        # Rectified-flow models
        _require(isinstance(self.distilled_guidance, bool), "Distilled guidance", "true or false",
                 self.distilled_guidance)  # fmt: skip
        for name in ("sequential_offload", "fp8_weights"):
            value = getattr(self.memory, name)
            _require(isinstance(value, bool), f"The memory option {name}", "true or false", value)

    def validate(self) -> None:
        from pipelines.samplers import get_sampler  # the registry owns sampler names

        self.check_fields()
        get_sampler(self.sampler)
        active = [c for c in self.controls if c.enabled]
        if len(active) > MAX_CONTROL_UNITS:
            raise ValidationError(f"At most {MAX_CONTROL_UNITS} ControlNets can be active at once.")
        for unit in active:
            unit.validate()
        _check_branches(self)
        reworked = self.source is not None or self.hires is not None
        if reworked and (self.branches or self.batch_size > 1):
            raise ValidationError("Branches and a batch size above 1 apply to text-to-image runs "
                                  "without a hires pass; use the batch count for several "
                                  "images.")  # fmt: skip
        if self.batch_size > 1 and self.sampler == "DPM++ SDE":
            raise ValidationError("DPM++ SDE draws one noise stream for the whole run, so its batch "
                                  "images would not repeat alone: use batch size 1 and the batch "
                                  "count.")  # fmt: skip
        if self.source is not None:
            self.source.validate()
        if self.hires is not None:
            self.hires.validate()
        self.check_grown_sizes()

    def check_grown_sizes(self) -> None:
        """The outpainted or hires size must stay within the limit too (a native size is checked
        again once the engine knows it)."""
        for name, value in (("Width", self.width), ("Height", self.height)):
            if value is None:
                continue
            grown = grown_size(self, value, horizontal=name == "Width")
            if grown > MAX_SIZE:
                raise ValidationError(
                    f"{name} after outpainting and the hires pass would be {grown} pixels; at "
                    f"most {MAX_SIZE} are allowed."
                )

    @property
    def active_controls(self) -> tuple[ControlUnit, ...]:
        return tuple(c for c in self.controls if c.enabled)

    def resolve_seed(self, rng: random.Random | None = None) -> GenerationRequest:
        if self.seed is not None:
            return self
        return replace(self, seed=(rng or random.SystemRandom()).randint(0, MAX_SEED))

    # JSON form: used in PNG metadata, history and the window's settings.
    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """The request stored by :meth:`to_dict`, with every field's type and range checked
        (:meth:`check_fields`), so a caller can refuse a damaged one before applying any of it.
        Every failure is a :class:`ValidationError` naming the field."""
        if not isinstance(data, dict):
            raise ValidationError(f"The stored settings are not a table of fields: {_shown(data)}.")
        values = _known(cls, data)
        if "prompt" not in values:
            raise ValidationError("The stored settings have no prompt.")
        if "controls" in values:
            controls = values["controls"] or ()
            _require(isinstance(controls, list | tuple), "Controls", "a list", controls)
            values["controls"] = tuple(_control_from_dict(c) for c in controls)
        if "memory" in values:
            memory = values["memory"] or {}
            _require(isinstance(memory, dict), "Memory", "a table of options", memory)
            values["memory"] = MemoryOptions(**_known(MemoryOptions, memory))
        if "branches" in values:
            branches = values["branches"] or ()
            _require(isinstance(branches, list | tuple), "Branches", "a list", branches)
            values["branches"] = tuple(_branch_from_dict(b) for b in branches)
        if values.get("preview") is None:
            values.pop("preview", None)
        else:
            values["preview"] = _enum(PreviewMode, values["preview"], "Preview")
        if values.get("source") is not None:
            values["source"] = _source_from_dict(values["source"])
        if values.get("hires") is not None:
            hires = values["hires"]
            _require(isinstance(hires, dict), "Hires", "a table of fields", hires)
            values["hires"] = HiresPass(**_known(HiresPass, hires))
        request = cls(**values)
        request.check_fields()
        return request


def _check_branches(request: GenerationRequest) -> None:
    """A request's branches, as far as they can be checked without a model: known samplers,
    CFG on the run's side of 1, a ControlNet to scale (see pipelines.branching)."""
    from pipelines.samplers import get_sampler  # the registry owns sampler names

    guided = request.cfg_scale > 1.0
    for branch in request.branches:
        if branch.sampler is not None:
            get_sampler(branch.sampler)
        if branch.cfg is not None and (branch.cfg > 1.0) != guided:
            side = "above" if guided else "at or below"
            raise ValidationError(
                f"The branch at step {branch.step} sets CFG {branch.cfg:g}, but the run's CFG "
                f"{request.cfg_scale:g} is {side} 1, and a branch's must stay {side} 1 too "
                "(guidance on or off changes the whole run)."
            )
        if branch.control_strength is not None and not request.active_controls:
            raise ValidationError(f"The branch at step {branch.step} sets a ControlNet strength, "
                                  "but no ControlNet is active.")  # fmt: skip


def _enum(kind: type[enum.Enum], value: Any, field_name: str) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError):
        names = ", ".join(str(m.value) for m in kind)  # type: ignore[attr-defined]
        raise ValidationError(
            f"{field_name} must be one of {names}, not {_shown(value)}."
        ) from None


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _control_from_dict(data: Any) -> ControlUnit:
    if not isinstance(data, dict):
        raise ValidationError(f"A stored control unit is not a table of fields: {_shown(data)}.")
    values = _known(ControlUnit, data)
    if "kind" not in values:
        raise ValidationError("A stored control unit has no kind.")
    values["kind"] = _enum(ControlKind, values["kind"], "A control unit's kind")
    if "resize_mode" in values:
        values["resize_mode"] = _enum(ResizeMode, values["resize_mode"], "A resize mode")
    return ControlUnit(**values)


def _branch_from_dict(data: Any) -> Branch:
    values = _known(Branch, data) if isinstance(data, dict) else {}
    if "step" not in values:
        raise ValidationError(f"A stored branch is not a table of fields with a step: "
                              f"{_shown(data)}.")  # fmt: skip
    return Branch(**values)


def _source_from_dict(data: Any) -> ImageInput:
    if not isinstance(data, dict):
        raise ValidationError(f"The stored input is not a table of fields: {_shown(data)}.")
    values = _known(ImageInput, data)
    if "image" not in values:
        raise ValidationError("The stored input has no image.")
    if "resize_mode" in values:
        values["resize_mode"] = _enum(ResizeMode, values["resize_mode"], "The input's resize mode")
    if "masked_content" in values:
        values["masked_content"] = _enum(MaskedContent, values["masked_content"], "Masked content")
    if "inpaint_area" in values:
        values["inpaint_area"] = _enum(InpaintArea, values["inpaint_area"], "Inpaint area")
    if isinstance(values.get("outpaint"), list):
        values["outpaint"] = tuple(values["outpaint"])
    return ImageInput(**values)


def grown_size(request: GenerationRequest, value: int, *, horizontal: bool) -> int:
    """Width (``horizontal``) or height ``value`` after the outpaint border and the hires scale."""
    if request.source is not None:
        left, top, right, bottom = request.source.outpaint
        value += left + right if horizontal else top + bottom
    if request.hires is not None:
        value = hires_size(value, request.hires.scale)
    return value


def hires_size(value: int, scale: float) -> int:
    """The hires pass's width or height: ``value * scale`` to the nearest multiple of 8, unclamped
    so that the checks can say how far past the limit it is."""
    return max(MIN_SIZE, math.floor(value * scale / 8 + 0.5) * 8)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class StepPreview:
    """The model's current denoised estimate (x0) after one sampler step, as RGB uint8 (H, W, 3)."""

    step: int  # 1-based index of the completed sampler step
    total: int
    sampler: str
    image: np.ndarray
    elapsed: float  # seconds since the denoising loop started
    evaluations: int  # model evaluations (UNet calls per sample) spent so far


@dataclass(frozen=True)
class GenerationResult:
    request: GenerationRequest  # with the seed and size actually used
    image: Any | None  # PIL.Image.Image, None when cancelled
    cancelled: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    condition_maps: tuple[Any, ...] = ()  # the PIL images each active ControlNet received
    warnings: tuple[str, ...] = ()
    latents: Any | None = None  # final latents (torch tensor, CPU) for tests and re-decoding
    precision: str = ""  # the weights' number format of the run: "fp32", "bf16" or "fp16"
    images: tuple[Any, ...] = ()  # every image of a batch (batch_size > 1), ``image`` first
