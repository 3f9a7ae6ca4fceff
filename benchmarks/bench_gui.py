"""GUI responsiveness while previews stream, and the cost of the worker + canvas path.

Runs the real main window (offscreen) on a small model built from configs:
- a 5 ms QTimer heartbeat in the GUI thread; the longest gap between beats during a generation
  (goal <= 30 ms: the worker thread, not the GUI thread, does the work);
- time from Generate (model loaded) to the first preview painted on the canvas;
- seconds per image through the window vs ``Engine.run`` called directly, interleaved in one
  process (goal >= 0.97x).

    QT_QPA_PLATFORM=offscreen python -m benchmarks.bench_gui [--steps 10 --rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.qt_wait import wait_until

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from benchmarks.bench_engine import build_small
    from pipelines.engine import Engine
    from studio.settings import StudioSettings
    from studio.widgets.main_window import MainWindow

    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    model, _ = build_small(work)
    _app = QApplication.instance() or QApplication([])  # kept alive for the whole run
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = [str(work)]
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()

    window.prompt_panel.set_model(str(model))
    wait_until(lambda: window.session.loaded_model is not None)
    request = window.current_request()
    from dataclasses import replace

    request = replace(request, prompt="a red circle", seed=3, steps=args.steps, width=256,
                      height=256)  # fmt: skip
    window.apply_request(request)

    painted: list[float] = []
    original_set_image = window.canvas.set_image

    def set_image(image: object, *a: object, **k: object) -> None:
        painted.append(time.perf_counter())
        original_set_image(image, *a, **k)

    window.canvas.set_image = set_image
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))

    def through_window() -> tuple[float, float, float]:
        painted.clear()
        beats.clear()
        done = len(window.session.history)
        heartbeat.start(5)
        started = time.perf_counter()
        window.generate()
        wait_until(lambda: len(window.session.history) > done)
        seconds = time.perf_counter() - started
        heartbeat.stop()
        gaps = [b - a for a, b in zip(beats, beats[1:])]
        return seconds, painted[0] - started, max(gaps)

    direct_engine = Engine()

    def direct() -> float:
        started = time.perf_counter()
        direct_engine.run(request, on_step=lambda p: None)
        return time.perf_counter() - started

    direct_engine.run(replace(request, steps=2))
    through_window()  # warm-up
    gui, first, gap, core = [], [], [], []
    for _ in range(args.rounds):
        seconds, to_first, longest = through_window()
        gui.append(seconds)
        first.append(to_first)
        gap.append(longest)
        core.append(direct())
    window.close()

    print(f"machine: {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; small model, 256x256, {args.steps} steps, "
          f"{args.rounds} rounds")  # fmt: skip
    print(f"longest GUI heartbeat gap : {max(gap) * 1000:7.1f} ms (goal <= 30 ms)")
    print(f"Generate to first preview : {statistics.median(first):7.3f} s")
    gui_s, core_s = statistics.median(gui), statistics.median(core)
    print(f"through the window        : {gui_s:7.2f} s/image")
    print(f"Engine.run directly       : {core_s:7.2f} s/image")
    print(f"ratio window/core (speed) : {core_s / gui_s:7.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
