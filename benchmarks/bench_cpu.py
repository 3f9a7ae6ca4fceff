"""CPU policy: the thread policy against the old default, quiet and beside a busy process; bf16
against fp32.

    python -m benchmarks.bench_cpu                          # both parts
    python -m benchmarks.bench_cpu --part threads --rounds 8
    python -m benchmarks.bench_cpu --part precision --sd15-size 128 --sd15-steps 4
    python -m benchmarks.bench_cpu --part unet --sd15-size 256 --sd15-rounds 2   # UNet step only

**Threads.** OpenMP reads its waiting policy once, when torch loads, so each policy runs in a
worker process of its own, all loading the bundled default model; the parent asks them for one
image each in turn, round after round (interleaved), first on a quiet machine, then while one
busy process spins on a core. Each worker reports wall and CPU time per image (CPU time counts
every thread, spinning included). Policies:

- ``old``: torch imported before the studio's policy (so OpenMP's default waiting), torch's default
  thread count: what every run did before the policy.
- ``passive``: passive waiting, torch's default thread count.
- ``policy``: passive waiting and the engine's thread count for the work (one thread here).

**Precision.** Two engines in this process, fp32 and bf16, run the same requests alternately: on
the bundled model (its own kind of prompts, 20 steps, three samplers) and on an SD 1.5-shaped model
built from the shipped configs (random weights: the time is real, the picture is not). Reported:
it/s (denoising steps per second) and the PSNR of the final image against fp32's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

POLICIES = ("old", "passive", "policy")
PROMPT = "a small red circle at the top left on a blue background"
PRECISION_PROMPTS = (
    "a small red circle at the top left on a blue background",
    "a large green square in the middle on a yellow background",
    "a stick figure on a white background",
    "a purple ring at the bottom right on an orange background",
)
PRECISION_SAMPLERS = ("Euler", "DPM++ 2M Karras", "Euler a")


# ---- threads: one worker process per policy ------------------------------------------------------
def worker(policy: str, steps: int) -> None:
    """Answer each line on stdin with one image's wall and CPU time, as JSON."""
    import torch  # before the studio's modules: for "old", OpenMP keeps its default waiting

    from pipelines.cpu import THREADS_VARIABLE
    from pipelines.engine import Engine
    from pipelines.types import GenerationRequest

    if policy in ("old", "passive"):
        os.environ[THREADS_VARIABLE] = str(torch.get_num_threads())
    engine = Engine()
    request = GenerationRequest(prompt=PROMPT, seed=1, steps=steps)
    threads: list[int] = []

    def on_step(preview: object) -> None:  # the window decodes a preview at every step too
        threads.append(torch.get_num_threads())

    for _ in range(2):
        engine.run(request, on_step=on_step)  # load, fit the preview decoder, warm the kernels
    print(json.dumps({"ready": True, "threads": threads[-1]}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        started, cpu = time.perf_counter(), time.process_time()
        engine.run(request, on_step=on_step)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


class Worker:
    def __init__(self, policy: str, steps: int) -> None:
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "DIFFUSION_STUDIO_THREADS")
        }
        if policy != "old":
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
        command = [sys.executable, "-m", "benchmarks.bench_cpu", "--worker", policy]
        command += ["--steps", str(steps)]
        self.policy = policy
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environ
        )
        self.threads = self._read()["threads"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.policy} ended")
        return json.loads(line)

    def image(self) -> tuple[float, float]:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        answer = self._read()
        return answer["wall"], answer["cpu"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure_threads(rounds: int, steps: int) -> None:
    workers = [Worker(policy, steps) for policy in POLICIES]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for condition in ("quiet", "contended"):
            busy = busy_process() if condition == "contended" else None
            try:
                time.sleep(1.0 if busy else 0.0)
                for index in range(rounds):
                    # Rotate the order, so no policy always follows the same one.
                    shift = index % len(workers)
                    for worker_ in workers[shift:] + workers[:shift]:
                        times.setdefault((worker_.policy, condition), []).append(worker_.image())
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    finally:
        for worker_ in workers:
            worker_.close()

    print(f"\nthreads: bundled model, 64x64, {steps} steps, Euler, approximate preview every step")
    print(f"{rounds} rounds per condition, policies interleaved; medians (max) per image")
    print("| policy | threads | quiet wall | quiet CPU | contended wall | contended CPU | "
          "contended / quiet |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    medians = {}
    for worker_ in workers:
        cells = []
        for condition in ("quiet", "contended"):
            walls = [w for w, _ in times[(worker_.policy, condition)]]
            cpus = [c for _, c in times[(worker_.policy, condition)]]
            medians[(worker_.policy, condition)] = statistics.median(walls)
            cells.append(f"{statistics.median(walls):.3f} s ({max(walls):.2f})")
            cells.append(f"{statistics.median(cpus):.3f} s")
        ratio = medians[(worker_.policy, "contended")] / medians[(worker_.policy, "quiet")]
        print(f"| {worker_.policy} | {worker_.threads} | {' | '.join(cells)} | {ratio:.2f}x |")
    for condition in ("quiet", "contended"):
        old, new = medians[("old", condition)], medians[("policy", condition)]
        print(f"{condition}: old / policy = {old / new:.2f}x")


# ---- precision --------------------------------------------------------------------------------
def psnr(a: object, b: object) -> float:
    import numpy as np

    first, second = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = float(((first - second) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def compare_precisions(label: str, model: str, requests: list, rounds: int) -> None:
    from pipelines.engine import Engine, EngineSettings

    engines = {name: Engine(EngineSettings(precision=name)) for name in ("fp32", "bf16")}
    warm = replace(requests[0], steps=2)
    for engine in engines.values():
        engine.run(replace(warm, model=model))
    speeds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    scores: list[float] = []
    labels: list[str] = []
    for index in range(rounds):
        for request in requests:
            request = replace(request, model=model)
            images = {}
            order = ("fp32", "bf16") if index % 2 == 0 else ("bf16", "fp32")
            for name in order:
                result = engines[name].run(request)
                speeds[name].append(request.steps / result.timings["denoise"])
                images[name] = result.image
            if index == 0:
                scores.append(psnr(images["fp32"], images["bf16"]))
                labels.append(f"{request.prompt!r}, seed {request.seed}, {request.sampler}")
    fp32, bf16 = statistics.median(speeds["fp32"]), statistics.median(speeds["bf16"])
    print(f"| {label} | {fp32:.2f} | {bf16:.2f} | {bf16 / fp32:.2f}x | "
          f"{min(scores):.1f} / {statistics.median(scores):.1f} / {max(scores):.1f} |")  # fmt: skip
    if len(scores) > 1:
        ranked = sorted(zip(scores, labels, strict=True))
        print("lowest PSNR: " + "; ".join(f"{score:.1f} dB {label}" for score, label in ranked[:3]))


def measure_precision(args: argparse.Namespace) -> None:
    from benchmarks.bench_engine import build_sd15
    from pipelines.cpu import native_bf16
    from pipelines.engine import Engine
    from pipelines.types import GenerationRequest

    print(f"\nprecision: native bf16 on this CPU: {native_bf16()}; "
          f"precision='auto' picks {Engine().precision}")  # fmt: skip
    print("| model | fp32 it/s | bf16 it/s | bf16 / fp32 | PSNR vs fp32, dB (min / median / max) |")
    print("|---|---|---|---|---|")
    bundled = [
        GenerationRequest(prompt=prompt, seed=seed, steps=20, sampler=sampler)
        for prompt in PRECISION_PROMPTS
        for seed in (1, 2)
        for sampler in PRECISION_SAMPLERS
    ]
    compare_precisions("bundled toy-world, 64x64, 20 steps", "", bundled, rounds=1)
    size, steps = args.sd15_size, args.sd15_steps
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = build_sd15(Path(tmp), controlnet=False)
        request = GenerationRequest(
            prompt="a red circle", seed=1, steps=steps, width=size, height=size
        )
        label = f"SD 1.5-shaped (random weights), {size}x{size}, {steps} steps"
        compare_precisions(label, str(model), [request], rounds=args.sd15_rounds)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "cpu"
    names = [line.partition(":")[2].strip() for line in text.splitlines() if "model name" in line]
    return names[0] if names else platform.processor() or "cpu"


def measure_unet(args: argparse.Namespace) -> None:
    """One SD 1.5 UNet evaluation (a CFG pair) in fp32 and bf16, alternately: seconds per step and
    the bf16 output's error relative to fp32's. No VAE and no pipeline, so it fits where emulated
    bf16 makes a whole image too slow to time."""
    import torch
    from diffusers import UNet2DConditionModel

    from pipelines.resources import resource_path

    config = UNet2DConditionModel.load_config(resource_path("configs", "sd1", "unet"))
    torch.manual_seed(0)
    unets = {"fp32": UNet2DConditionModel.from_config(config).eval()}
    unets["bf16"] = UNet2DConditionModel.from_config(config).eval()
    unets["bf16"].load_state_dict(unets["fp32"].state_dict())
    unets["bf16"].to(torch.bfloat16)
    side = args.sd15_size // 8
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, side, side, generator=generator)
    text = torch.randn(2, 77, config["cross_attention_dim"], generator=generator)
    outputs, seconds = {}, {"fp32": [], "bf16": []}
    with torch.inference_mode():
        for index in range(args.sd15_rounds + 1):  # the first round warms up
            for name, unet in unets.items():
                dtype = next(unet.parameters()).dtype
                started = time.perf_counter()
                out = unet(sample.to(dtype), 500, encoder_hidden_states=text.to(dtype)).sample
                if index:
                    seconds[name].append(time.perf_counter() - started)
                outputs[name] = out.float()
    error = float((outputs["bf16"] - outputs["fp32"]).norm() / outputs["fp32"].norm())
    fp32, bf16 = statistics.median(seconds["fp32"]), statistics.median(seconds["bf16"])
    print(f"\nSD 1.5 UNet (random weights), {args.sd15_size}x{args.sd15_size} image, CFG pair, "
          f"{torch.get_num_threads()} threads, {args.sd15_rounds} rounds")  # fmt: skip
    print(f"fp32 {fp32:.2f} s/step ({1 / fp32:.2f} it/s), bf16 {bf16:.2f} s/step "
          f"({1 / bf16:.2f} it/s): bf16 / fp32 speed {fp32 / bf16:.2f}x; "
          f"relative error of the bf16 output {error:.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["threads", "precision", "unet", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=8, help="thread rounds per condition")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sd15-size", type=int, default=128)
    parser.add_argument("--sd15-steps", type=int, default=4)
    parser.add_argument("--sd15-rounds", type=int, default=2)
    parser.add_argument("--worker", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return

    from pipelines.cpu import apply_environment

    apply_environment()  # this process runs the precision part under the studio's policy
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"command: python -m benchmarks.bench_cpu {shlex.join(sys.argv[1:])}")
    print(f"machine: {platform.machine()} {cpu_model()}, "
          f"{os.cpu_count()} logical cores, torch {torch.__version__} (default "
          f"{torch.get_num_threads()} threads), load average {load:.2f} at the start")  # fmt: skip
    if args.part in ("threads", "all"):
        measure_threads(args.rounds, args.steps)
    if args.part in ("precision", "all"):
        measure_precision(args)
    if args.part == "unet":
        measure_unet(args)


if __name__ == "__main__":
    main()
