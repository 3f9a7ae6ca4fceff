"""Run a :class:`GenerationRequest`: load (and keep) the model, denoise, stream x0 previews, cancel.

The engine keeps the loaded base model between runs; prompt, seed, sampler and control images never
reload weights, and changing the set of ControlNets only re-assembles the pipeline around the same
base components.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from pipelines import models
from pipelines.conditions import prepare_condition
from pipelines.denoised import denoised_estimate
from pipelines.errors import ModelNotFoundError, OutOfMemoryError
from pipelines.previews import PreviewDecoder
from pipelines.prompts import prompt_report, truncation_warning
from pipelines.resources import resource_path
from pipelines.samplers import get_sampler
from pipelines.types import (
    ControlKind,
    ControlUnit,
    GenerationRequest,
    GenerationResult,
    ModelFamily,
    PreviewMode,
    StepPreview,
)

log = logging.getLogger(__name__)

# torchsde's Brownian tree warns about float rounding at the end of the interval; it is harmless.
warnings.filterwarnings("ignore", message="Should have tb<=t1", category=UserWarning)

StepCallback = Callable[[StepPreview], None]
ProgressCallback = Callable[[float, str], None]

DEFAULT_MODEL_FOLDER = ("models", "toy-world")
_MAX_CACHED_CONTROLNETS = 4


@dataclass(frozen=True)
class EngineSettings:
    model_folders: tuple[Path, ...] = ()
    annotator_folders: tuple[Path, ...] = ()
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp16 | bf16 | fp32
    allow_pickle: bool = False  # .ckpt / .pt files run code when loaded: only on explicit opt-in
    tiny_vae: dict[str, Path] = field(
        default_factory=dict
    )  # family value -> AutoencoderTiny folder


@dataclass
class LoadedModel:
    path: Path
    family: ModelFamily
    pipeline: object  # StableDiffusionPipeline or StableDiffusionXLPipeline
    scheduler_config: object
    previews: PreviewDecoder
    native_size: tuple[int, int]  # width, height
    cpu_offload: bool


class _Cancelled(Exception):
    pass


def default_model_path() -> Path:
    return resource_path(*DEFAULT_MODEL_FOLDER)


def pick_device(preference: str = "auto") -> torch.device:
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    named = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if precision in named:
        return named[precision]
    # Half precision halves memory and doubles speed on GPUs; CPUs have no fast fp16 kernels.
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


class Engine:
    def __init__(self, settings: EngineSettings | None = None) -> None:
        models.set_offline_environment()
        self.settings = settings or EngineSettings()
        self.device = pick_device(self.settings.device)
        self.dtype = pick_dtype(self.device, self.settings.precision)
        self._loaded: LoadedModel | None = None
        self._controlnets: dict[Path, tuple[object, ModelFamily]] = {}
        self._assembled: dict[tuple, object] = {}
        self._lock = threading.Lock()

    # ---- models -------------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def resolve_model_path(self, model: str) -> Path:
        if not model:
            path = default_model_path()
            if not path.exists():
                raise ModelNotFoundError(
                    "No model is configured and the bundled default model is missing. Choose a "
                    "model file (.safetensors) or a diffusers folder in Settings, or pass --model."
                )
            return path
        path = Path(model).expanduser()
        if path.exists():
            return path.resolve()
        found = models.discover_models(self.settings.model_folders)
        for info in found.bases():
            if info.name == model or info.path.name == model or info.path.stem == model:
                return info.path
        looked = ", ".join(str(p) for p in found.searched) or "no folders"
        raise ModelNotFoundError(f"Model {model!r} was not found. Looked in: {looked}.")

    def load(
        self,
        model: str = "",
        cpu_offload: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> LoadedModel:
        path = self.resolve_model_path(model)
        with self._lock:
            loaded = self._loaded
            if loaded and loaded.path == path and loaded.cpu_offload == cpu_offload:
                return loaded
            self._unload()
            report = on_progress or (lambda fraction, message: None)
            report(0.05, f"Loading {path.name}…")
            pipe, family = models.load_base_pipeline(
                path, device="cpu", dtype=self.dtype, allow_pickle=self.settings.allow_pickle
            )
            pipe.set_progress_bar_config(disable=True)
            report(0.7, f"Moving {path.name} to {self.device.type.upper()}…")
            # Offloading only helps where the model would otherwise sit in GPU memory.
            cpu_offload = cpu_offload and self.device.type == "cuda"
            if cpu_offload:
                pipe.enable_model_cpu_offload()
            else:
                pipe.to(self.device)
            report(0.85, "Preparing previews…")
            previews = PreviewDecoder(
                pipe.vae, self._load_tiny_vae(family), upcast=family is ModelFamily.SDXL
            )
            previews.linear  # noqa: B018 - fit now so the first step's preview costs nothing
            scale = pipe.vae_scale_factor
            size = int(pipe.unet.config.sample_size) * scale
            self._loaded = LoadedModel(
                path=path,
                family=family,
                pipeline=pipe,
                scheduler_config=pipe.scheduler.config,
                previews=previews,
                native_size=(size, size),
                cpu_offload=cpu_offload,
            )
            report(1.0, f"{path.name} ready ({family.label}, {self.device.type}).")
            return self._loaded

    def _load_tiny_vae(self, family: ModelFamily):
        folder = self.settings.tiny_vae.get(family.value)
        if not folder:
            found = models.discover_models(self.settings.model_folders).tiny_vaes()
            matches = [m.path for m in found if m.family is family]
            if not matches:
                return None
            folder = matches[0]
        from diffusers import AutoencoderTiny

        try:
            tiny = AutoencoderTiny.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            log.warning("tiny preview decoder %s not usable: %s", folder, error)
            return None
        return tiny.to(self.device, self.dtype)

    def _unload(self) -> None:
        self._loaded = None
        self._assembled.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _controlnet(self, path: Path, family: ModelFamily) -> object:
        if path not in self._controlnets:
            controlnet, _ = models.load_controlnet(
                path, device="cpu", dtype=self.dtype, allow_pickle=self.settings.allow_pickle
            )
            if len(self._controlnets) >= _MAX_CACHED_CONTROLNETS:
                self._controlnets.pop(next(iter(self._controlnets)))
            self._controlnets[path] = (controlnet.to(self.device), family)
        return self._controlnets[path][0]

    def pipeline_for(self, loaded: LoadedModel, controlnet_paths: tuple[Path, ...]):
        if not controlnet_paths:
            return loaded.pipeline
        key = (loaded.path, controlnet_paths)
        if key not in self._assembled:
            from diffusers import (
                StableDiffusionControlNetPipeline,
                StableDiffusionXLControlNetPipeline,
            )

            cls = (
                StableDiffusionXLControlNetPipeline
                if loaded.family is ModelFamily.SDXL
                else StableDiffusionControlNetPipeline
            )
            nets = [self._controlnet(p, loaded.family) for p in controlnet_paths]
            components = dict(loaded.pipeline.components)
            components["controlnet"] = nets[0] if len(nets) == 1 else nets
            if loaded.family is ModelFamily.SD1:
                components.update(safety_checker=None, feature_extractor=None)
                components["requires_safety_checker"] = False
            wanted = set(cls._get_signature_keys(cls)[0]) | set(cls._optional_components)
            pipe = cls(**{k: v for k, v in components.items() if k in wanted})
            pipe.set_progress_bar_config(disable=True)
            self._assembled = {key: pipe}  # keep one assembly: others share the same weights anyway
        return self._assembled[key]

    def default_controlnet(self, model: str, kind: ControlKind) -> Path:
        """A ControlNet of ``kind`` for the model's family: beside the model first, then in the
        model folders."""
        base = self.resolve_model_path(model)
        family = models.detect_family(base)
        found = models.discover_models([base.parent, *self.settings.model_folders])
        candidates = [c for c in found.controlnets(family) if c.control_kind is kind]
        candidates.sort(key=lambda c: not c.path.is_relative_to(base.parent))
        if not candidates:
            looked = ", ".join(str(p) for p in found.searched)
            raise ModelNotFoundError(
                f"No {kind.value} ControlNet for {family.label} was found (looked in {looked}). "
                "Choose one explicitly."
            )
        return candidates[0].path

    # ---- requests -----------------------------------------------------------------------------
    def prepare(
        self, request: GenerationRequest, on_progress: ProgressCallback | None = None
    ) -> GenerationRequest:
        """Validate, load the model, and fill in the seed and the model's native size."""
        request.validate()
        loaded = self.load(request.model, request.memory.cpu_offload, on_progress)
        width, height = loaded.native_size
        request = replace(request, width=request.width or width, height=request.height or height)
        return request.resolve_seed()

    def check_controls(self, loaded: LoadedModel, units: tuple[ControlUnit, ...]) -> list[Path]:
        paths = []
        for unit in units:
            path = Path(unit.model).expanduser()
            if not path.exists():
                raise ModelNotFoundError(f"ControlNet model not found: {path}")
            # Read from the file's header/config only: a mismatch is reported before any weights load.
            family = models.detect_family(path)
            models.check_family(loaded.family, family, path)
            paths.append(path.resolve())
        return paths

    def run(
        self,
        request: GenerationRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        request = self.prepare(request, on_progress)
        loaded = self._loaded
        units = request.active_controls
        controlnet_paths = tuple(self.check_controls(loaded, units))
        maps = self.condition_maps(request)
        pipe = self.pipeline_for(loaded, controlnet_paths)
        self.apply_memory_options(pipe, request)
        notes = self.prompt_warnings(pipe, request)
        spec = get_sampler(request.sampler)
        pipe.scheduler = spec.make(loaded.scheduler_config, seed=request.seed)
        tracker = _StepTracker(
            pipe.scheduler, request, loaded.previews, on_step, cancel or threading.Event()
        )
        kwargs = self._call_arguments(pipe, request, units, maps)
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                output = pipe(**kwargs, callback_on_step_end=tracker.on_step_end)
        except _Cancelled:
            return GenerationResult(
                request=request,
                image=None,
                cancelled=True,
                timings={"denoise": time.perf_counter() - started},
                condition_maps=tuple(maps),
                warnings=tuple(notes),
            )
        except torch.cuda.OutOfMemoryError as error:
            self.recover_memory()
            raise OutOfMemoryError(
                f"The GPU ran out of memory at {request.width}x{request.height}. Lower the size, or "
                "switch on attention slicing, VAE tiling or CPU offload in Settings."
            ) from error
        finally:
            tracker.detach()
        return GenerationResult(
            request=request,
            image=output.images[0],
            timings={**tracker.timings, "total": time.perf_counter() - started},
            condition_maps=tuple(maps),
            warnings=tuple(notes),
            latents=tracker.final_latents,
        )

    def condition_maps(self, request: GenerationRequest) -> list:
        """The exact images the active ControlNets receive, at the request's (resolved) size."""
        return [
            prepare_condition(
                unit,
                request.width,
                request.height,
                self.settings.annotator_folders,
                device=self.device.type,
            )
            for unit in request.active_controls
        ]

    def recover_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def apply_memory_options(self, pipe, request: GenerationRequest) -> None:
        if request.memory.attention_slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
        if request.memory.vae_tiling:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()

    def prompt_warnings(self, pipe, request: GenerationRequest) -> list[str]:
        warnings = []
        for label, text in (
            ("prompt", request.prompt),
            ("negative prompt", request.negative_prompt),
        ):
            report = prompt_report(pipe.tokenizer, text)
            if not report.fits:
                warnings.append(truncation_warning(label, report))
        return warnings

    def initial_noise(self, request: GenerationRequest, channels: int = 4) -> torch.Tensor:
        # Drawn on the CPU so a seed gives the same picture on every device.
        generator = torch.Generator("cpu").manual_seed(request.seed)
        shape = (1, channels, request.height // 8, request.width // 8)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    def _call_arguments(self, pipe, request, units, maps) -> dict:
        latents = self.initial_noise(request, pipe.unet.config.in_channels)
        kwargs = dict(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            latents=latents.to(self.device, self.dtype),
            # A separate stream for the samplers' fresh noise, so ancestral runs are reproducible.
            generator=torch.Generator("cpu").manual_seed(request.seed + 1),
            callback_on_step_end_tensor_inputs=["latents"],
        )
        if units:
            single = len(units) == 1
            kwargs.update(
                image=maps[0] if single else list(maps),
                controlnet_conditioning_scale=units[0].strength
                if single
                else [u.strength for u in units],
                control_guidance_start=units[0].start if single else [u.start for u in units],
                control_guidance_end=units[0].end if single else [u.end for u in units],
            )
        return kwargs


class _StepTracker:
    """Watches the scheduler's steps to stream x0 previews and to stop on cancel."""

    def __init__(self, scheduler, request, previews, on_step, cancel: threading.Event) -> None:
        self.scheduler = scheduler
        self.request = request
        self.previews = previews
        self.on_step = on_step
        self.cancel = cancel
        self.evaluations = 0
        self.completed = 0
        self.denoised: torch.Tensor | None = None
        self.final_latents: torch.Tensor | None = None
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()
        self._original_step = scheduler.step

        # wraps() keeps the signature: pipelines only pass `generator` to schedulers that accept it.
        @functools.wraps(self._original_step)
        def step(*args, **kwargs):
            return self._step(*args, **kwargs)

        scheduler.step = step

    def detach(self) -> None:
        self.scheduler.step = self._original_step

    def _step(self, model_output, timestep, sample, *args, **kwargs):
        step_index = getattr(self.scheduler, "step_index", None)
        output = self._original_step(model_output, timestep, sample, *args, **kwargs)
        if self.on_step is not None and self.request.preview is not PreviewMode.NONE:
            self.denoised = denoised_estimate(
                self.scheduler, model_output, timestep, sample, step_index, output
            )
        return output

    def _step_completed(self, is_last: bool) -> bool:
        scheduler = self.scheduler
        if is_last:
            return True  # second-order samplers end on a single first-order evaluation
        if hasattr(scheduler, "state_in_first_order"):
            return bool(scheduler.state_in_first_order)
        if type(scheduler).__name__ == "PNDMScheduler":
            return scheduler.counter != 1  # PLMS spends its first step on a warm-up evaluation
        return True

    def on_step_end(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self.evaluations += 1
        if self.cancel.is_set():
            raise _Cancelled
        if self._step_completed(is_last=step == pipe.num_timesteps - 1):
            self.completed += 1
            elapsed = time.perf_counter() - self.started
            if self.completed == 1:
                self.timings["first_step"] = elapsed
            if self.on_step is not None and self.denoised is not None:
                image = self.previews.decode(self.denoised, self.request.preview)
                self.on_step(
                    StepPreview(
                        step=self.completed,
                        total=self.request.steps,
                        sampler=self.request.sampler,
                        image=image,
                        elapsed=elapsed,
                        evaluations=self.evaluations,
                    )
                )
        if step == pipe.num_timesteps - 1:
            self.final_latents = callback_kwargs["latents"].detach().float().cpu()
            self.timings["denoise"] = time.perf_counter() - self.started
        if self.cancel.is_set():
            raise _Cancelled
        return callback_kwargs
