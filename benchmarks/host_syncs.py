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
