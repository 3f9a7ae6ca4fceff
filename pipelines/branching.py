"""Branches: a run's prompt, negative prompt, CFG, sampler or ControlNet strength changed from a
step on (:class:`pipelines.types.Branch`), applied at that step's boundary in the engine's step
callback, written into the PNG as ``Branch: step 12, prompt "…", CFG 5`` and given on the command
line as ``--branch 12:prompt=…``.

What each change does in the denoising loop:

- prompt / negative prompt: encoded by the pipeline's own ``encode_prompt`` and handed back as the
  loop's ``prompt_embeds`` (SDXL: with its pooled ``add_text_embeds``);
- CFG: the pipeline's guidance scale; it must stay on the run's side of 1, because guidance on or
  off changes how many images each model call holds;
- ControlNet strength: every active unit's scale, keeping each unit's start/end range;
- sampler: a new scheduler continues from the same step. That is sound only where the new sampler
  walks the same noise levels for the step count (equal timesteps, and equal sigmas between
  k-diffusion samplers) and spends one model call per step; the latents are rescaled when the two
  samplers keep them differently (k-diffusion samplers hold ``x0 + sigma * noise``, the others the
  variance-preserving form). Any other switch is refused before the run with a message saying why.
  A multistep solver (DPM++ 2M, UniPC, LMS) starts its history afresh at the branch, as it does at
  the start of a run.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from typing import TYPE_CHECKING, Any

from pipelines.errors import ValidationError
from pipelines.run_control import effective_request, merge_branches
from pipelines.types import Branch, GenerationRequest

if TYPE_CHECKING:
    import torch

    from pipelines.run_control import RunControl

# Schedulers that keep the latents as x0 + sigma * noise (k-diffusion); the others keep
# sqrt(alpha) * x0 + sqrt(1 - alpha) * noise.
_SIGMA_SCALED = {
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler",
    "DPMSolverSDEScheduler",
}  # fmt: skip

CLI_KEYS = {"prompt": "prompt", "negative": "negative", "cfg": "cfg", "sampler": "sampler",
            "control-strength": "control_strength"}  # fmt: skip


# ---- checks ----------------------------------------------------------------------------------
def check_sampler_switches(request: GenerationRequest, scheduler_config: Any) -> None:
    """Refuse, before any work, a sampler switch that cannot continue the run soundly."""
    for branch in request.branches:
        if branch.sampler is None:
            continue
        before = effective_request(request, branch.step - 1).sampler
        if before != branch.sampler:
            _check_switch(before, branch.sampler, request.steps, scheduler_config, branch.step)


def _schedulers(old: str, new: str, steps: int, config: Any) -> tuple[Any, Any]:
    from pipelines.samplers import get_sampler

    made = []
    for name in (old, new):
        scheduler = get_sampler(name).make(config)
        scheduler.set_timesteps(steps)
        made.append(scheduler)
    return made[0], made[1]


def _check_switch(old: str, new: str, steps: int, config: Any, step: int) -> None:
    from pipelines.samplers import get_sampler

    why = ""
    for name in (old, new):
        if get_sampler(name).evaluations_per_step != 1:
            why = f"{name} spends two model calls per step"
    if not why:
        before, after = _schedulers(old, new, steps, config)
        if not _same_levels(before, after):
            why = f"{new} walks other noise levels than {old} for {steps} steps"
    if why:
        raise ValidationError(
            f"The branch at step {step} cannot switch from {old} to {new}: {why}. A sampler "
            "switch continues the run only between one-call samplers on the same noise levels "
            "(e.g. Euler, Euler a and LMS; DPM++ 2M, DPM++ 2M SDE and UniPC)."
        )


def _same_levels(before: Any, after: Any) -> bool:
    import torch

    if not torch.equal(before.timesteps.double(), after.timesteps.double()):
        return False
    if _sigma_scaled(before) and _sigma_scaled(after):
        return torch.equal(before.sigmas.double(), after.sigmas.double())
    return True


def _sigma_scaled(scheduler: Any) -> bool:
    return type(scheduler).__name__ in _SIGMA_SCALED


# ---- applying, in the engine's step callback -------------------------------------------------
def apply_branch(
    tracker: Any, pipe: Any, control: RunControl, request: GenerationRequest, completed: int,
    callback_kwargs: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Apply the branch at ``completed`` steps of ``request`` (its branches as the run has them)
    to the denoising loop; returns the callback's outputs."""
    branch = next(b for b in request.branches if b.step == completed)
    before, after = effective_request(request, completed - 1), effective_request(request, completed)
    if branch.cfg is not None:
        pipe._guidance_scale = branch.cfg
    if branch.prompt is not None or branch.negative is not None:
        batch = int(callback_kwargs["latents"].shape[0])
        callback_kwargs.update(_encode(pipe, after, batch))
    if branch.sampler is not None and branch.sampler != before.sampler:
        callback_kwargs["latents"] = _switch_sampler(tracker, pipe, after, completed,
                                                     callback_kwargs["latents"])  # fmt: skip
    if branch.control_strength is not None:
        _scale_controlnets(tracker, pipe, control, after)
    return callback_kwargs


