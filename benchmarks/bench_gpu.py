"""The GPU table: plain diffusers vs the engine vs the engine compiled, in one command.

    python -m benchmarks.bench_gpu                 # on a CUDA GPU: SD 1.5 + ControlNet, SDXL
    python -m benchmarks.bench_gpu --smoke         # tiny shapes on the CPU: the script runs

Cases (random weights built from the shipped configs: the time is real, the picture is not):

- SD 1.5-sized UNet with one ControlNet, 512x512, fp16;
- SDXL-sized UNet, 1024x1024, fp16.

Variants, interleaved round by round in one process after a warm-up round (which also compiles):

- ``plain diffusers``: the diffusers pipeline loaded by diffusers itself, moved to the GPU in fp16,
  called with the same inputs; no previews (it has none), no tuning;
- ``engine``: ``Engine.run`` with approximate previews at every step (the window's default for a
  model whose VAE is too slow to decode every step);
- ``engine compiled``: the same with the compiled UNet (``EngineSettings(compile=True)``).

Columns: it/s (denoising steps per second of wall time for the whole image, median of the rounds),
the ratio to plain diffusers, peak GPU memory of one image, and host synchronisations: per step
inside the step loop (the engine's, counted by ``benchmarks.host_syncs``) and per image (on CUDA,
every synchronising call torch reports with ``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.host_syncs import counting_engine_syncs
from pipelines import device_tuning
from pipelines.engine import Engine
from pipelines.types import (
    ControlKind,
    ControlUnit,
    EngineSettings,
    GenerationRequest,
    PreviewMode,
)


@dataclass
class Case:
    label: str
    model: Path
    controlnet: Path | None
    size: int


@dataclass
class Row:
    variant: str
    seconds: list[float]
    peak_bytes: int = 0
    loop_syncs_per_step: float | None = None
    syncs_per_image: int | None = None


# ---- models --------------------------------------------------------------------------------------
def build_sdxl(folder: Path) -> Path:
    """SDXL's UNet, VAE and text encoders from the shipped configs, random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
    )

    from pipelines.resources import resource_path
    from tests import tiny_models

    configs = resource_path("configs", "sdxl")
    pipe = tiny_models.build_sdxl_pipeline()
    unet_config = UNet2DConditionModel.load_config(configs / "unet")
    pipe.unet = UNet2DConditionModel.from_config(unet_config).half()
    pipe.vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")).half()
    first = CLIPTextConfig.from_pretrained(configs / "text_encoder")
    second = CLIPTextConfig.from_pretrained(configs / "text_encoder_2")
    pipe.text_encoder = CLIPTextModel(first).half()
    pipe.text_encoder_2 = CLIPTextModelWithProjection(second).half()
    pipe.save_pretrained(folder / "sdxl", safe_serialization=True)
    return folder / "sdxl"


