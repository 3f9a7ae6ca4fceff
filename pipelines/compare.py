"""Several samplers on one request, step by step: the core of the "compare samplers" view.

Every column starts from the same initial noise (the request's seed), so the only difference between
columns is the sampler (and, when asked for, its step count). Columns that the batch can carry run in
*lockstep*: one UNet (and ControlNet) call per step for all of them, each sample with its own
timestep, after which each column's own scheduler instance steps its own slice. A lockstep column
gives the same image as :meth:`Engine.run <pipelines.engine.Engine.run>` with that sampler (up to
float rounding from the larger batch); the rest run one after another through
:meth:`Engine.execute <pipelines.engine.Engine.execute>`. All columns share one
:class:`~pipelines.engine.PreparedRun` (model, control images, starting noise), each with its own
sampler, and the comparison holds the engine, so runs from other threads wait until it ends.

Lockstep needs a sampler that evaluates the model exactly once per step (multi-step solvers included):
Heun, DPM2, DPM2 a, DPM++ SDE (two evaluations per step) and PNDM (one warm-up evaluation) run on
their own. SDXL models run every column on its own for now: their extra conditioning (pooled text
embeddings, size ids) is not replicated here.

Memory: the step history keeps one downscaled RGB preview per completed step, long side at most
:data:`HISTORY_SIDE` (256 px). 8 samplers x 50 steps x 256 x 256 x 3 bytes = 78.6 MB, well under the
200 MB a comparison may hold.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image

from pipelines import flow_lockstep
from pipelines.denoised import denoised_estimate
from pipelines.device_tuning import VaeGuard
from pipelines.errors import OutOfMemoryError, ValidationError
from pipelines.flow_samplers import sampler_for
from pipelines.lockstep_parts import LockstepLoop, column_predictions, column_preview
from pipelines.previews import PendingFrame, final_preview
from pipelines.samplers import SamplerSpec, get_sampler
from pipelines.schedules import SyncFreeSchedule
from pipelines.types import GenerationRequest, ModelFamily, PreviewMode, StepPreview

if TYPE_CHECKING:
    from pipelines.engine import Engine, LoadedModel, PreparedRun

log = logging.getLogger(__name__)

HISTORY_SIDE = 256
MAX_COLUMNS = 8

CompareStepCallback = Callable[[int, StepPreview], None]
SamplerEntry = str | tuple[str, int]
AlignMode = Literal["step", "evaluations"]


@dataclass
class CompareColumn:
    """One sampler's run. The lists hold one entry per completed step, in step order."""

    sampler: str
    steps: int
    request: GenerationRequest  # the shared request with this column's sampler and steps
    previews: list[np.ndarray] = field(default_factory=list)  # uint8 HxWx3, long side <= history
    evaluations: list[int] = field(default_factory=list)  # model evaluations spent so far
    elapsed: list[float] = field(default_factory=list)  # seconds since the column started
    image: Image.Image | None = None  # the final image; None when cancelled or not reached
    cancelled: bool = False
    planned_evaluations: int = 0  # model evaluations of the whole run (Heun 10 steps: 19)
    lockstep: bool = False  # ran batched with other columns (its elapsed times are shared)
    latents: torch.Tensor | None = None  # final latents (CPU, float32), for tests and re-decoding

    @property
    def total_evaluations(self) -> int:
        return self.evaluations[-1] if self.evaluations else 0

    @property
    def seconds(self) -> float:
        return self.elapsed[-1] if self.elapsed else 0.0

    @property
    def completed(self) -> int:
        return len(self.previews)


