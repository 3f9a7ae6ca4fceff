"""Previews' cost per run, launch-to-first-image in the window, and host syncs per step.

    python -m benchmarks.bench_speed                        # all three parts
    python -m benchmarks.bench_speed --part previews --rounds 7
    python -m benchmarks.bench_speed --part startup --rounds 5
    python -m benchmarks.bench_speed --part syncs

**previews**: the bundled model, 20 steps, Euler, one engine; each round runs every preview mode
once, in an order rotated every round. Two consumers: *every step* (takes each frame at once: the
engine decodes every step the plan asks for) and *window-like* (a thread takes the waiting frame
60 times a second, as a window repaints: the engine skips the steps whose frame would replace an
untaken one). The tiny decoder is a TAESD-sized ``AutoencoderTiny`` (random weights: the time is
real, the picture is not); the bundled model ships none.

**startup**: a fresh process that opens the window offscreen with a new settings file and presses
Generate at once (before the model has loaded), until the first finished image; against the floor,
a fresh ``python -c "import torch; from diffusers import StableDiffusionPipeline"``. Interleaved,
wall and CPU time (the child's user + system) per process.

**syncs**: the engine's step loop under ``benchmarks.host_syncs`` for every sampler: reads of
device values per step, by where they happen.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

PROMPT = "a small red circle at the top left on a blue background"
MODES = ("none", "approximate", "tiny", "full", "auto")


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


# ---- previews ------------------------------------------------------------------------------------
class WindowLikeConsumer:
    """Holds one frame; a thread takes it 60 times a second (a window's repaint)."""

    def __init__(self) -> None:
        self.frame: object | None = None
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._take, daemon=True)
        self.thread.start()

    def _take(self) -> None:
        while self.running:
            time.sleep(1 / 60)
            with self.lock:
                self.frame = None

    def wants(self) -> bool:
        with self.lock:
            return self.frame is None

    def give(self, preview: object) -> None:
        with self.lock:
            self.frame = preview

    def stop(self) -> None:
        self.running = False
        self.thread.join()