def condition_map(folder: Path, size: int) -> Path:
    edges = np.zeros((size, size, 3), np.uint8)
    edges[size // 4 : 3 * size // 4, size // 2 - 2 : size // 2 + 2] = 255
    path = folder / f"edges-{size}.png"
    Image.fromarray(edges).save(path)
    return path


def cases(folder: Path, smoke: bool) -> list[Case]:
    if smoke:
        from tests import tiny_models

        model = tiny_models.save_sd1(folder / "tiny-sd1")
        net = tiny_models.save_controlnet(folder / "tiny-controlnet-canny")
        sdxl = tiny_models.save_sdxl(folder / "tiny-sdxl")
        return [
            Case("tiny SD 1.x + 1 ControlNet", model, net, 64),
            Case("tiny SDXL", sdxl, None, 64),
        ]
    from benchmarks.bench_engine import build_sd15

    model, net = build_sd15(folder, controlnet=True)
    return [
        Case("SD 1.5 + 1 ControlNet, 512x512, fp16", model, net, 512),
        Case("SDXL, 1024x1024, fp16", build_sdxl(folder), None, 1024),
    ]


def request_for(case: Case, folder: Path, steps: int) -> GenerationRequest:
    controls = ()
    if case.controlnet is not None:
        image = condition_map(folder, case.size)
        controls = (ControlUnit(ControlKind.CANNY, str(case.controlnet), image=str(image)),)
    return GenerationRequest(
        "a red circle", model=str(case.model), seed=1, steps=steps, width=case.size,
        height=case.size, controls=controls, preview=PreviewMode.APPROXIMATE,
    )  # fmt: skip


# ---- variants ------------------------------------------------------------------------------------
def plain_diffusers(case: Case, request: GenerationRequest, device: str, dtype: torch.dtype) -> Any:
    """A callable making one image with diffusers' own pipeline, as a script would."""
    import diffusers

    from pipelines import models

    family = models.detect_family(case.model)
    if case.controlnet is not None:
        net = diffusers.ControlNetModel.from_pretrained(case.controlnet, dtype=dtype)
        cls = diffusers.StableDiffusionControlNetPipeline
        pipe = cls.from_pretrained(case.model, controlnet=net, dtype=dtype,
                                   safety_checker=None, requires_safety_checker=False)  # fmt: skip
    elif family.value == "sdxl":
        pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(case.model, dtype=dtype)
    else:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(
            case.model, dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    noise = Engine(EngineSettings(device="cpu")).initial_noise(request, 4, pipe.vae_scale_factor)
    arguments: dict[str, Any] = dict(
        prompt=request.prompt, num_inference_steps=request.steps, guidance_scale=request.cfg_scale,
        width=request.width, height=request.height, latents=noise.to(device, dtype),
    )  # fmt: skip
    if case.controlnet is not None:
        arguments["image"] = Image.open(request.controls[0].image).convert("RGB")

    def call() -> None:
        with torch.inference_mode():
            pipe(**arguments)

    return call


def engine_variant(request: GenerationRequest, settings: EngineSettings) -> Any:
    engine = Engine(settings)
    engine.prepare(request)  # loads the model (and compiles nothing yet)

    def call() -> None:
        engine.run(request, on_step=lambda preview: None)

    return call


# ---- measuring -----------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(call: Callable[[], None], device: str) -> float:
    synchronize(device)
    started = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - started


def peak_memory(call: Callable[[], None], device: str) -> int:
    if device != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats()
    call()
    return int(torch.cuda.max_memory_allocated())


def syncs_per_image(call: Callable[[], None], device: str) -> int | None:
    """Synchronising calls torch reports for one image (CUDA only)."""
    if device != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def loop_syncs(call: Callable[[], None], steps: int) -> float:
    with counting_engine_syncs() as counter:
        call()
    return counter.total / steps


@contextlib.contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    original = device_tuning.compile_unet
    device_tuning.compile_unet = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        device_tuning.compile_unet = original


def measure(case: Case, folder: Path, args: argparse.Namespace) -> list[Row]:
    device = "cpu" if args.smoke else "cuda"
    precision = "fp32" if args.smoke else "fp16"
    dtype = torch.float32 if args.smoke else torch.float16
    request = request_for(case, folder, args.steps)
    settings = EngineSettings(device=device, precision=precision)
    variants = {
        "plain diffusers": plain_diffusers(case, request, device, dtype),
        "engine": engine_variant(request, settings),
        "engine compiled": engine_variant(request, replace(settings, compile=True)),
    }
    rows = {name: Row(name, []) for name in variants}
    for call in variants.values():  # warm-up round: kernels chosen, UNet compiled
        call()
    for round_index in range(args.rounds):
        names = list(variants)
        if round_index % 2:
            names.reverse()  # neither variant always runs first
        for name in names:
            rows[name].seconds.append(timed(variants[name], device))
    for name, call in variants.items():
        rows[name].peak_bytes = peak_memory(call, device)
        rows[name].syncs_per_image = syncs_per_image(call, device)
        # The counter's tagged tensors are not traced by torch.compile: the compiled variant's
        # loop is the same code around a compiled UNet, and the per-image count covers it.
        if name == "engine":
            rows[name].loop_syncs_per_step = loop_syncs(call, args.steps)
    return list(rows.values())


def print_table(case: Case, rows: list[Row], steps: int) -> None:
    print(f"\n### {case.label}, {steps} steps, Euler\n")
    print("| variant | it/s (median) | vs plain | peak GPU memory | syncs/step in the loop "
          "| syncs per image |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    base = steps / statistics.median(rows[0].seconds)
    for row in rows:
        rate = steps / statistics.median(row.seconds)
        memory = f"{row.peak_bytes / 2**30:.2f} GiB" if row.peak_bytes else "—"
        loop = "—" if row.loop_syncs_per_step is None else f"{row.loop_syncs_per_step:.2f}"
        image = "—" if row.syncs_per_image is None else str(row.syncs_per_image)
        print(f"| {row.variant} | {rate:.2f} | {rate / base:.2f}x | {memory} | {loop} | {image} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    args.steps = args.steps or (3 if args.smoke else 20)
    args.rounds = args.rounds or (1 if args.smoke else 5)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --smoke for the CPU check")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    print(f"torch {torch.__version__}, {device}, {'smoke (CPU)' if args.smoke else 'CUDA fp16'}")
    # The smoke check compiles with the eager backend: inductor would need minutes here.
    backend = compile_backend("eager") if args.smoke else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, backend:
        folder = Path(tmp)
        for case in cases(folder, args.smoke):
            print_table(case, measure(case, folder, args), args.steps)


if __name__ == "__main__":
    main()