@dataclass
class CompareResult:
    request: GenerationRequest  # the shared request, seed and size resolved
    columns: list[CompareColumn]
    # (1, C, H/s, W/s) for the VAE's scale factor s, CPU float32: every column starts here
    initial_noise: torch.Tensor
    cancelled: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    condition_maps: tuple[Any, ...] = ()
    warnings: tuple[str, ...] = ()
    precision: str = ""  # the weights' number format: "fp32", "bf16" or "fp16"

    @property
    def max_steps(self) -> int:
        return max((c.completed for c in self.columns), default=0)

    @classmethod
    def of_run(
        cls, request: GenerationRequest, columns: list[CompareColumn], prepared: PreparedRun,
        started: float,
    ) -> CompareResult:  # fmt: skip
        """The result of columns run from ``prepared`` since ``started`` (a perf_counter)."""
        from pipelines.engine import sampler_notes

        return cls(
            request=request,
            columns=columns,
            initial_noise=prepared.initial_noise,
            cancelled=any(c.cancelled for c in columns),
            timings={"total": time.perf_counter() - started},
            condition_maps=prepared.condition_maps,
            warnings=prepared.warnings + sampler_notes(prepared, [c.sampler for c in columns]),
            precision=prepared.precision,
        )


# ---------------------------------------------------------------------------------------------
# Running a comparison


def compare(
    engine: Engine,
    request: GenerationRequest,
    samplers: Sequence[SamplerEntry],
    on_step: CompareStepCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    history_side: int = HISTORY_SIDE,
    on_progress: Callable[[float, str], None] | None = None,
) -> CompareResult:
    """Run ``request`` once per sampler entry (a name, or ``(name, steps)``) from the same noise.

    ``on_step(column_index, preview)`` is called after every completed step of every column, from
    the calling thread. Setting ``cancel`` stops all columns within one step; the result then has
    ``cancelled`` set and keeps every preview made so far.
    """
    entries = _entries(samplers, request.steps)
    if request.batch_size > 1:
        raise ValidationError("A comparison makes one image per sampler: set the batch size to 1 "
                              "(the batch count queues several comparisons).")  # fmt: skip
    if request.branches:
        raise ValidationError("A comparison runs each sampler from start to end: it takes no "
                              "branches.")  # fmt: skip
    # Runs from other threads wait: they would change the shared pipeline between our passes.
    with engine.exclusive():
        prepared = engine.prepare(request, on_progress)
        request = prepared.request
        columns = [
            CompareColumn(name, steps, replace(request, sampler=name, steps=steps))
            for name, steps in entries
        ]
        # The comparison is about watching the steps: a request without previews still gets them,
        # and Auto picks a decoder it can afford at every step (the history keeps every step).
        mode = PreviewMode.APPROXIMATE if request.preview is PreviewMode.NONE else request.preview
        mode = prepared.model.previews.plan(mode, prepared.latent_pixels, every_step=True).mode
        runs = [
            prepared.with_changes(sampler=column.sampler, steps=column.steps, preview=mode)
            for column in columns
        ]
        for column, run in zip(columns, runs, strict=True):
            model = prepared.model
            spec = sampler_for(column.sampler, model.family, model.scheduler_config)
            # total_steps: a reworking run spends only its strength's share of the steps.
            column.planned_evaluations = spec.total_evaluations(
                run.total_steps, prepared.model.scheduler_config
            )
        comparison = _Comparison(
            engine, runs, columns, on_step, cancel or threading.Event(), history_side
        )
        started = time.perf_counter()
        comparison.execute()
    return CompareResult.of_run(request, columns, prepared, started)


def _entries(samplers: Sequence[SamplerEntry], default_steps: int) -> list[tuple[str, int]]:
    entries = []
    for entry in samplers:
        name, steps = (entry, default_steps) if isinstance(entry, str) else entry
        get_sampler(name)  # unknown names are refused before anything runs
        entries.append((name, int(steps)))
    if not entries:
        raise ValidationError("Choose at least one sampler to compare.")
    if len(entries) > MAX_COLUMNS:
        raise ValidationError(f"At most {MAX_COLUMNS} samplers can be compared at once.")
    return entries


def lockstep_capable(spec: SamplerSpec, steps: int, base_config: Any) -> bool:
    """True when the sampler evaluates the model exactly once per step at this step count."""
    if spec.evaluations_per_step != 1:
        return False
    scheduler = spec.make(base_config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps) == steps


