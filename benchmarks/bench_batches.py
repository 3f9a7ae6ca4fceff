"""Batch size, pausing, and comparisons kept on disk.

- batch size B vs B single runs of the same seeds, on the bundled toy-world model (CPU), interleaved
  round by round in one process, wall and CPU time;
- pause: from ``pause()`` asked mid-run to the run holding, and from ``resume()`` to the run going
  on again (the hold waits on a condition, woken at once);
- a sampler comparison kept in the history folder: its size on disk, the time to write it and to
  read it back whole when it is reopened (8 columns x 50 steps of 256x256 previews: the largest a
  comparison holds).

    python -m benchmarks.bench_batches [--rounds 5 --batch 4 --size 64]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def timed(work) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_batch(engine, rounds: int, batch: int, size: int, steps: int) -> None:
    from pipelines.types import GenerationRequest

    request = GenerationRequest(prompt="a small red circle at the top left on a blue background",
                                seed=1, steps=steps, cfg_scale=5.0, width=size, height=size)  # fmt: skip
    engine.run(replace(request, steps=1))  # load and warm up
    batched, singles = [], []
    for _ in range(rounds):
        batched.append(timed(lambda: engine.run(replace(request, batch_size=batch))))
        singles.append(timed(lambda: [engine.run(replace(request, seed=1 + i))
                                      for i in range(batch)]))  # fmt: skip
    b_wall = statistics.median(w for w, _ in batched)
    s_wall = statistics.median(w for w, _ in singles)
    b_cpu = statistics.median(c for _, c in batched)
    s_cpu = statistics.median(c for _, c in singles)
    print(f"| batch size {batch} ({size}x{size}, {steps} steps) | {b_wall:.2f} s | {b_cpu:.2f} s "
          f"| {s_wall:.2f} s | {s_cpu:.2f} s | {s_wall / b_wall:.2f} |")  # fmt: skip


def pause_once(engine, request) -> tuple[float, float]:
    """(pause asked -> held, resume asked -> going on) of one run, in seconds."""
    from pipelines.run_control import RunControl

    held, released, started = threading.Event(), threading.Event(), threading.Event()
    marks: dict[str, float] = {}

    def on_hold(done: int, total: int) -> None:
        marks["held"] = time.perf_counter()
        held.set()

    def on_release(done: int, total: int) -> None:
        marks["released"] = time.perf_counter()
        released.set()

    control = RunControl(on_hold=on_hold, on_release=on_release)
    thread = threading.Thread(target=engine.run, args=(request,),
                              kwargs=dict(control=control, on_step=lambda p: started.set()))  # fmt: skip
    thread.start()
    started.wait(60)
    asked = time.perf_counter()
    control.pause()
    held.wait(60)
    resumed = time.perf_counter()
    control.resume()
    released.wait(60)
    thread.join()
    return marks["held"] - asked, marks["released"] - resumed


def bench_pause(engine, rounds: int, steps: int) -> None:
    from pipelines.types import GenerationRequest

    request = GenerationRequest(prompt="a blue square", seed=2, steps=steps, cfg_scale=5.0)
    times = [pause_once(engine, request) for _ in range(rounds)]
    hold = [h * 1000 for h, _ in times]
    release = [r * 1000 for _, r in times]
    print(f"| pause asked mid-run -> held (at most one step) | median {statistics.median(hold):.0f}"
          f" ms, worst {max(hold):.0f} ms |")  # fmt: skip
    print(f"| resume -> the run goes on | median {statistics.median(release):.2f} ms, worst "
          f"{max(release):.2f} ms |")  # fmt: skip


def bench_stored_comparison(rounds: int) -> None:
    from PIL import Image

    from pipelines.compare import CompareColumn, CompareResult
    from pipelines.history_store import HistoryStore
    from pipelines.types import GenerationRequest

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    request = GenerationRequest(prompt="a lighthouse", seed=1, steps=50, width=512, height=512)
    columns = []
    for index in range(8):
        previews = []
        for step in range(50):  # smooth pictures with fading noise, as denoising previews are
            base = np.stack([(xx + step) % 256, (yy + index * 9) % 256, (xx + yy) // 2 % 256], -1)
            # Approximate previews are latents (1/8 of the size) scaled up: noise in blocks.
            noise = rng.normal(0, 60 * (1 - step / 50), (32, 32, 3)).repeat(8, 0).repeat(8, 1)
            previews.append(np.clip(base + noise, 0, 255).astype(np.uint8))
        columns.append(CompareColumn(f"S{index}", 50, request, previews=previews,
                                     evaluations=list(range(1, 51)), elapsed=[0.1] * 50,
                                     image=Image.fromarray(previews[-1])))  # fmt: skip
    result = CompareResult(request=request, columns=columns, initial_noise=None)
    raw = sum(p.nbytes for c in columns for p in c.previews) / 1e6
    writes, reads, sizes = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        store = HistoryStore(Path(folder), comparison_limit=0)
        for _ in range(rounds):
            started = time.perf_counter()
            stored = store.add_comparison(result)
            writes.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.load_comparison(stored)
            reads.append(time.perf_counter() - started)
            sizes.append(sum(f.stat().st_size for f in stored.folder.iterdir()) / 1e6)
    print(f"| comparison kept on disk (8 x 50 x 256x256 previews, {raw:.0f} MB in memory) | "
          f"{statistics.median(sizes):.1f} MB on disk, written in {statistics.median(writes):.2f} s, "
          f"read back whole in {statistics.median(reads):.2f} s (medians) |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    from pipelines.engine import Engine, EngineSettings

    engine = Engine(EngineSettings(precision="fp32"))
    print(f"machine: {platform.machine()}, {platform.python_version()}, device "
          f"{engine.device}, precision {engine.precision}")  # fmt: skip
    print("| what | batch: wall | batch: CPU | singles: wall | singles: CPU | speed-up |")
    bench_batch(engine, args.rounds, args.batch, args.size, args.steps)
    bench_batch(engine, args.rounds, args.batch, args.size * 4, args.steps)
    bench_pause(engine, args.rounds, args.steps * 4)
    bench_stored_comparison(max(1, args.rounds // 2))


if __name__ == "__main__":
    main()
