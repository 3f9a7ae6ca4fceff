"""Run a :class:`GenerationRequest`: load (and keep) the model, denoise, stream x0 previews, cancel.

The engine keeps the loaded base model between runs; prompt, seed, sampler and control images never
reload weights, and changing the set of ControlNets only re-assembles the pipeline around the same
base components.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipelines import bundled_model, cpu, device_tuning, flow, hires, models, rework
from pipelines.batches import batch_frame, batch_noise, sampler_generators
from pipelines.branching import apply_branch, branch_checker, check_sampler_switches
from pipelines.bundled_model import is_bundled_model, sampler_warning
from pipelines.conditions import prepare_condition
from pipelines.denoised import denoised_estimate
from pipelines.errors import ModelNotFoundError, OutOfMemoryError, ValidationError
from pipelines.flow_samplers import sampler_for
from pipelines.preview_choice import describe, pacer_for
from pipelines.preview_costs import measure_costs
from pipelines.previews import PendingFrame, PreviewDecoder, final_preview
from pipelines.prompt_encoding import Conditioning
from pipelines.prompt_setup import PromptResources
from pipelines.resources import resource_path
from pipelines.run_control import RunControl
from pipelines.schedules import SyncFreeSchedule
from pipelines.types import (  # EngineSettings is re-exported: callers import it from here
    ControlKind,
    ControlUnit,
    EngineSettings,
    GenerationRequest,
    GenerationResult,
    ModelFamily,
    PreviewMode,
    StepPreview,
)

if TYPE_CHECKING:
    from diffusers import AutoencoderTiny, DiffusionPipeline
    from PIL import Image

log = logging.getLogger(__name__)

# torchsde's Brownian tree warns about float rounding at the end of the interval; it is harmless.
warnings.filterwarnings("ignore", message="Should have tb<=t1", category=UserWarning)

StepCallback = Callable[[StepPreview], None]
PreviewGate = Callable[[], bool]
ProgressCallback = Callable[[float, str], None]

_MAX_CACHED_CONTROLNETS = 4


@dataclass
class LoadedModel:
    path: Path
    family: ModelFamily
    pipeline: DiffusionPipeline  # StableDiffusionPipeline or StableDiffusionXLPipeline
    scheduler_config: Any
    previews: PreviewDecoder
    native_size: tuple[int, int]  # width, height
    cpu_offload: bool
    scale_factor: int = 8  # image pixels per latent pixel, from the VAE's own layout
    unet_parameters: int = 0  # the work per latent pixel, for choosing CPU threads
    weights: flow.WeightOptions = flow.FULL_WEIGHTS  # how the weights are stored and placed
    vae_fallback_said: bool = False  # a half-precision VAE overflow was reported already


@dataclass(frozen=True)
class PreparedRun:
    """Everything a denoising pass over one request needs, decided once, before any step.

    :meth:`Engine.run` executes one; a comparison runs one per sampler from the same preparation
    (:meth:`with_changes`), so every column shares the model, control images and starting noise.
    Schedulers hold per-run state, so each pass takes a fresh one from :meth:`new_scheduler`.
    """

    request: GenerationRequest  # validated; seed and size resolved
    model: LoadedModel
    pipeline: DiffusionPipeline  # the base pipeline, or a ControlNet one around the same weights
    condition_maps: tuple[Image.Image, ...]  # the exact images the active ControlNets receive
    warnings: tuple[str, ...]  # what the user should know (e.g. a truncated prompt)
    initial_noise: torch.Tensor  # (1, C, H / scale, W / scale), CPU float32
    device: torch.device
    dtype: torch.dtype
    conditioning: Conditioning | None = None  # the encoded prompts; None: the pipeline encodes
    rework: rework.ReworkPlan | None = None  # the picture a reworking run starts from

    @property
    def precision(self) -> str:
        return precision_name(self.dtype)

    @property
    def total_steps(self) -> int:
        """The steps the run really spends (a reworking run: its strength's share)."""
        return self.rework.steps(self.request.steps) if self.rework else self.request.steps

    @property
    def guided(self) -> bool:
        # the pipelines' do_classifier_free_guidance; Flux's guidance is an input, not a pass
        return flow.runs_two_passes(self.model.family, self.request.cfg_scale)

    @property
    def latent_pixels(self) -> int:
        return int(self.initial_noise.shape[-2] * self.initial_noise.shape[-1])

    def new_scheduler(self) -> Any:
        spec = sampler_for(self.request.sampler, self.model.family, self.model.scheduler_config)
        return spec.make(self.model.scheduler_config, seed=self.request.seed)

    def sampler_generator(self) -> torch.Generator | list[torch.Generator]:
        # A separate stream for the samplers' fresh noise, so ancestral runs are reproducible. On
        # the model's device: noise drawn on the CPU would be copied to the GPU at every step, and
        # each copy makes the host wait for the GPU. A batch: one stream per image.
        return sampler_generators(self.request.seed, self.request.batch_size, self.device)

    def with_changes(
        self,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        preview: PreviewMode | None = None,
    ) -> PreparedRun:
        """The same preparation with another sampler, step count or preview: none of them changes
        the model, the control images or the starting noise."""
        changes: dict[str, Any] = {}
        if sampler is not None:
            changes["sampler"] = sampler
        if steps is not None:
            changes["steps"] = steps
        if preview is not None:
            changes["preview"] = preview
        request = replace(self.request, **changes)
        request.validate()
        return replace(self, request=request)

    def apply_memory_options(self) -> None:
        device_tuning.apply_memory_options(self.pipeline, self.request.memory)


class _Cancelled(Exception):
    pass


def default_model_path() -> Path:
    return resource_path(*bundled_model.FOLDER)


def sampler_notes(prepared: PreparedRun, samplers: Sequence[str]) -> tuple[str, ...]:
    """Where the bundled model runs: a warning for the ``samplers`` it draws noise with at the
    run's CFG (pipelines.bundled_model)."""
    if not is_bundled_model(prepared.model.path):
        return ()
    warning = sampler_warning(samplers, prepared.request.cfg_scale)
    return (warning,) if warning else ()


def _absolute_paths(units: tuple[ControlUnit, ...]) -> tuple[ControlUnit, ...]:
    # The resolved request goes into PNG metadata and the history: a path relative to the folder
    # the run started in would find nothing once restored from another one.
    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().absolute()) if path else path

    return tuple(replace(u, image=absolute(u.image), model=absolute(u.model)) for u in units)


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValidationError("The device is set to CUDA, but no usable CUDA GPU is here; choose "
                              "Auto or CPU in Settings → Device.")  # fmt: skip
    mps = getattr(torch.backends, "mps", None)
    if preference == "mps" and not (mps is not None and mps.is_available()):
        raise ValidationError("The device is set to MPS, but Apple's GPU is not available here; "
                              "choose Auto or CPU in Settings → Device.")  # fmt: skip
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def pick_dtype(
    device: torch.device,
    precision: str = "auto",
    cpu_flags: frozenset[str] | None = None,
    parameters: int | None = None,
) -> torch.dtype:
    """The weights' number format. ``cpu_flags`` are the CPU's feature flags (read when omitted),
    ``parameters`` the denoiser's size (None: not known yet)."""
    if precision in _PRECISIONS:
        return _PRECISIONS[precision]
    # Half precision halves memory and doubles speed on GPUs.
    if device.type in ("cuda", "mps"):
        return torch.float16
    # CPUs have no fast fp16 kernels; bf16 is fast only where the CPU has bf16 units, and
    # emulated (slower than fp32) everywhere else; even there a small denoiser runs faster in fp32.
    return torch.bfloat16 if cpu.bf16_pays(parameters, cpu_flags) else torch.float32


def precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in _PRECISIONS.items() if value == dtype)


class Engine:
    """Runs requests on one loaded model. Safe to share between threads: runs take turns."""

    def __init__(self, settings: EngineSettings | None = None) -> None:
        models.set_offline_environment()
        self.settings = settings or EngineSettings()
        self.device = pick_device(self.settings.device)
        self.dtype = pick_dtype(self.device, self.settings.precision)
        self._loaded: LoadedModel | None = None
        self._vae_notes: list[str] = []  # said by the VAE guard during the current run
        self._controlnets: dict[Path, tuple[Any, ModelFamily]] = {}
        self._assembled: dict[tuple[Path, tuple[Path, ...]], DiffusionPipeline] = {}
        self._prompts = PromptResources(self.settings)  # LoRA adapters, embeddings, encoding
        # Re-entrant: a comparison holds it across its passes, each of which may be a run.
        self._lock = threading.RLock()

    @property
    def precision(self) -> str:
        """The weights' number format in use: "fp32", "bf16" or "fp16"."""
        return precision_name(self.dtype)

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
        weights: flow.WeightOptions = flow.FULL_WEIGHTS,
    ) -> LoadedModel:
        path = self.resolve_model_path(model)
        with self._lock:
            loaded = self._loaded
            if loaded and loaded.path == path and loaded.cpu_offload == cpu_offload:
                if loaded.weights == weights or not loaded.family.is_flow:
                    return loaded
            self._unload()
            report = on_progress or (lambda fraction, message: None)
            report(0.05, f"Loading {path.name}…")
            # "auto" on a CPU: bf16 only for a denoiser large enough, known once loaded in fp32.
            settle = self.settings.precision == "auto" and self.device.type == "cpu"
            pipe, family = models.load_base_pipeline(
                path, device="cpu", dtype=torch.float32 if settle else self.dtype,
                allow_pickle=self.settings.allow_pickle,
            )  # fmt: skip
            if settle:
                size = sum(p.numel() for p in flow.denoiser(pipe).parameters())
                dtype = pick_dtype(self.device, "auto", parameters=size)
                if dtype != self.dtype:  # ControlNets kept in the other format would not fit
                    self._controlnets.clear()
                self.dtype = dtype
                pipe.to(dtype)
            pipe.set_progress_bar_config(disable=True)
            report(0.7, f"Moving {path.name} to {self.device.type.upper()}…")
            # Offloading only helps where the model would otherwise sit in GPU memory.
            cpu_offload = cpu_offload and self.device.type == "cuda"
            # fp8 and sequential offload are for the large flow transformers; a UNet breaks on them.
            weights = weights if family.is_flow else flow.FULL_WEIGHTS
            flow.store_weights(pipe, weights, self.dtype)
            if weights.sequential_offload and self.device.type == "cuda":
                pipe.enable_sequential_cpu_offload()
            elif cpu_offload:
                pipe.enable_model_cpu_offload()
            else:
                pipe.to(self.device)
                self._tune(pipe)
            report(0.85, "Preparing previews…")
            previews = PreviewDecoder(
                pipe.vae, self._load_tiny_vae(family), upcast=family is ModelFamily.SDXL
            )
            previews.linear  # noqa: B018 - fit now so the first step's preview costs nothing
            scale = pipe.vae_scale_factor
            size = flow.native_latent_side(pipe) * scale
            # Offloaded weights would move for every timed call; the probe times a UNet's step.
            if not cpu_offload and not family.is_flow:
                report(0.9, "Measuring preview decoders…")
                self._measure_previews(pipe, previews)
            self._loaded = LoadedModel(
                path=path,
                family=family,
                pipeline=pipe,
                scheduler_config=pipe.scheduler.config,
                previews=previews,
                native_size=(size, size),
                cpu_offload=cpu_offload,
                scale_factor=scale,
                unet_parameters=sum(p.numel() for p in flow.denoiser(pipe).parameters()),
                weights=weights,
            )
            report(
                1.0, f"{path.name} ready ({family.label}, {self.device.type}, {self.precision})."
            )
            return self._loaded

    def _tune(self, pipe: DiffusionPipeline) -> None:
        done = device_tuning.tune_for_device(pipe, self.device)
        if self.settings.compile and getattr(pipe, "unet", None) is not None:  # not a flow model
            device_tuning.compile_unet(pipe)
            done.append("compiled UNet")
        if done:
            log.info("tuned for %s: %s", self.device, ", ".join(done))

    def _vae_fell_back(self, note: str) -> None:
        # Said once per model: the log, and the first run's result.
        loaded = self._loaded
        if loaded is not None and not loaded.vae_fallback_said:
            loaded.vae_fallback_said = True
            log.warning("%s: %s", loaded.path.name, note)
            self._vae_notes.append(note)

    def _measure_previews(self, pipe: DiffusionPipeline, previews: PreviewDecoder) -> None:
        native = int(pipe.unet.config.sample_size)
        parameters = sum(p.numel() for p in pipe.unet.parameters())
        with contextlib.ExitStack() as stack:
            if self.device.type == "cpu":
                count = cpu.choose_threads(
                    native * native * 2, parameters, setting=self.settings.threads
                )
                stack.enter_context(cpu.thread_count(count))
            previews.costs = measure_costs(pipe.unet, previews, (native, native))
        log.info("previews: %s", describe(previews.costs))

    def _load_tiny_vae(self, family: ModelFamily) -> AutoencoderTiny | None:
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

    def _controlnet(self, path: Path, family: ModelFamily) -> Any:
        if path not in self._controlnets:
            controlnet, _ = models.load_controlnet(
                path, device="cpu", dtype=self.dtype, allow_pickle=self.settings.allow_pickle
            )
            if len(self._controlnets) >= _MAX_CACHED_CONTROLNETS:
                self._controlnets.pop(next(iter(self._controlnets)))
            controlnet = controlnet.to(self.device)
            if self.device.type == "cuda":  # as the UNet: see device_tuning
                controlnet.to(memory_format=torch.channels_last)
                device_tuning.fuse_qkv(controlnet)
            self._controlnets[path] = (controlnet, family)
        return self._controlnets[path][0]

    def _pipeline_for(
        self, loaded: LoadedModel, controlnet_paths: tuple[Path, ...]
    ) -> DiffusionPipeline:
        if not controlnet_paths:
            return loaded.pipeline
        key = (loaded.path, controlnet_paths)
        if key not in self._assembled and loaded.family.is_flow:
            nets = [self._controlnet(p, loaded.family) for p in controlnet_paths]
            self._assembled = {key: flow.controlnet_pipeline(loaded.pipeline, loaded.family, nets)}
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
    ) -> PreparedRun:
        """Validate ``request``, load its model, resolve its seed and size, and build every input
        of the denoising pass: the pipeline with its ControlNets, control images, starting noise."""
        request.validate()
        with self._lock:
            loaded = self.load(request.model, request.memory.cpu_offload, on_progress,
                               flow.WeightOptions.of(request.memory))  # fmt: skip
            width, height = loaded.native_size
            request = replace(
                request,
                width=request.width or width,
                height=request.height or height,
                controls=_absolute_paths(request.controls),
                source=rework.absolute_source(request.source),
            ).resolve_seed()
            _check_size(request, loaded.scale_factor)
            if loaded.family.is_flow:  # before the branches' checks, which build UNet samplers
                flow.check_request(request, loaded.family)
            check_sampler_switches(request, loaded.scheduler_config)
            request.check_grown_sizes()  # the native size is known only now
            sampler_for(request.sampler, loaded.family, loaded.scheduler_config)  # runnable here
            notes = []
            if loaded.family.is_flow:
                request, notes = flow.adjust_request(loaded.pipeline, loaded.family, request)
            units = request.active_controls
            controlnet_paths = tuple(self._check_controls(loaded, units))
            plan, rework_notes = rework.prepare_source(request)
            maps = self._condition_maps(rework.canvas_request(request))
            pipe = self._pipeline_for(loaded, controlnet_paths)
            if loaded.family.is_flow:  # the pipeline reads the prompt as plain text
                conditioning = None
                notes += flow.prompt_notes(request) + rework_notes
                flow.refuse_rework(plan, loaded.family)
                channels = flow.latent_channels(pipe)
            else:
                prompts = self._prompts.prepare(
                    loaded.pipeline, loaded.family, loaded.path, request, request.cfg_scale > 1.0
                )
                request = prompts.recorded(request)
                conditioning = prompts.conditioning
                notes += list(prompts.warnings) + rework_notes
                channels = pipe.unet.config.in_channels
            if plan is None and channels == 9:  # an inpainting UNet runs in its own pipeline
                plan = rework.text_to_image_plan(request)
            if plan is not None:
                pipe = rework.inpainting_pipeline(pipe, loaded.family)
                channels = pipe.vae.config.latent_channels
            noise = self.initial_noise(
                rework.run_request(request, plan), channels, loaded.scale_factor
            )
            return PreparedRun(
                request=request,
                model=loaded,
                pipeline=pipe,
                condition_maps=tuple(maps),
                warnings=tuple(notes),
                initial_noise=noise,
                device=self.device,
                dtype=self.dtype,
                conditioning=conditioning,
                rework=plan,
            )

    def _check_controls(self, loaded: LoadedModel, units: tuple[ControlUnit, ...]) -> list[Path]:
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

    @contextlib.contextmanager
    def exclusive(self, prepared: PreparedRun | None = None, batch: int = 1) -> Iterator[None]:
        """Hold the engine for the block: runs from other threads wait until it ends.

        With ``prepared``, torch also gets the CPU thread count chosen for its work (``batch``
        images per model call). A comparison holds the engine across all of its passes.
        """
        with self._lock, contextlib.ExitStack() as stack:
            if prepared is not None and self.device.type == "cpu":
                model = prepared.model
                count = cpu.choose_threads(
                    prepared.latent_pixels * batch,
                    model.unet_parameters,
                    setting=self.settings.threads,
                )
                stack.enter_context(cpu.thread_count(count))
            yield

    def run(
        self,
        request: GenerationRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
        wants_preview: PreviewGate | None = None,
        control: RunControl | None = None,
    ) -> GenerationResult:
        with self._lock:
            prepared = self.prepare(request, on_progress)
            return self.execute(prepared, on_step, cancel, wants_preview, control)

    def execute(
        self,
        prepared: PreparedRun,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
        wants_preview: PreviewGate | None = None,
        control: RunControl | None = None,
    ) -> GenerationResult:
        """Denoise a prepared run with a scheduler of its own.

        ``on_step`` gets a decoded x0 preview after each completed step. ``wants_preview``, when
        given, is asked first: while it says False (the consumer has not taken the previous
        frame yet) the step is neither decoded nor reported; the last step always is, and so is
        a step ``control`` holds the run after (pause, step, branch: see pipelines.run_control).
        """
        request = prepared.request
        if request.hires is not None:  # two passes, each one of these runs
            return hires.run_hires(self, prepared, on_step, cancel, wants_preview)
        pipe = prepared.pipeline
        with self.exclusive(prepared, batch=(2 if prepared.guided else 1) * request.batch_size):
            prepared.apply_memory_options()
            pipe.scheduler = prepared.new_scheduler()
            control = control or RunControl()
            control.begin(request, branch_checker(prepared.model.scheduler_config),
                          prepared.total_steps)  # fmt: skip
            tracker = _StepTracker(
                pipe.scheduler,
                request,
                prepared.model.previews,
                on_step,
                cancel or threading.Event(),
                wants_preview,
                control,
                latent_pixels=prepared.latent_pixels,
                total=prepared.total_steps,
                compose=prepared.rework.compose_preview if prepared.rework else None,
            )
            kwargs = self._call_arguments(prepared)
            started = time.perf_counter()
            self._vae_notes = []
            guard = device_tuning.VaeGuard(pipe.vae, self._vae_fell_back, armed=False)
            tracker.after_loop = guard  # armed at the last step: previews are never checked
            try:
                with torch.inference_mode(), guard, flow.seeded_sampling(prepared):
                    output = pipe(**kwargs, callback_on_step_end=tracker.on_step_end)
            except _Cancelled:
                return GenerationResult(
                    request=request,
                    image=None,
                    cancelled=True,
                    timings={"denoise": time.perf_counter() - started},
                    condition_maps=prepared.condition_maps,
                    warnings=prepared.warnings + sampler_notes(prepared, [request.sampler]),
                    precision=prepared.precision,
                )
            except torch.cuda.OutOfMemoryError as error:
                self.recover_memory()
                raise OutOfMemoryError(
                    f"The GPU ran out of memory at {request.width}x{request.height}. Lower the "
                    "size, or switch on attention slicing, VAE tiling or CPU offload in Settings."
                ) from error
            finally:
                tracker.detach()
            image = (
                prepared.rework.finish(output.images[0]) if prepared.rework else output.images[0]
            )
            tracker.deliver_final(image)
        return GenerationResult(
            request=replace(request, branches=control.branches()),  # with those made while held
            image=image,
            images=tuple(output.images) if request.batch_size > 1 else (),
            timings={**tracker.timings, "total": time.perf_counter() - started},
            condition_maps=prepared.condition_maps,
            warnings=(
                prepared.warnings
                + sampler_notes(prepared, [request.sampler])
                + tuple(self._vae_notes)
            ),
            latents=tracker.final_latents,
            precision=prepared.precision,
        )

    def _condition_maps(self, request: GenerationRequest) -> list[Image.Image]:
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

    def initial_noise(
        self, request: GenerationRequest, channels: int = 4, scale_factor: int | None = None
    ) -> torch.Tensor:
        """The starting latents of ``request`` (seed and size resolved); ``scale_factor`` is the
        VAE's, the loaded model's when omitted."""
        if scale_factor is None:
            scale_factor = self._loaded.scale_factor if self._loaded else 8
        _check_size(request, scale_factor)
        # Drawn on the CPU so a seed gives the same picture on every device.
        shape = (1, channels, request.height // scale_factor, request.width // scale_factor)
        return batch_noise(request.seed, request.batch_size, shape)

    def _call_arguments(self, prepared: PreparedRun) -> dict[str, Any]:
        request, maps = prepared.request, prepared.condition_maps
        units = request.active_controls
        if prepared.conditioning is not None:
            prompts = prepared.conditioning.pipeline_arguments()
        else:
            prompts = dict(prompt=request.prompt, negative_prompt=request.negative_prompt or None)
        kwargs = dict(
            **prompts,
            num_inference_steps=request.steps,
            num_images_per_prompt=request.batch_size,
            guidance_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            latents=prepared.initial_noise.to(prepared.device, prepared.dtype),
            generator=prepared.sampler_generator(),
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
        if prepared.rework is not None:
            kwargs = prepared.rework.call_arguments(kwargs, controlnet=bool(units))
        if prepared.model.family.is_flow:
            kwargs = flow.call_arguments(prepared.model.family, kwargs, prepared.pipeline, units)
        return kwargs


def _check_size(request: GenerationRequest, scale_factor: int) -> None:
    # The VAE turns each latent pixel into scale_factor x scale_factor image pixels: any other size
    # would come out cropped, labelled with the size that was asked for.
    for name, value in (("Width", request.width), ("Height", request.height)):
        if value % scale_factor:
            lower = value - value % scale_factor
            upper = lower + scale_factor
            raise ValidationError(
                f"{name} {value} is not a multiple of {scale_factor}, which this model's VAE "
                f"needs; use {max(lower, scale_factor)} or {upper}."
            )


class _StepTracker:
    """Watches the scheduler's steps to stream x0 previews and to stop on cancel."""

    def __init__(
        self,
        scheduler: Any,
        request: GenerationRequest,
        previews: PreviewDecoder,
        on_step: StepCallback | None,
        cancel: threading.Event,
        wants_preview: PreviewGate | None = None,
        control: RunControl | None = None,
        latent_pixels: int = 0,
        total: int | None = None,
        compose: Callable[[Any], Any] | None = None,  # the preview shown in the whole picture
    ) -> None:
        self.control = control or RunControl()
        self.total = total or request.steps
        self.compose = compose
        self.request = request
        self.previews = previews
        self.plan = previews.plan(request.preview, latent_pixels)
        costs = previews.costs.at(latent_pixels) if previews.costs and latent_pixels else None
        self.pacer = pacer_for(self.plan, costs)
        self.on_step = on_step
        self.cancel = cancel
        self.wants_preview = wants_preview
        self.evaluations = 0
        self.completed = 0
        self.denoised: torch.Tensor | None = None
        self.final_latents: torch.Tensor | None = None
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()
        self._last_elapsed = 0.0
        self._pending: list[tuple[PendingFrame, StepPreview]] = []  # decoded, not handed on yet
        self._final: torch.Tensor | None = None  # the last step's latents, on the device
        self._shown: Any | None = None  # the newest frame handed on
        self.after_loop: device_tuning.VaeGuard | None = None  # checks the final decode
        self._calls = 0  # scheduler steps so far (an index into the schedule)
        self._attach(scheduler)

    def _attach(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.schedule = SyncFreeSchedule(scheduler)
        self._original_step = scheduler.step

        # wraps() keeps the signature: pipelines only pass `generator` to schedulers that accept it.
        @functools.wraps(self._original_step)
        def step(*args: Any, **kwargs: Any) -> Any:
            return self._step(*args, **kwargs)

        scheduler.step = step

    def swap_scheduler(self, scheduler: Any) -> None:
        """Go on with another scheduler (a branch switched the sampler)."""
        self.scheduler.step = self._original_step
        self._attach(scheduler)

    def detach(self) -> None:
        self.scheduler.step = self._original_step
        self.control.end()

    def _step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        step_index = getattr(self.scheduler, "step_index", None)
        timestep = self.schedule.host_timestep(self._calls, timestep)
        self._calls += 1
        output = self._original_step(model_output, timestep, sample, *args, **kwargs)
        if step_index is None:  # the first step: the scheduler set its index inside step()
            after = getattr(self.scheduler, "step_index", None)
            step_index = None if after is None else after - 1
        if self.on_step is not None and self.plan.mode is not PreviewMode.NONE:
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

    def _preview(self, image: Any, elapsed: float) -> StepPreview:
        return StepPreview(
            step=self.completed,
            total=self.total,
            sampler=self.request.sampler,
            image=image,
            elapsed=elapsed,
            evaluations=self.evaluations,
        )

    def _hand_on_ready_frames(self, wait: bool = False) -> None:
        while self._pending and (wait or self._pending[0][0].ready()):
            frame, preview = self._pending.pop(0)
            image = frame.array()
            if self.compose is not None:
                image = self.compose(image)
            self._shown = image
            self.on_step(replace(preview, image=image))

    def deliver_final(self, image: Image.Image) -> None:
        """The frames still on their way, then the last step's: the decoded final image, never an
        estimate. Also keeps the final latents on the host."""
        if self._final is not None:
            self.final_latents = self._final.detach().float().cpu()
        self._hand_on_ready_frames(wait=True)
        if self.on_step is not None and self.plan.mode is not PreviewMode.NONE:
            self.on_step(self._preview(final_preview(image), self._last_elapsed))

    def on_step_end(
        self,
        pipe: DiffusionPipeline,
        step: int,
        timestep: torch.Tensor | float,
        callback_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        self.evaluations += 1
        if self.cancel.is_set():
            raise _Cancelled
        is_last = step == pipe.num_timesteps - 1
        if self._step_completed(is_last=is_last):
            self.completed += 1
            elapsed = time.perf_counter() - self.started
            if self.completed == 1:
                self.timings["first_step"] = elapsed
            # The last step is the final image, delivered once the pipeline has decoded it
            # (deliver_final). A consumer still holding the previous frame would drop this one:
            # skip its decoding. A step the run holds after (pause) is always shown, at once.
            holds = not is_last and self.control.decide()
            wanted = not is_last and (holds or self.wants_preview is None or self.wants_preview())
            self._hand_on_ready_frames(wait=holds)
            # At most one frame in flight: a consumer cannot take frames faster than that.
            ready = self.on_step is not None and self.denoised is not None and not self._pending
            due = self.plan.decodes(self.completed) and self.pacer.allows(elapsed)
            if wanted and ready and (holds or due):
                decoding = time.perf_counter()
                latents = flow.spatial(self.denoised, self.request)
                frame = batch_frame(self.previews, latents, self.plan.mode)
                if frame is not None:
                    self._pending.append((frame, self._preview(None, elapsed)))
                self._hand_on_ready_frames(wait=holds)
                spent = time.perf_counter() - decoding
                if latents.device.type == "cuda":  # the host saw only the side stream's launch
                    spent = max(spent, self.pacer.expected)
                self.pacer.record(spent)
            elif wanted and ready and self._shown is not None:
                # A step between two decodes of a strided plan: the newest frame again, so the
                # step count and the time left still move on.
                self.on_step(self._preview(self._shown, elapsed))
            self._last_elapsed = elapsed
            if holds:
                self.control.hold(self.completed, self.cancel)
            if not is_last and self.control.branch_at(self.completed) and not self.cancel.is_set():
                request = replace(self.request, branches=self.control.branches())
                callback_kwargs = apply_branch(self, pipe, self.control, request, self.completed,
                                               callback_kwargs)  # fmt: skip
        if step == pipe.num_timesteps - 1:
            # Copied to the host after the loop (deliver_final): a copy here would wait for the GPU.
            self._final = flow.spatial(callback_kwargs["latents"], self.request)
            if self.after_loop is not None:
                self.after_loop.armed = True
            self.timings["denoise"] = time.perf_counter() - self.started
        if self.cancel.is_set():
            raise _Cancelled
        return callback_kwargs