def _batchable_model(model: LoadedModel) -> bool:
    if model.family.is_flow:
        return True  # pipelines/flow_lockstep.py batches SD 3.x and Flux.1 columns
    config = model.pipeline.unet.config
    # SDXL's added conditioning and guidance-embedding (LCM) UNets take inputs not replicated here.
    return (
        model.family is ModelFamily.SD1
        and config.time_cond_proj_dim is None
        and config.addition_embed_type is None
    )


class _Comparison:
    """The state of one comparison: which columns run together, and where their steps go."""

    def __init__(
        self,
        engine: Engine,
        runs: list[PreparedRun],
        columns: list[CompareColumn],
        on_step: CompareStepCallback | None,
        cancel: threading.Event,
        history_side: int,
    ) -> None:
        self.engine = engine
        self.runs = runs  # one per column: the shared preparation with the column's sampler
        self.columns = columns
        self.on_step = on_step
        self.cancel = cancel
        self.history_side = history_side

    def jobs(self) -> list[list[int]]:
        """Column indices to run together, in the order of each job's first column."""
        model = self.runs[0].model
        # A reworking run's loop (known latents blended back, a mask) is the inpainting pipeline's,
        # and a hires run is two passes.
        first = self.runs[0]
        if not _batchable_model(model) or first.rework is not None or first.request.hires:
            return [[i] for i in range(len(self.columns))]
        if model.family.is_flow and first.request.active_controls:
            return [[i] for i in range(len(self.columns))]  # the flow lockstep has no ControlNets
        groups: dict[int, list[int]] = {}
        jobs: list[list[int]] = []
        for index, column in enumerate(self.columns):
            spec = sampler_for(column.sampler, model.family, model.scheduler_config)
            capable = flow_lockstep.capable if model.family.is_flow else lockstep_capable
            if capable(spec, column.steps, model.scheduler_config):
                if column.steps not in groups:
                    groups[column.steps] = []
                    jobs.append(groups[column.steps])
                groups[column.steps].append(index)
            else:
                jobs.append([index])
        return jobs

    def execute(self) -> None:
        for job in self.jobs():
            if self.cancel.is_set():
                for index in job:
                    self.columns[index].cancelled = True
                continue
            if len(job) == 1:
                self._run_single(job[0])
            else:
                self._run_lockstep(job)

    def record(self, index: int, preview: StepPreview) -> None:
        column = self.columns[index]
        column.previews.append(downscale(preview.image, self.history_side))
        column.evaluations.append(preview.evaluations)
        column.elapsed.append(preview.elapsed)
        if self.on_step is not None:
            self.on_step(index, preview)

    # ---- one column through the engine --------------------------------------------------------
    def _run_single(self, index: int) -> None:
        column = self.columns[index]

        def on_step(preview: StepPreview) -> None:
            self.record(index, preview)

        result = self.engine.execute(self.runs[index], on_step=on_step, cancel=self.cancel)
        column.cancelled = result.cancelled
        column.image = result.image
        column.latents = result.latents

    # ---- several columns, one batched model call per step ---------------------------------------
    def _run_lockstep(self, job: list[int]) -> None:
        first = self.runs[job[0]]
        kind = flow_lockstep.FlowLockstep if first.model.family.is_flow else _Lockstep
        lockstep = kind(
            [self.runs[i] for i in job],
            [self.columns[i] for i in job],
            self.cancel,
            on_step=lambda position, preview: self.record(job[position], preview),
        )
        copies = 2 if first.guided else 1
        try:
            with self.engine.exclusive(first, batch=copies * len(job)), torch.inference_mode():
                first.apply_memory_options()
                lockstep.run()
        except torch.cuda.OutOfMemoryError as error:
            self.engine.recover_memory()
            request = first.request
            raise OutOfMemoryError(
                f"The GPU ran out of memory comparing {len(job)} samplers at {request.width}x"
                f"{request.height}. Compare fewer samplers at once, lower the size, or switch on "
                "attention slicing or VAE tiling in Settings."
            ) from error
        finally:
            first.pipeline.maybe_free_model_hooks()


