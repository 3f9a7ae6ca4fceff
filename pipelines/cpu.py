"""How the core uses the CPU: OpenMP waiting, how many threads a run gets, and when bf16 pays.

Nothing here imports torch at module level: :func:`apply_environment` must run before torch loads,
because the OpenMP runtime reads its environment once, when torch's library is loaded.

Why these choices (measured on a 2-core machine shared with other programs, see BENCHMARKS.md):

- OpenMP's default *active* waiting makes each thread spin for a while at every parallel region's
  end. When another process holds a core, a spinning thread and a descheduled one make every small
  operation wait for a full scheduler time slice: the bundled model's image went from 0.3 s to a
  median of 6 s. *Passive* waiting yields the core instead.
- Small latents (the bundled 64x64 model has 8x8 latents) give each operation too little work to
  split: one thread is faster than two, and it is the choice that suffers least when the cores are
  shared. Large ones (SD 1.5 at 512x512) scale with the cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

THREADS_VARIABLE = "DIFFUSION_STUDIO_THREADS"

# Work per UNet evaluation, counted as latent pixels x UNet parameters (a proxy for the
# multiply-adds). Below this much work per thread, one more thread costs more in synchronisation
# than it saves. The bundled model at 64x64 (8x8 latents, 3.3 M parameters: 2.1e8) runs on one
# thread; SD 1.5 at 512x512 (64x64 latents, 860 M: 3.5e12) uses every core.
WORK_PER_THREAD = 2e9

# CPU flags of the instruction sets that run bf16 matrix products natively (Intel Sapphire Rapids
# and later: AMX; Cooper Lake, AMD Zen 4 and later: AVX512-BF16). Without them torch emulates bf16
# through fp32 conversions, which is slower than fp32 itself.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})

# Even with bf16 units, a small denoiser's step is dominated by the conversions around each layer
# and by small kernels, not by matrix products: one UNet evaluation (a CFG pair) on an AVX512-BF16
# CPU took 10.0 ms in bf16 against 8.3 in fp32 for the bundled 3.3 M-parameter UNet, but 46 against
# 56 ms for a 10.4 M one and 1.6x less for 38 M and up (benchmarks/bench_bf16_size.py,
# BENCHMARKS.md). Below this many denoiser parameters "auto" keeps fp32.
BF16_MIN_PARAMETERS = 6_000_000


def apply_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Ask OpenMP to wait passively, unless the user chose otherwise. Call before importing torch."""
    environ = os.environ if environ is None else environ
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores() -> int:
    # The cores this process may run on (taskset, cgroups' cpusets), not every core of the machine.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_override(setting: int = 0, environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count the user asked for: the environment variable first, then the setting."""
    environ = os.environ if environ is None else environ
    text = environ.get(THREADS_VARIABLE, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value > 0:
            return value
    return setting if setting > 0 else None


def choose_threads(
    latent_pixels: int,
    model_parameters: int,
    cores: int | None = None,
    setting: int = 0,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Threads for one denoising pass of ``latent_pixels`` (height x width of the latents)."""
    override = threads_override(setting, environ)
    if override is not None:
        return override
    cores = available_cores() if cores is None else max(1, cores)
    work = latent_pixels * model_parameters
    return max(1, min(cores, int(work // WORK_PER_THREAD)))


@contextlib.contextmanager
def thread_count(count: int) -> Iterator[None]:
    """Run the block with torch using ``count`` threads; the previous count comes back after."""
    import torch

    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first processor in ``/proc/cpuinfo`` (empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """True when the CPU runs bf16 matrix products in hardware."""
    flags = cpu_flags() if flags is None else flags
    return bool(NATIVE_BF16_FLAGS & set(flags))


def bf16_pays(
    parameters: int | None = None, flags: frozenset[str] | set[str] | None = None
) -> bool:
    """True when bf16 runs faster than fp32 here for a denoiser of ``parameters`` weights (None:
    not known yet, taken as large)."""
    large = parameters is None or parameters >= BF16_MIN_PARAMETERS
    return large and native_bf16(flags)
