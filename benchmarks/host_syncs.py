"""Count the host synchronisations a denoising loop would make on a GPU, on any machine.

On a GPU, the CPU queues work and runs ahead; it stops and waits (a *host synchronisation*)
whenever it reads a value that lives on the device: ``.item()``, ``.tolist()``, ``.cpu()``,
``.numpy()``, a tensor in an ``if`` (``__bool__``), ``float()``/``int()`` of one, ``nonzero()``
(its size depends on the data), or ``torch.cuda.synchronize()``.

Copies the other way wait too: torch copies host memory that is not pinned to the GPU and then
waits for the stream (``tensor.to(device)``, ``torch.tensor(values, device=device)``).

On the CPU nothing waits, so the counter *emulates* the device: the tensors that would live on the
GPU (the latents and the schedule's timesteps, then everything computed from them) are tagged
with the :class:`OnDevice` subclass, and every read of a tagged tensor by the host is counted while
counting is on. Tensors the libraries keep on the CPU on purpose (diffusers keeps its schedulers'
``sigmas`` there) stay untagged, as they are host values on a GPU too; moving one of them to "the
device" (any ``.to(device)`` naming a device, the CPU being the emulated device) is counted as a
copy to the device, and its result is tagged.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_SYNCING = {
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int",
    torch.Tensor.__index__: "index",
    torch.Tensor.nonzero: "nonzero",
    torch.nonzero: "nonzero",
}


class SyncCounter:
    """Counts host reads of tagged tensors while :attr:`counting` is on (per thread)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.where: list[str] = []  # one short stack per counted read, for the failure message
        self.sites: list[str] = []  # "file.py:function" of each counted read
        self._local = threading.local()

    @property
    def counting(self) -> bool:
        return getattr(self._local, "counting", False) and not getattr(self._local, "paused", 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, name: str) -> None:
        self.counts[name] += 1
        frames = [
            frame
            for frame in traceback.extract_stack(limit=16)
            if not frame.filename.endswith("host_syncs.py") and "/torch/" not in frame.filename
        ][-5:]
        self.sites.append(f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].name}")
        shown = (f"{f.filename.rsplit('/', 1)[-1]}:{f.name}:{f.lineno}" for f in frames[::-1])
        self.where.append(f"{name}: " + " <- ".join(shown))

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        """Count inside the block."""
        self._local.counting = True
        try:
            yield
        finally:
            self._local.counting = False

    def start(self) -> None:
        self._local.counting = True

    def stop(self) -> None:
        self._local.counting = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Not counted: a read that is no synchronisation on a GPU either (see the caller)."""
        self._local.paused = getattr(self._local, "paused", 0) + 1
        try:
            yield
        finally:
            self._local.paused -= 1


COUNTER = SyncCounter()


class OnDevice(torch.Tensor):
    """A tensor standing for one that lives on the GPU; what is computed from it is one too."""

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = _SYNCING.get(func)
        if name is not None and COUNTER.counting:
            COUNTER.record(name)
        return super().__torch_function__(func, types, args, kwargs or {})


def _names_a_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    values = [*args[1:], kwargs.get("device")]
    return any(isinstance(v, torch.device) or (isinstance(v, str) and v) for v in values)


class MovesToDevice(TorchFunctionMode):
    """Counts host tensors moved to the device (see the module's docstring) while counting."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not COUNTER.counting:
            return result
        if func is torch.Tensor.to and not isinstance(args[0], OnDevice):
            if _names_a_device(args, kwargs) and args[0].numel() > 0:
                COUNTER.record("to-device")
                return on_device(result)
        elif func in (torch.tensor, torch.as_tensor) and kwargs.get("device") is not None:
            if not isinstance(args[0], OnDevice):
                COUNTER.record("to-device")
                return on_device(result)
        return result


def on_device(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.as_subclass(OnDevice)


def host_tensor(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.as_subclass(torch.Tensor)


@contextlib.contextmanager
def count_moves_and_synchronize() -> Iterator[None]:
    """Count copies to the device and explicit ``torch.cuda.synchronize()`` calls (no-ops without
    a GPU) too."""
    original = torch.cuda.synchronize

    def synchronize(*args: Any, **kwargs: Any) -> None:
        if COUNTER.counting:
            COUNTER.record("cuda.synchronize")
        if torch.cuda.is_available():
            original(*args, **kwargs)

    torch.cuda.synchronize = synchronize
    try:
        with MovesToDevice():
            yield
    finally:
        torch.cuda.synchronize = original


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def counting_engine_syncs() -> Iterator[SyncCounter]:
    """Count host synchronisations inside the engine's step loops (runs and lockstep
    comparisons), from the first scheduler step to the end of the last step.

    Tags the starting latents and the schedule's device timesteps (the host copy the engine keeps,
    asked for with ``device=None``, stays untagged); a decoded preview's pixels are read only when
    their copy is complete (:meth:`PendingFrame.array`), which waits for nothing, so that read is
    not counted.
    """
    from pipelines import engine as engine_module
    from pipelines.compare import _Lockstep
    from pipelines.previews import PendingFrame

    engine_class, prepared_class = engine_module.Engine, engine_module.PreparedRun
    tracker = engine_module._StepTracker
    arguments, new_scheduler = engine_class._call_arguments, prepared_class.new_scheduler
    step, step_end = tracker._step, tracker.on_step_end
    make_track, predict, finish = _Lockstep._track, _Lockstep._predict, _Lockstep._finish
    array = PendingFrame.array

    def call_arguments(self: Any, prepared: Any) -> dict[str, Any]:
        kwargs = arguments(self, prepared)
        kwargs["latents"] = on_device(kwargs["latents"])
        return kwargs

    def tagged_scheduler(self: Any) -> Any:
        scheduler = new_scheduler(self)
        set_timesteps = scheduler.set_timesteps

        @functools.wraps(set_timesteps)
        def tagged(*args: Any, **kwargs: Any) -> None:
            set_timesteps(*args, **kwargs)
            if kwargs.get("device") is not None:
                scheduler.timesteps = on_device(scheduler.timesteps)

        scheduler.set_timesteps = tagged
        return scheduler

    def counted_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTER.start()
        return step(self, *args, **kwargs)

    def counted_step_end(self: Any, pipe: Any, index: int, *args: Any) -> Any:
        result = step_end(self, pipe, index, *args)
        if index == pipe.num_timesteps - 1:
            COUNTER.stop()
        return result

    def tagged_track(self: Any, position: int) -> Any:
        track = make_track(self, position)
        track.latents = on_device(track.latents)
        return track

    def counted_predict(self: Any, *args: Any) -> Any:
        COUNTER.start()
        return predict(self, *args)

    def uncounted_finish(self: Any, *args: Any) -> Any:
        COUNTER.stop()
        return finish(self, *args)

    def host_array(self: Any) -> Any:
        with COUNTER.paused():
            return array(self)

    COUNTER.counts.clear()
    COUNTER.where.clear()
    COUNTER.sites.clear()
    COUNTER.stop()
    with contextlib.ExitStack() as stack:
        for owner, name, value in (
            (engine_class, "_call_arguments", call_arguments),
            (prepared_class, "new_scheduler", tagged_scheduler),
            (tracker, "_step", counted_step),
            (tracker, "on_step_end", counted_step_end),
            (_Lockstep, "_track", tagged_track),
            (_Lockstep, "_predict", counted_predict),
            (_Lockstep, "_finish", uncounted_finish),
            (PendingFrame, "array", host_array),
        ):
            stack.enter_context(_patched(owner, name, value))
        stack.enter_context(count_moves_and_synchronize())
        try:
            yield COUNTER
        finally:
            COUNTER.stop()
