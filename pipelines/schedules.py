"""A scheduler prepared so that the denoising loop never makes the host wait for the GPU.

diffusers keeps the noise levels (``sigmas``) of its k-diffusion and multistep schedulers on the
CPU on purpose and the timesteps on the model's device. Two things in a step would still read a
device value on the host:

- the first step looks its timestep up in the schedule (``index_for_timestep``: ``nonzero`` and
  ``item``) unless the schedule's start is set: :func:`prepare` sets it to the first entry, which
  is where a text-to-image run starts;
- the schedulers without noise levels (DDIM, DDPM, PNDM) use the timestep as an index into their
  CPU tables (``alphas_cumprod[timestep]``, ``if prev_timestep >= 0``): they get the step's
  timestep from a copy of the schedule kept on the host (:meth:`SyncFreeSchedule.host_timestep`),
  while the UNet still gets the device's; DDPM also searches that copy for the next timestep.

What stays: UniPC copies two or three of its host noise levels to the device in every step
(diffusers' own ``.to(device)``); each such copy waits for the GPU.
"""

from __future__ import annotations

import functools
from typing import Any

import torch


def indexes_by_timestep(scheduler: Any) -> bool:
    return not hasattr(scheduler, "sigmas")


class SyncFreeSchedule:
    """Wraps a fresh scheduler's ``set_timesteps`` (see the module's docstring)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.host_timesteps: torch.Tensor | None = None
        original = scheduler.set_timesteps

        # wraps() keeps the signature: pipelines inspect it for `timesteps` and `sigmas`.
        @functools.wraps(original)
        def set_timesteps(*args: Any, **kwargs: Any) -> Any:
            if indexes_by_timestep(scheduler):
                original(*args, **{**kwargs, "device": None})  # None: the host's copy
                self.host_timesteps = scheduler.timesteps
            result = original(*args, **kwargs)
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(0)
            return result

        scheduler.set_timesteps = set_timesteps
        if indexes_by_timestep(scheduler) and hasattr(scheduler, "previous_timestep"):
            scheduler.previous_timestep = self._on_host(scheduler.previous_timestep)

    def _on_host(self, method: Any) -> Any:
        # DDPM finds the next timestep by searching its schedule: the host's copy, not the device's.
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.host_timesteps is None:
                return method(*args, **kwargs)
            on_device, self.scheduler.timesteps = self.scheduler.timesteps, self.host_timesteps
            try:
                return method(*args, **kwargs)
            finally:
                self.scheduler.timesteps = on_device

        return call

    def host_timestep(self, call: int, timestep: Any) -> Any:
        """The timestep of the ``call``-th step (0-based) as the scheduler's tables want it."""
        if self.host_timesteps is None or call >= len(self.host_timesteps):
            return timestep
        return self.host_timesteps[call]
