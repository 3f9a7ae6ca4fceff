"""Cost of a 4-sampler comparison (Euler, DDIM, DPM++ 2M Karras, UniPC) against one ``Engine.run``.

The four samplers evaluate the model once per step, so they run in lockstep: one batched UNet call
per step for all four. Both paths use the same loaded pipeline in one process, interleaved round by
round, so warm-up and other load on the machine skew neither. ``--separate`` also times the four
samplers run one after another, which is what the comparison would cost without lockstep.

    python -m benchmarks.bench_compare                               # CPU, small model, 256x256
    python -m benchmarks.bench_compare --steps 4 --rounds 1          # smoke test
    python -m benchmarks.bench_compare --device cuda --preset sd15   # SD 1.5-sized, 512x512 fp16

Weights are random: the cost of a step does not depend on their values.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from benchmarks.bench_engine import preset_arguments, preset_setup
from pipelines.compare import compare
from pipelines.engine import Engine
from pipelines.types import ControlKind, ControlUnit, GenerationRequest

SAMPLERS = ["Euler", "DDIM", "DPM++ 2M Karras", "UniPC"]


def _sync(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def time_single(engine: Engine, request: GenerationRequest) -> float:
    started = time.perf_counter()
    engine.run(request, on_step=lambda preview: None)
    _sync(engine)
    return time.perf_counter() - started


def time_compare(engine: Engine, request: GenerationRequest) -> float:
    started = time.perf_counter()
    result = compare(engine, request, SAMPLERS, on_step=lambda index, preview: None)
    _sync(engine)
    assert all(c.lockstep for c in result.columns), "the four samplers should run in lockstep"
    return time.perf_counter() - started


def time_separate(engine: Engine, request: GenerationRequest) -> float:
    return sum(time_single(engine, replace(request, sampler=name)) for name in SAMPLERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preset_arguments(parser, rounds=3)
    parser.add_argument("--separate", action="store_true", help="also time 4 separate runs")
    parser.add_argument("--controlnet", action="store_true", help="with one ControlNet")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine, request, controlnet = preset_setup(args, Path(tmp))
        size = request.width
        if args.controlnet:
            edges = Path(tmp) / "edges.png"
            Image.new("RGB", (size, size)).save(edges)
            unit = ControlUnit(ControlKind.CANNY, str(controlnet), image=str(edges))
            request = replace(request, controls=(unit,))
        warm = replace(request, steps=2)
        time_single(engine, warm)  # load, fit the preview decoder, warm the kernels
        time_compare(engine, warm)
        if engine.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        single, together, separate = [], [], []
        for _ in range(args.rounds):
            single.append(time_single(engine, request))
            together.append(time_compare(engine, request))
            if args.separate:
                separate.append(time_separate(engine, request))
        peak = torch.cuda.max_memory_allocated() / 2**30 if engine.device.type == "cuda" else None

    device = torch.cuda.get_device_name() if engine.device.type == "cuda" else platform.processor()
    single_s, together_s = statistics.median(single), statistics.median(together)
    print(f"command: python -m benchmarks.bench_compare {shlex.join(sys.argv[1:])}")
    print(
        f"machine: {platform.machine()} {device or 'cpu'}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, dtype {engine.dtype}"
    )
    control = ", one ControlNet" if args.controlnet else ""
    print(f"preset {args.preset}, {size}x{size}, {args.steps} steps{control}, {args.rounds} rounds")
    rows = [
        ("one Engine.run (Euler)", f"{single_s:8.2f} s"),
        (f"compare {len(SAMPLERS)} samplers (lockstep)", f"{together_s:8.2f} s"),
        ("ratio compare / single", f"{together_s / single_s:8.2f}  (4.00 = no gain from lockstep)"),
    ]
    if separate:
        separate_s = statistics.median(separate)
        rows.append((f"{len(SAMPLERS)} separate runs", f"{separate_s:8.2f} s"))
        rows.append(("lockstep speed-up", f"{separate_s / together_s:8.2f}x"))
    if peak is not None:
        rows.append(("peak VRAM", f"{peak:8.2f} GiB"))
    for label, value in rows:
        print(f"{label:30s}: {value}")


if __name__ == "__main__":
    main()