def _encode(pipe: Any, request: GenerationRequest, batch: int) -> dict[str, Any]:
    """The loop's text conditioning for ``request``'s prompts, encoded as the engine encodes a
    run's (weights, long prompts, clip skip), repeated for each image of a batch."""
    import torch

    from pipelines.prompt_encoding import encode_prompts
    from pipelines.types import ModelFamily

    family = (
        ModelFamily.SDXL if getattr(pipe, "text_encoder_2", None) is not None else ModelFamily.SD1
    )
    guided = pipe.do_classifier_free_guidance
    encoded = encode_prompts(pipe, family, request.prompt, request.negative_prompt, guided,
                             request.clip_skip)  # fmt: skip

    def loop_form(positive: torch.Tensor, negative: torch.Tensor | None) -> torch.Tensor:
        positive = positive.repeat(batch, *([1] * (positive.dim() - 1)))
        if not guided or negative is None:
            return positive
        return torch.cat([negative.repeat(batch, *([1] * (negative.dim() - 1))), positive])

    outputs = {"prompt_embeds": loop_form(encoded.prompt_embeds, encoded.negative_prompt_embeds)}
    if encoded.pooled is not None:  # SDXL: the pooled embeddings condition the UNet too
        outputs["add_text_embeds"] = loop_form(encoded.pooled, encoded.negative_pooled)
    return outputs