@dataclass
class _Track:
    """One lockstep column's own scheduler and latents."""

    position: int  # in the job: the index of its run and column
    run: PreparedRun
    column: CompareColumn
    scheduler: Any
    timesteps: torch.Tensor
    latents: torch.Tensor
    step_kwargs: dict[str, Any]
    schedule: SyncFreeSchedule
    elapsed: float = 0.0  # seconds from the job's start to this track's latest step


class _Lockstep(LockstepLoop):
    """Replicates the diffusers SD 1.x (ControlNet) denoising loop for a batch of schedulers.

    Each track does exactly what the pipeline does for one image: latents scaled by its scheduler's
    ``init_noise_sigma``, ``scale_model_input`` and ``step`` with the pipeline's extra arguments
    (``eta``, the generator :meth:`PreparedRun.sampler_generator` gives ``Engine.run``), guidance
    per sample. The model batch is ``[uncond x n, cond x n]``. The runs share one preparation and
    one step count; they differ in their sampler only.
    """

    def run(self) -> None:
        # Decoded previews on their way to the host: (position, step, frame), in step order.
        self._pending: list[tuple[int, StepPreview, PendingFrame]] = []
        tracks = [self._track(position) for position in range(len(self.runs))]
        embeds = self._prompt_embeds(len(tracks))
        control = self._control_images(len(tracks))
        started = time.perf_counter()
        for column in self.columns:
            column.lockstep = True
        for i in range(self.steps):
            if self._cancelled():
                return
            predictions = self._predict(tracks, i, embeds, control)
            for track, prediction in zip(tracks, predictions):
                self._step(track, i, prediction, time.perf_counter() - started)
            self._hand_on()
            if self._cancelled():
                return
        self._hand_on(wait=True)
        for track in tracks:
            self._finish(track)

    def _track(self, position: int) -> _Track:
        run = self.runs[position]
        scheduler = run.new_scheduler()
        schedule = SyncFreeSchedule(scheduler)
        scheduler.set_timesteps(self.steps, device=self.device)
        parameters = set(inspect.signature(scheduler.step).parameters)
        step_kwargs: dict[str, Any] = {}
        if "eta" in parameters:
            step_kwargs["eta"] = 0.0
        if "generator" in parameters:
            # The same separate noise stream as Engine.run, so a lockstep column equals its run.
            step_kwargs["generator"] = run.sampler_generator()
        noise = run.initial_noise.to(self.device, run.dtype)
        return _Track(
            position=position,
            run=run,
            column=self.columns[position],
            scheduler=scheduler,
            timesteps=scheduler.timesteps,
            latents=noise * scheduler.init_noise_sigma,
            step_kwargs=step_kwargs,
            schedule=schedule,
        )

    def _prompt_embeds(self, count: int) -> torch.Tensor:
        # The run's own encoding (chunks, weights, LoRAs, embeddings), as Engine.run passes it.
        conditioning = self.shared.conditioning
        positive = conditioning.prompt_embeds.to(self.device)
        if self.guided:
            negative = conditioning.negative_prompt_embeds.to(self.device)
            return torch.cat([negative] * count + [positive] * count)
        return torch.cat([positive] * count)

    # ---- ControlNet inputs, as StableDiffusionControlNetPipeline prepares them -----------------
    def _control_images(self, count: int) -> list[torch.Tensor] | None:
        units = self.request.active_controls
        if not units:
            return None
        controlnet = self.pipe.controlnet
        return [
            self.pipe.prepare_image(
                image=condition,
                width=self.request.width,
                height=self.request.height,
                batch_size=count,
                num_images_per_prompt=1,
                device=self.device,
                dtype=controlnet.dtype,
                do_classifier_free_guidance=self.guided,
                guess_mode=self._guess_mode,
            )
            for condition in self.shared.condition_maps
        ]

    @property
    def _guess_mode(self) -> bool:
        controlnet = self.pipe.controlnet
        first = controlnet.nets[0] if hasattr(controlnet, "nets") else controlnet
        return bool(first.config.global_pool_conditions)

    def _control_scales(self, i: int) -> list[float]:
        # diffusers' controlnet_keep: a unit acts on step i only when the whole step lies in its
        # [start, end] window.
        total = self.steps
        return [
            unit.strength * (1.0 - float(i / total < unit.start or (i + 1) / total > unit.end))
            for unit in self.request.active_controls
        ]

    def _residuals(
        self,
        model_input: torch.Tensor,
        timesteps: torch.Tensor,
        embeds: torch.Tensor,
        control: list[torch.Tensor] | None,
        i: int,
    ) -> dict[str, Any]:
        scales = self._control_scales(i)
        if control is None or not any(scales):
            # A residual scaled by 0 adds exactly nothing: skipping the ControlNet changes no value.
            return {}
        guess = self._guess_mode and self.guided
        if guess:  # the ControlNet sees the conditional half only; the unconditional gets zeros
            half = model_input.shape[0] // 2
            model_input, timesteps, embeds = model_input[half:], timesteps[half:], embeds[half:]
        multi = hasattr(self.pipe.controlnet, "nets")
        down, mid = self.pipe.controlnet(
            model_input,
            timesteps,
            encoder_hidden_states=embeds,
            controlnet_cond=control if multi else control[0],
            conditioning_scale=scales if multi else scales[0],
            guess_mode=self._guess_mode,
            return_dict=False,
        )
        if guess:
            down = [torch.cat([torch.zeros_like(d), d]) for d in down]
            mid = torch.cat([torch.zeros_like(mid), mid])
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

    # ---- one step -----------------------------------------------------------------------------
    def _predict(
        self,
        tracks: list[_Track],
        i: int,
        embeds: torch.Tensor,
        control: list[torch.Tensor] | None,
    ) -> list[torch.Tensor]:
        scaled = [
            t.scheduler.scale_model_input(t.latents, t.timesteps[i]) for t in tracks
        ]  # per column: each scheduler scales by its own noise level
        copies = 2 if self.guided else 1
        model_input = torch.cat(scaled * copies)
        # The UNet embeds timesteps in float32 whatever their dtype: one float vector serves all.
        timesteps = torch.stack([t.timesteps[i].float() for t in tracks] * copies)
        timesteps = timesteps.to(model_input.device)
        residuals = self._residuals(model_input, timesteps, embeds, control, i)
        output = self.pipe.unet(
            model_input, timesteps, encoder_hidden_states=embeds, return_dict=False, **residuals
        )[0]
        return column_predictions(output, len(tracks), self.guided, self.request.cfg_scale)

    def _step(self, track: _Track, i: int, prediction: torch.Tensor, elapsed: float) -> None:
        scheduler = track.scheduler
        timestep = track.schedule.host_timestep(i, track.timesteps[i])
        step_index = getattr(scheduler, "step_index", None)
        sample = track.latents
        output = scheduler.step(
            prediction, timestep, sample, **track.step_kwargs, return_dict=False
        )
        track.latents = output[0]
        track.elapsed = elapsed
        if step_index is None:  # the first step: the scheduler set its index inside step()
            after = getattr(scheduler, "step_index", None)
            step_index = None if after is None else after - 1
        if i == self.steps - 1:
            return  # the last step shows the decoded final image (_finish)
        denoised = denoised_estimate(scheduler, prediction, timestep, sample, step_index, output)
        run = track.run
        frame = run.model.previews.decode_async(denoised, run.request.preview)
        if frame is not None:
            self._pending.append((track.position, self._preview(track, i + 1, None), frame))

    def _hand_on(self, wait: bool = False) -> None:
        """Frames whose copy to the host is complete, in order (all of them with ``wait``)."""
        while self._pending and (wait or self._pending[0][2].ready()):
            position, preview, frame = self._pending.pop(0)
            self.on_step(position, replace(preview, image=frame.array()))

    def _preview(self, track: _Track, step: int, image: np.ndarray) -> StepPreview:
        return column_preview(track.run.request.sampler, step, self.steps, image, track.elapsed)

    def _finish(self, track: _Track) -> None:
        column = track.column
        column.latents = track.latents.detach().float().cpu()
        vae = self.pipe.vae
        with VaeGuard(vae, lambda note: log.warning("%s: %s", track.run.request.sampler, note)):
            decoded = vae.decode(track.latents / vae.config.scaling_factor, return_dict=False)[0]
        column.image = self.pipe.image_processor.postprocess(
            decoded, output_type="pil", do_denormalize=[True]
        )[0]
        self.on_step(track.position, self._preview(track, self.steps, final_preview(column.image)))


