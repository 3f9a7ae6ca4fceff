"""Start-up with a long history on disk, and the queue's overhead between two jobs.

Runs the real main window (offscreen):
- time from creating the window to its first turn of the event loop after ``show()`` (when it
  takes input), with an empty history and with ``--entries`` entries (goal: ratio near 1);
- time until the whole history is listed in the strip (items, requests; thumbnails load only for
  what is in view), the longest gap between 5 ms heartbeats in the GUI thread meanwhile (goal
  <= 30 ms), and the memory the window holds after it (resident set size, Linux);
- with ``--queue``: the gap between one job's ``finished`` event and the next job's ``started``
  event, model loaded (goal <= 50 ms), on the tiny test model.

Entries are one real entry (a 512x512 image, its thumbnail and request) repeated under new ids:
the thumbnail and request files are copied, the image hard-linked (start-up never reads it).

    QT_QPA_PLATFORM=offscreen python -m benchmarks.bench_history [--entries 5000 --rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.qt_wait import wait_until

if TYPE_CHECKING:
    from studio.settings import StudioSettings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fill_history(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    from pipelines.history_store import HistoryStore
    from pipelines.types import GenerationRequest

    store = HistoryStore(folder)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))
    template = store.add(image, GenerationRequest(prompt="a lighthouse at dusk, oil painting",
                                                  seed=1, width=512, height=512))  # fmt: skip
    start = datetime(2026, 1, 1)
    for number in range(count - 1):
        stamp = (start + timedelta(seconds=number)).strftime("%Y%m%d-%H%M%S-%f")
        entry_id = f"{stamp}-{number % 0xFFFFFF:06x}"
        shutil.copyfile(template.thumbnail_path, folder / f"{entry_id}.thumb.png")
        text = template.request_path.read_text().replace("lighthouse", f"lighthouse {number}")
        (folder / f"{entry_id}.json").write_text(text)
        os.link(template.image_path, folder / f"{entry_id}.png")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue", action="store_true", help="also time the gap between jobs")
    args = parser.parse_args()

    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from pipelines.history_store import history_folder
    from pipelines.types import GenerationRequest
    from studio.settings import StudioSettings
    from studio.widgets.main_window import MainWindow

    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    _app = QApplication.instance() or QApplication([])

    def settings_with(name: str, entries: int) -> StudioSettings:
        settings = StudioSettings(work / name / "settings.ini")
        settings.model_folders = []
        # No model to load: the worker's loading would compete with what is measured here.
        settings.last_request = GenerationRequest(prompt="", model=str(work / "none")).to_dict()
        if entries:
            fill_history(history_folder(settings.data_folder), entries)
        return settings

    def open_window(settings: StudioSettings) -> tuple[MainWindow, float]:
        turned: list[float] = []
        started = time.perf_counter()
        window = MainWindow(settings)
        window.resize(1400, 860)
        window.show()
        QTimer.singleShot(0, lambda: turned.append(time.perf_counter()))
        wait_until(lambda: bool(turned))
        return window, turned[0] - started

    empty = settings_with("empty", 0)
    filled = settings_with("filled", args.entries)
    # Imports and first-window costs out of the way: the worker's start-up (its imports, the
    # tokenizer) and the failed load finish before the rounds, or the first round pays them.
    warm, _ = open_window(empty)
    wait_until(lambda: warm.model_label.text() == "No model loaded")
    warm.close()

    beats: list[float] = []
    heartbeat = QTimer(timerType=Qt.TimerType.PreciseTimer)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    to_input = {"empty": [], "filled": []}
    listed, gaps, idle_gaps, memory = [], [], [], []

    def longest_gap(until: Callable[[], object]) -> float:
        beats.clear()
        heartbeat.start(5)
        wait_until(until)
        heartbeat.stop()
        return max(b - a for a, b in zip(beats, beats[1:]))

    for _ in range(args.rounds):
        window, seconds = open_window(empty)
        to_input["empty"].append(seconds)
        settle = time.perf_counter() + 1.0
        idle_gaps.append(longest_gap(lambda s=settle: time.perf_counter() > s))
        window.close()
        before = rss_mb()
        started = time.perf_counter()
        window, seconds = open_window(filled)
        to_input["filled"].append(seconds)
        # From the moment the window takes input until the whole history is in the strip.
        gaps.append(longest_gap(lambda w=window: not w.gallery.loading))
        listed.append(time.perf_counter() - started)
        memory.append(rss_mb() - before)
        assert window.gallery.count() == args.entries, window.gallery.count()
        window.close()
        window.deleteLater()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {args.entries} entries, {args.rounds} rounds")  # fmt: skip
    empty_s, filled_s = statistics.median(to_input["empty"]), statistics.median(to_input["filled"])
    print(f"window takes input, empty history : {empty_s * 1000:7.1f} ms")
    print(f"window takes input, {args.entries} entries : {filled_s * 1000:7.1f} ms "
          f"(ratio {filled_s / empty_s:.2f})")  # fmt: skip
    print(f"whole history listed              : {statistics.median(listed):7.2f} s")
    print(f"longest GUI heartbeat gap, loading: {max(gaps) * 1000:7.1f} ms (goal <= 30 ms; "
          f"median of rounds {statistics.median(gaps) * 1000:.1f} ms)")  # fmt: skip
    print(f"same, empty history, first second : {max(idle_gaps) * 1000:7.1f} ms")
    print(f"memory held for the history       : {statistics.median(memory):7.1f} MB (RSS growth)")

    if args.queue:
        queue_gap(work, settings_with)


def queue_gap(work: Path, settings_with: Callable[..., StudioSettings]) -> None:
    from dataclasses import replace

    from studio.jobs import EventKind
    from studio.widgets.main_window import MainWindow
    from tests.tiny_models import save_sd1

    model = save_sd1(work / "tiny-sd1")
    settings = settings_with("queue", 0)
    window = MainWindow(settings)
    window.show()
    window.prompt_panel.set_model(str(model))
    wait_until(lambda: window.session.loaded_model is not None)
    request = replace(window.current_request(), prompt="x", seed=1, steps=1, width=64, height=64)
    window.apply_request(request)
    times: dict[tuple[EventKind, int], float] = {}
    window.session.event.connect(
        lambda event: (
            event.job is not None
            and times.setdefault((event.kind, event.job.id), time.perf_counter())
        )
    )
    gaps = []
    for _ in range(5):
        first, second = window.generate()[0], window.generate()[0]
        wait_until(lambda s=second: (EventKind.FINISHED, s.id) in times)
        gaps.append(times[EventKind.STARTED, second.id] - times[EventKind.FINISHED, first.id])
    window.close()
    # An upper bound of the worker's idle time: the session hands the next job over before the
    # window's own handlers of "finished" run, and "started" reaches them only after those.
    print(f"finished -> next started (queue)  : {statistics.median(gaps) * 1000:7.1f} ms median, "
          f"{max(gaps) * 1000:.1f} ms max (goal <= 50 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