def _switch_sampler(
    tracker: Any, pipe: Any, request: GenerationRequest, completed: int, latents: torch.Tensor
) -> torch.Tensor:
    import torch

    from pipelines.batches import sampler_generators
    from pipelines.samplers import get_sampler

    old = pipe.scheduler
    new = get_sampler(request.sampler).make(old.config, seed=request.seed)
    # The pipeline chose the step's extra arguments (eta, generator) for the first sampler.
    accepted = set(inspect.signature(new.step).parameters)
    # A stream of its own for a sampler that needs one and did not get the run's: one per image.
    generator = sampler_generators((request.seed or 0) + completed, int(latents.shape[0]),
                                   latents.device)  # fmt: skip
    original = new.step

    @functools.wraps(original)
    def step(model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if torch.is_tensor(timestep):  # the loop's timesteps are the first sampler's type
            timestep = timestep.to(new.timesteps.dtype)
        if "generator" in accepted and kwargs.get("generator") is None:
            kwargs["generator"] = generator
        return original(model_output, timestep, sample, *args, **kwargs)

    new.step = step
    tracker.swap_scheduler(new)  # before its timesteps are set: the tracker prepares those
    new.set_timesteps(request.steps, device=latents.device)
    if hasattr(new, "_step_index"):
        new._step_index = completed
    if _sigma_scaled(old) != _sigma_scaled(new):
        sigma = (old if _sigma_scaled(old) else new).sigmas[completed].to(latents.device)
        factor = (sigma**2 + 1) ** 0.5
        latents = latents / factor if _sigma_scaled(old) else latents * factor
        latents = latents.to(pipe.unet.dtype)
    pipe.scheduler = new
    return latents


def _scale_controlnets(tracker: Any, pipe: Any, control: RunControl, request: GenerationRequest
                       ) -> None:  # fmt: skip
    net = pipe.controlnet
    units = request.active_controls
    if getattr(net, "_branch_units", None) is not None:
        net._branch_units = units  # already scaled by an earlier branch of this run
        return
    net._branch_units = units
    forward = net.forward

    def scaled(*args: Any, conditioning_scale: Any = 1.0, **kwargs: Any) -> Any:
        # The pipeline's own scale of this step, with each unit's start/end range kept.
        index, total = tracker.evaluations, pipe.num_timesteps
        scales = [
            u.strength * (1.0 - float(index / total < u.start or (index + 1) / total > u.end))
            for u in net._branch_units
        ]
        scale = scales if isinstance(conditioning_scale, list) else scales[0]
        return forward(*args, conditioning_scale=scale, **kwargs)

    net.forward = scaled

    def undo() -> None:
        del net.forward, net._branch_units

    control.on_end(undo)


# ---- text: PNG metadata and the command line -------------------------------------------------
_TEXT_ITEMS = (("prompt", "prompt"), ("negative", "negative"), ("sampler", "sampler"))
_ITEM_RE = re.compile(r'\s*(step|prompt|negative|CFG|sampler|ControlNet strength)\s+'
                      r'("(?:\\.|[^\\"])*"|[^,]*)\s*(?:,|$)')  # fmt: skip


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def branch_text(branch: Branch) -> str:
    """``step 12, prompt "…", CFG 5``: the value of a ``Branch`` entry in the parameters text."""
    items = [f"step {branch.step}"]
    for key, name in _TEXT_ITEMS[:2]:
        if getattr(branch, name) is not None:
            items.append(f"{key} {json.dumps(getattr(branch, name), ensure_ascii=False)}")
    if branch.cfg is not None:
        items.append(f"CFG {_number(branch.cfg)}")
    if branch.sampler is not None:
        items.append(f"sampler {json.dumps(branch.sampler, ensure_ascii=False)}")
    if branch.control_strength is not None:
        items.append(f"ControlNet strength {_number(branch.control_strength)}")
    return ", ".join(items)


def branch_pairs(branches: tuple[Branch, ...]) -> list[tuple[str, str]]:
    """``Branch``, ``Branch 2``, … entries of the parameters text."""
    return [("Branch" if n == 1 else f"Branch {n}", branch_text(b))
            for n, b in enumerate(branches, 1)]  # fmt: skip


def parse_branch_text(text: str) -> Branch:
    values: dict[str, Any] = {}
    position = 0
    for match in _ITEM_RE.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        key, raw = match.group(1), match.group(2).strip()
        if raw.startswith('"'):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise ValidationError(f"The branch entry {text!r} has a broken quote.") from None
        try:
            if key == "step":
                values["step"] = int(raw)
            elif key == "CFG":
                values["cfg"] = float(raw)
            elif key == "ControlNet strength":
                values["control_strength"] = float(raw)
            else:
                values[key] = raw
        except ValueError:
            raise ValidationError(f"The branch entry {text!r} has a bad {key}.") from None
    if position != len(text.rstrip()) or "step" not in values:
        raise ValidationError(f"The branch entry {text!r} is not 'step N, key value, …'.")
    return Branch(**values)


def branches_from_fields(fields: dict[str, str]) -> tuple[Branch, ...]:
    found = []
    for key, value in fields.items():
        match = re.fullmatch(r"Branch(?: (\d+))?", key)
        if match:
            found.append((int(match.group(1) or 1), parse_branch_text(value)))
    return tuple(branch for _, branch in sorted(found, key=lambda pair: pair[0]))


def parse_cli_branch(text: str) -> Branch:
    """``STEP:KEY=VALUE`` (keys prompt, negative, cfg, sampler, control-strength)."""
    step_text, sep, rest = text.partition(":")
    key, equals, value = rest.partition("=")
    key = key.strip()
    if not sep or not equals or not step_text.strip().isdigit() or key not in CLI_KEYS:
        keys = ", ".join(CLI_KEYS)
        raise ValidationError(f"--branch {text!r} is not STEP:KEY=VALUE with a step number and "
                              f"one of the keys {keys}.")  # fmt: skip
    name = CLI_KEYS[key]
    converted: Any = value
    if name in ("cfg", "control_strength"):
        try:
            converted = float(value)
        except ValueError:
            raise ValidationError(f"--branch {text!r}: {key} must be a number.") from None
    return Branch(step=int(step_text), **{name: converted})


def merge_by_step(branches: list[Branch]) -> tuple[Branch, ...]:
    """One branch per step (later ones' changes win), in step order."""
    merged: dict[int, Branch] = {}
    for branch in branches:
        merged[branch.step] = (merge_branches(merged[branch.step], branch)
                               if branch.step in merged else branch)  # fmt: skip
    return tuple(merged[step] for step in sorted(merged))


def branch_titles(request: GenerationRequest) -> tuple[str, str]:
    """The titles of a branched run's two columns in the compare view (pipelines.branch_compare):
    the run as it began, and with its branches."""
    steps = ", ".join(str(branch.step) for branch in request.branches)
    return f"{request.sampler} unbranched", f"{request.sampler} branched at step {steps}"


def branch_checker(scheduler_config: Any) -> Any:
    """What a run checks a branch made while it is held against: the whole request, and the
    loaded model's noise levels for a sampler switch."""

    def check(request: GenerationRequest) -> None:
        request.validate()
        check_sampler_switches(request, scheduler_config)

    return check