# ---------------------------------------------------------------------------------------------
# History, alignment and differences


def downscale(image: np.ndarray, side: int = HISTORY_SIDE) -> np.ndarray:
    """``image`` with its long side at most ``side`` pixels (a copy: the caller may keep it)."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return np.array(image, dtype=np.uint8, copy=True)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def align_steps(
    columns: Sequence[CompareColumn], position: float | int, mode: AlignMode = "step"
) -> list[int]:
    """Each column's history index to show for a slider ``position``.

    - ``mode="step"``: an ``int`` is a step index (0-based) shared by all columns; a ``float`` in
      [0, 1] is a fraction of each column's own steps.
    - ``mode="evaluations"``: an ``int`` is a number of model evaluations spent, the same for all
      columns (Heun's step 10 of 10, 19 evaluations, lines up with Euler's step 19 of 20); a
      ``float`` in [0, 1] is a fraction of each column's own total evaluations.

    A column shows its last step within the position, its first step when none is, its last step
    past its end, and ``-1`` when it has no history at all.
    """
    if mode not in ("step", "evaluations"):
        raise ValueError(f"mode must be 'step' or 'evaluations', not {mode!r}")
    fraction = isinstance(position, float)
    if fraction and not 0.0 <= position <= 1.0:
        raise ValueError(f"a fractional position must lie in [0, 1], not {position}")
    return [_aligned_index(c, position, mode, fraction) for c in columns]


def _aligned_index(
    column: CompareColumn, position: float | int, mode: AlignMode, fraction: bool
) -> int:
    count = len(column.previews)
    if count == 0:
        return -1
    if mode == "step":
        # A fraction counts the column's planned steps, so a cancelled column does not stretch.
        index = math.ceil(position * column.steps) - 1 if fraction else int(position)
        return min(max(index, 0), count - 1)
    spent = column.evaluations[:count]
    if fraction:
        limit = position * (column.planned_evaluations or spent[-1]) + 1e-9
    else:
        limit = position
    reached = [k for k, value in enumerate(spent) if value <= limit]
    return reached[-1] if reached else 0


# A perceptual dark-to-bright scale (black, purple, red, orange, pale yellow), as in "inferno".
_SCALE_COLOURS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


def difference(
    a: np.ndarray, b: np.ndarray, scale_max: float | None = None
) -> tuple[np.ndarray, float]:
    """Per-pixel absolute difference of two uint8 RGB images, through a colour scale.

    The difference is the mean over the channels (0-255). It maps to the scale's top colour at
    ``scale_max``, which is the largest difference in the pair unless given (give one to compare
    several pairs on the same scale). Returns the coloured uint8 RGB image and the scale's max.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.float32)
    if delta.ndim == 3:
        delta = delta.mean(axis=2)
    top = float(delta.max()) if scale_max is None else float(scale_max)
    top = max(top, 1.0)  # identical images: an all-black map rather than a division by zero
    position = np.clip(delta / top, 0.0, 1.0) * (len(_SCALE_COLOURS) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(_SCALE_COLOURS) - 1)
    weight = (position - low)[..., None]
    colours = _SCALE_COLOURS[low] * (1 - weight) + _SCALE_COLOURS[high] * weight
    return np.round(colours).astype(np.uint8), top