def measure_previews(
    rounds: int,
    steps: int,
    preset: str = "bundled",
    modes: tuple[str, ...] = MODES,
    consumers: tuple[str, ...] = ("every step", "window-like"),
) -> None:
    import torch
    from diffusers import AutoencoderTiny

    from pipelines.engine import Engine
    from pipelines.types import EngineSettings, GenerationRequest, PreviewMode

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        AutoencoderTiny().save_pretrained(Path(tmp) / "taesd")
        engine = Engine(EngineSettings(precision="fp32", tiny_vae={"sd1": Path(tmp) / "taesd"}))
        model, size = "", {}
        if preset == "small":  # a 40 M-parameter SD 1.x-shaped UNet at 256x256 (random weights)
            from benchmarks.bench_engine import build_small

            model = str(build_small(Path(tmp))[0])
        elif preset == "sd15":  # SD 1.5's own shapes (random weights) at 256x256
            from benchmarks.bench_engine import build_sd15

            model, size = (
                str(build_sd15(Path(tmp), controlnet=False)[0]),
                {"width": 256, "height": 256},
            )
        loaded = engine.load(model)
        pixels = loaded.native_size[0] * loaded.native_size[1] // loaded.scale_factor**2
        print(f"\n{preset} model, {steps} steps, fp32, {torch.get_num_threads()} torch threads; "
              f"Auto: {loaded.previews.plan(PreviewMode.AUTO, pixels)}")  # fmt: skip
        print(f"preview costs measured at load: {loaded.previews.costs}")
        request = GenerationRequest(PROMPT, model=model, seed=1, steps=steps, **size)
        wall: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        decodes: dict[tuple[str, str], list[int]] = {}
        decoded = [0]
        decode = loaded.previews.decode_async

        def counted(latents: torch.Tensor, mode: PreviewMode) -> object:
            decoded[0] += 1
            return decode(latents, mode)

        loaded.previews.decode_async = counted
        for mode in modes:  # warm-up
            engine.run(GenerationRequest(PROMPT, model=model, seed=1, steps=2, **size,
                                         preview=PreviewMode(mode)))  # fmt: skip
        for index in range(rounds):
            order = modes[index % len(modes) :] + modes[: index % len(modes)]
            for consumer_kind in consumers:
                for mode in order:
                    run = request.__class__(**{**request.__dict__, "preview": PreviewMode(mode)})
                    consumer = WindowLikeConsumer() if consumer_kind == "window-like" else None
                    decoded[0] = 0
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if consumer is None:
                        engine.run(run, on_step=lambda preview: None)
                    else:
                        engine.run(run, on_step=consumer.give, wants_preview=consumer.wants)
                        consumer.stop()
                    key = (consumer_kind, mode)
                    wall.setdefault(key, []).append(time.perf_counter() - started)
                    cpu.setdefault(key, []).append(time.process_time() - cpu_started)
                    decodes.setdefault(key, []).append(decoded[0])
        print(f"load average after: {load_average()}")
        # Ratios per round (each against the same round's run without previews), then their
        # median: the load of a shared machine changes from minute to minute.
        print("\n| consumer | previews | decodes per image | wall per image (median) | vs none, "
              "wall | CPU per image (median) | vs none, CPU |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for consumer_kind in consumers:
            none_wall, none_cpu = wall[(consumer_kind, "none")], cpu[(consumer_kind, "none")]
            for mode in modes:
                walls, cpus = wall[(consumer_kind, mode)], cpu[(consumer_kind, mode)]
                wall_ratio = statistics.median(w / n for w, n in zip(walls, none_wall))
                cpu_ratio = statistics.median(c / n for c, n in zip(cpus, none_cpu))
                count = statistics.mean(decodes[(consumer_kind, mode)])
                print(f"| {consumer_kind} | {mode} | {count:.1f} | "
                      f"{statistics.median(walls) * 1000:.0f} ms | "
                      f"{wall_ratio:.2f}x | {statistics.median(cpus) * 1000:.0f} ms | "
                      f"{cpu_ratio:.2f}x |")  # fmt: skip


# ---- start-up ------------------------------------------------------------------------------------
FLOOR = "import torch; from diffusers import StableDiffusionPipeline"

WINDOW = """
import os, sys
from studio.app import _parse_gui_args, create_window
from pipelines.cpu import apply_environment
apply_environment()
from pipelines.offline import set_offline_environment
set_offline_environment()
from studio.jobs import EventKind
app, window = create_window(_parse_gui_args(["--settings", sys.argv[1]]))
window.prompt_panel.prompt.setPlainText(PROMPT_TEXT)
window.generate()  # at once: the model is not loaded yet

def on_event(event):
    if event.kind is EventKind.FINISHED:
        print("first image", flush=True)
        os._exit(0)

window.session.event.connect(on_event)
app.exec()
""".replace("PROMPT_TEXT", repr(PROMPT))


def child_run(arguments: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(arguments, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, used


def measure_startup(rounds: int) -> None:
    root = Path(__file__).resolve().parents[1]
    results: dict[str, list[tuple[float, float]]] = {"floor": [], "window": [], "cli": []}
    with tempfile.TemporaryDirectory() as tmp:
        # The window keeps its history and settings in the user's folders: temporary ones here.
        folders = {name: str(Path(tmp) / name) for name in
                   ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")}  # fmt: skip
        env = {**os.environ, **folders, "PYTHONPATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
        child_run([sys.executable, "-c", FLOOR], env)  # warm the disk cache
        names = list(results)
        for index in range(rounds):
            for name in names[index % 3 :] + names[: index % 3]:
                settings = Path(tmp) / f"settings-{index}.ini"  # a first start every time
                arguments = [sys.executable, "-c", FLOOR]
                if name == "window":
                    arguments = [sys.executable, "-c", WINDOW, str(settings)]
                elif name == "cli":
                    out = Path(tmp) / f"cli-{index}.png"
                    arguments = [sys.executable, "-m", "studio.app", "generate", "--prompt", PROMPT,
                                 "--out", str(out)]  # fmt: skip
                results[name].append(child_run(arguments, env))
    print(f"load average after: {load_average()}")
    print("\n| process | wall (median, min–max) | CPU (median) |")
    print("|---|---|---|")
    for name, label in (("floor", f"`python -c \"{FLOOR}\"`"),
                        ("window", "window opened, Generate at once, until the first image"),
                        ("cli", "`diffusion-studio generate` (default model, one image)")):  # fmt: skip
        walls = [w for w, _ in results[name]]
        cpus = [c for _, c in results[name]]
        print(f"| {label} | {statistics.median(walls):.2f} s ({min(walls):.2f}–{max(walls):.2f}) "
              f"| {statistics.median(cpus):.2f} s |")  # fmt: skip
    floor = statistics.median(w for w, _ in results["floor"])
    for name in ("window", "cli"):
        ratio = statistics.median(w for w, _ in results[name]) / floor
        print(f"\n{name} / floor (medians): {ratio:.2f}x")


# ---- syncs ---------------------------------------------------------------------------------------
def measure_syncs(steps: int) -> None:
    from benchmarks.host_syncs import counting_engine_syncs
    from pipelines.engine import Engine
    from pipelines.samplers import SAMPLERS
    from pipelines.types import EngineSettings, GenerationRequest, PreviewMode

    engine = Engine(EngineSettings(precision="fp32"))
    print(f"\nbundled model, {steps} steps, approximate previews at every step")
    print("\n| sampler | reads of device values per step in the loop | where |")
    print("|---|---|---|")
    for name in SAMPLERS:
        request = GenerationRequest(PROMPT, seed=1, steps=steps, sampler=name,
                                    preview=PreviewMode.APPROXIMATE)  # fmt: skip
        with counting_engine_syncs() as counter:
            engine.run(request, on_step=lambda preview: None)
        sites = Counter(counter.sites)
        where = ", ".join(f"{site} ({count / steps:.1f})" for site, count in sites.items())
        print(f"| {name} | {counter.total / steps:.2f} | {where or '—'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "previews", "startup", "syncs"], default="all")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", choices=["bundled", "small", "sd15"], default="bundled",
                        help="the previews part's model")  # fmt: skip
    parser.add_argument("--modes", default=",".join(MODES), help="previews part: none first")
    parser.add_argument("--window-like", action=argparse.BooleanOptionalAction, default=True,
                        help="previews part: also the 60 Hz consumer")  # fmt: skip
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load_average()}")
    if args.part in ("all", "previews"):
        consumers = ("every step", "window-like") if args.window_like else ("every step",)
        modes = tuple(args.modes.split(","))
        measure_previews(args.rounds, args.steps, args.preset, modes, consumers)
    if args.part in ("all", "startup"):
        measure_startup(args.rounds)
    if args.part in ("all", "syncs"):
        measure_syncs(args.steps)


if __name__ == "__main__":
    main()
