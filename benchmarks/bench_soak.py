"""Soak: many generations and comparisons in one process, watching resident memory and speed.

Three phases on the bundled toy-world model, each in the same process:
- ``Engine.run`` N times (default 300): the sampler, seed and prompt change every run, one run in
  ten adds the canny ControlNet, one in twenty-five is cancelled at its second step;
- ``compare`` M times (default 30) with four samplers (Euler, DDIM, DPM++ 2M Karras, Heun);
- the window's worker W times (default 200): ``MainWindow.generate()`` offscreen, waiting for
  ``window.session.history`` to grow, as a user pressing Generate would.

Resident memory (RSS) is read after a garbage collection at the start of each phase (model loaded,
warmed up), at its middle and at its end; flat memory is the goal. Time per image is the median.

    python -m benchmarks.bench_soak                              # 300 + 30 + 200 on the CPU
    python -m benchmarks.bench_soak --runs 20 --comparisons 3 --window-runs 10   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.qt_wait import wait_until

if TYPE_CHECKING:  # the engine loads torch, which must not start before the environment is set
    from pipelines.engine import Engine
    from pipelines.types import GenerationRequest, StepPreview

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

COMPARE_SAMPLERS = ["Euler", "DDIM", "DPM++ 2M Karras", "Heun"]
PROMPTS = [
    "a small red circle at the top left on a blue background",
    "a large green square in the middle on a white background",
    "a yellow triangle at the bottom right on a black background",
    "a stick figure waving on a grey background",
]


def rss_mib() -> float:
    """Resident memory of this process now (not the peak), in MiB."""
    gc.collect()
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # Linux without psutil
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Phase:
    name: str
    count: int
    seconds: list[float] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)  # start / middle / end -> MiB

    def checkpoint(self, done: int) -> None:
        if done == 0:
            self.memory["start"] = rss_mib()
        elif done == self.count // 2:
            self.memory["middle"] = rss_mib()
        elif done == self.count:
            self.memory["end"] = rss_mib()

    def report(self, unit: str = "image") -> str:
        m = self.memory
        median = statistics.median(self.seconds) if self.seconds else float("nan")
        growth = m["end"] - m["start"]
        return (f"{self.name:34s} {self.count:4d} x  {median:6.3f} s/{unit:10s} RSS "
                f"{m['start']:7.0f} / {m['middle']:7.0f} / {m['end']:7.0f} MiB "
                f"(end - start {growth:+.0f} MiB)")  # fmt: skip


def edge_map(folder: Path, size: int) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4),
                                  outline=(255, 255, 255))  # fmt: skip
    path = folder / "edges.png"
    image.save(path)
    return path


def engine_phase(
    engine: Engine, base: GenerationRequest, controlnet: Path, edges: Path, runs: int
) -> Phase:
    from pipelines.samplers import sampler_names
    from pipelines.types import ControlKind, ControlUnit

    phase = Phase("Engine.run (previews every step)", runs)
    names = sampler_names()
    unit = ControlUnit(ControlKind.CANNY, str(controlnet), image=str(edges))
    for i in range(runs):
        phase.checkpoint(i)
        request = replace(base, seed=i, sampler=names[i % len(names)],
                          prompt=PROMPTS[i % len(PROMPTS)],
                          controls=(unit,) if i % 10 == 5 else ())  # fmt: skip
        cancel = threading.Event()

        def on_step(
            preview: StepPreview,
            cancel: threading.Event = cancel,
            cancelled: bool = i % 25 == 12,
        ) -> None:
            if cancelled and preview.step == 2:
                cancel.set()

        started = time.perf_counter()
        result = engine.run(request, on_step=on_step, cancel=cancel)
        if not result.cancelled:
            phase.seconds.append(time.perf_counter() - started)
    phase.checkpoint(runs)
    return phase


def compare_phase(engine: Engine, base: GenerationRequest, comparisons: int) -> Phase:
    from pipelines.compare import compare

    phase = Phase(f"compare ({len(COMPARE_SAMPLERS)} samplers)", comparisons)
    for i in range(comparisons):
        phase.checkpoint(i)
        started = time.perf_counter()
        result = compare(engine, replace(base, seed=1000 + i, prompt=PROMPTS[i % len(PROMPTS)]),
                         COMPARE_SAMPLERS, on_step=lambda column, preview: None)  # fmt: skip
        phase.seconds.append(time.perf_counter() - started)
        assert all(column.image is not None for column in result.columns)
        del result
    phase.checkpoint(comparisons)
    return phase


def window_phase(base: GenerationRequest, folder: Path, runs: int) -> Phase:
    from PySide6.QtWidgets import QApplication

    from studio.settings import StudioSettings
    from studio.widgets.main_window import MainWindow

    _app = QApplication.instance() or QApplication([])  # kept alive for the whole phase
    settings = StudioSettings(folder / "settings" / "studio.ini")
    settings.output_folder = str(folder / "out")
    settings.last_request = base.to_dict()
    settings.random_seed = False
    window = MainWindow(settings)
    window.show()

    def generate(seed: int, prompt: str) -> float:
        window.prompt_panel.seed.setText(str(seed))
        window.prompt_panel.prompt.setPlainText(prompt)
        done = len(window.session.history)
        started = time.perf_counter()
        window.generate()
        wait_until(lambda: len(window.session.history) > done or bool(window.message_bar.text()))
        if len(window.session.history) <= done:
            raise RuntimeError(f"the window did not finish a run: {window.message_bar.text()}")
        return time.perf_counter() - started

    wait_until(lambda: window.session.loaded_model is not None)
    generate(0, PROMPTS[0])  # warm-up
    phase = Phase("window: Generate -> history", runs)
    for i in range(runs):
        phase.checkpoint(i)
        phase.seconds.append(generate(2000 + i, PROMPTS[i % len(PROMPTS)]))
    phase.checkpoint(runs)
    phase.history = len(window.session.history)
    window.close()
    return phase


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--comparisons", type=int, default=30)
    parser.add_argument("--window-runs", type=int, default=200)
    args = parser.parse_args()
    before_torch = rss_mib()

    import torch

    from pipelines.engine import Engine, EngineSettings, default_model_path
    from pipelines.types import GenerationRequest

    started = time.perf_counter()
    engine = Engine(EngineSettings(device=args.device))
    base = GenerationRequest(prompt=PROMPTS[0], steps=args.steps, seed=0)
    controlnet = default_model_path().parent / "toy-world-controlnet-canny"
    phases = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        folder = Path(tmp)
        engine.run(replace(base, steps=2))  # load and warm up
        size = engine.loaded.native_size[0]
        edges = edge_map(folder, size)
        phases.append(engine_phase(engine, base, controlnet, edges, args.runs))
        phases.append(compare_phase(engine, base, args.comparisons))
        if args.window_runs:
            phases.append(window_phase(base, folder, args.window_runs))

    device = torch.cuda.get_device_name() if engine.device.type == "cuda" else "cpu"
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print("command: python -m benchmarks.bench_soak " + shlex.join(sys.argv[1:]))
    print(f"machine: {platform.machine()} {device}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, dtype {engine.dtype}; "
          f"load average at the end {load[0]:.2f}")  # fmt: skip
    print(
        f"model: bundled toy-world, {size}x{size}, {args.steps} steps; "
        f"RSS before torch {before_torch:.0f} MiB; total {time.perf_counter() - started:.0f} s"
    )
    print(f"{'phase':34s} {'runs':>4s}    {'time':>17s} RSS start / middle / end")
    for phase in phases:
        print(phase.report("comparison" if phase.name.startswith("compare") else "image"))
    window = next((p for p in phases if p.name.startswith("window")), None)
    if window is not None:
        print(f"(the window's history held {window.history} images at the end, as a user's would)")


if __name__ == "__main__":
    main()
