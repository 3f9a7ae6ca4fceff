"""Reworking a picture: what image-to-image and inpainting cost.

1. Image-to-image at strength 0.5 against text-to-image of the same steps, both through
   ``Engine.run`` with a preview at every step: the reworking run spends half the steps plus one
   VAE encode of the input (goal: at most 0.55x the time).
2. The engine's inpainting path (preview composite at every step, paste-back after decoding)
   against diffusers' own ``StableDiffusionInpaintPipeline`` around the same components with no
   callback, both at strength 1 with the same mask (goal: at least 0.97x its it/s).

All four are interleaved round by round in one process on the same loaded weights; wall and CPU
(process) time are reported side by side.

    python -m benchmarks.bench_rework                   # CPU, small model built from configs
    python -m benchmarks.bench_rework --preset sd15 --device cuda

Weights are random: the cost of a step does not depend on their values.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from benchmarks.bench_engine import _sync, preset_arguments, preset_setup
from pipelines.engine import Engine
from pipelines.samplers import get_sampler
from pipelines.types import GenerationRequest, ImageInput, PreviewMode

Timing = tuple[float, float]  # wall seconds, CPU seconds


def timed(engine: Engine, work: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    _sync(engine)
    return time.perf_counter() - wall, time.process_time() - cpu


def pictures(folder: Path, size: int) -> tuple[Path, Path]:
    picture = Image.new("RGB", (size, size), (30, 60, 200))
    ImageDraw.Draw(picture).ellipse(
        (size // 8, size // 8, size // 2, size // 2), fill=(230, 200, 30)
    )
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=255)
    picture.save(folder / "input.png")
    mask.save(folder / "mask.png")
    return folder / "input.png", folder / "mask.png"


def diffusers_inpainting(engine: Engine, request: GenerationRequest) -> Callable[[], object]:
    """diffusers' own inpainting pipeline on the engine's loaded components, no callback, with
    the CPU threads the engine would give the same run."""
    from diffusers import StableDiffusionInpaintPipeline

    loaded = engine.loaded
    assert loaded is not None and request.source is not None
    parts = {k: v for k, v in loaded.pipeline.components.items()
             if k not in ("safety_checker", "feature_extractor")}  # fmt: skip
    pipe = StableDiffusionInpaintPipeline(**parts, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(request.source.image).convert("RGB")
    mask = Image.open(request.source.mask or "").convert("L")
    prepared = engine.prepare(request)  # for the thread count the engine gives this work

    def call() -> object:
        pipe.scheduler = get_sampler(request.sampler).make(loaded.scheduler_config)
        with engine.exclusive(prepared, batch=2), torch.inference_mode():
            return pipe(prompt=request.prompt, image=image, mask_image=mask, strength=1.0,
                        num_inference_steps=request.steps, guidance_scale=request.cfg_scale,
                        width=request.width, height=request.height,
                        generator=torch.Generator("cpu").manual_seed(1))  # fmt: skip

    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    preset_arguments(parser, rounds=3)
    parser.add_argument("--preview", default="approximate", choices=[m.value for m in PreviewMode])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine, request, _ = preset_setup(args, Path(tmp))
        # The approximate preview: what the reworking path adds, not which decoder "auto" picks
        # for this model (benchmarks/bench_speed.py measures the decoders).
        request = replace(request, preview=PreviewMode(args.preview))
        image, mask = pictures(Path(tmp), request.width or 256)
        img2img = replace(request, source=ImageInput(image=str(image), strength=0.5))
        inpaint = replace(request, source=ImageInput(image=str(image), strength=1.0,
                                                     mask=str(mask)))  # fmt: skip
        previews = lambda preview: None  # noqa: E731 - a consumer that takes every frame
        runs: dict[str, Callable[[], object]] = {
            "text to image": lambda: engine.run(request, on_step=previews),
            "image to image 0.5": lambda: engine.run(img2img, on_step=previews),
            "engine inpainting": lambda: engine.run(inpaint, on_step=previews),
        }
        for warm in (request, img2img, inpaint):
            engine.run(replace(warm, steps=2))
        runs["diffusers inpainting"] = diffusers_inpainting(engine, inpaint)
        timings: dict[str, list[Timing]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                timings[name].append(timed(engine, run))

    wall = {name: statistics.median(t[0] for t in values) for name, values in timings.items()}
    cpu = {name: statistics.median(t[1] for t in values) for name, values in timings.items()}
    device = torch.cuda.get_device_name() if engine.device.type == "cuda" else platform.processor()
    print(f"machine: {platform.machine()} {device or 'cpu'}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, dtype {engine.dtype}")  # fmt: skip
    print(f"preset {args.preset}, {request.width}x{request.height}, {args.steps} steps, Euler, "
          f"{args.preview} previews, {args.rounds} interleaved rounds (medians)")  # fmt: skip
    for name in runs:
        print(f"{name:22s}: {wall[name]:7.2f} s wall {cpu[name]:7.2f} s CPU")
    print(f"img2img 0.5 / txt2img (wall) : {wall['image to image 0.5'] / wall['text to image']:.3f}"
          "  (goal <= 0.55)")  # fmt: skip
    print(f"img2img 0.5 / txt2img (CPU)  : {cpu['image to image 0.5'] / cpu['text to image']:.3f}")
    ratio = wall["diffusers inpainting"] / wall["engine inpainting"]
    print(f"inpainting it/s engine/diffusers (wall): {ratio:.3f}  (goal >= 0.97)")
    ratio_cpu = cpu["diffusers inpainting"] / cpu["engine inpainting"]
    print(f"inpainting it/s engine/diffusers (CPU) : {ratio_cpu:.3f}")


if __name__ == "__main__":
    main()
