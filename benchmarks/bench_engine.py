"""Engine overhead: ``Engine.run`` with an x0 preview at every step vs the bare diffusers pipeline.

Both paths drive the same loaded pipeline object in one process, interleaved round by round, so the
ratio is not skewed by warm-up or by other load on the machine. Also measures the time from calling
``run`` to the first preview, and how many steps still run after a cancel.

    python -m benchmarks.bench_engine                      # CPU, small model built from configs
    python -m benchmarks.bench_engine --preset sd15 --device cuda   # SD 1.5-sized UNet + ControlNet

Weights are random: the cost of a step does not depend on their values.
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

import torch

from pipelines.engine import Engine, EngineSettings
from pipelines.types import ControlKind, ControlUnit, GenerationRequest, StepPreview


def build_small(folder: Path) -> tuple[Path, Path]:
    """A small SD 1.x-shaped model: ~40 M UNet parameters, 256x256 images."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from tests import tiny_models

    pipe = tiny_models.build_sd1_pipeline()
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(
        block_out_channels=(128, 256, 256),
        layers_per_block=2,
        sample_size=32,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=tiny_models.TEXT_DIM,
        attention_head_dim=8,
    )
    pipe.save_pretrained(folder / "small", safe_serialization=True)
    controlnet = ControlNetModel.from_unet(pipe.unet)
    controlnet.save_pretrained(folder / "small-controlnet-canny", safe_serialization=True)
    return folder / "small", folder / "small-controlnet-canny"


def build_sd15(folder: Path, controlnet: bool = True) -> tuple[Path, Path | None]:
    """SD 1.5's UNet, VAE and ControlNet architectures from the shipped configs, random weights."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipelines.resources import resource_path
    from tests import tiny_models

    configs = resource_path("configs", "sd1")
    pipe = tiny_models.build_sd1_pipeline()
    pipe.unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
    pipe.vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    text = CLIPTextConfig.from_pretrained(configs / "text_encoder")
    pipe.text_encoder = CLIPTextModel(text)
    pipe.save_pretrained(folder / "sd15", safe_serialization=True)
    if not controlnet:
        return folder / "sd15", None
    controlnet_config = resource_path("configs", "controlnet-sd1")
    net = ControlNetModel.from_config(ControlNetModel.load_config(controlnet_config))
    net.save_pretrained(folder / "sd15-controlnet-canny", safe_serialization=True)
    return folder / "sd15", folder / "sd15-controlnet-canny"


def bare_call(engine: Engine, request: GenerationRequest) -> float:
    pipe = engine.loaded.pipeline
    from pipelines.samplers import get_sampler

    pipe.scheduler = get_sampler(request.sampler).make(engine.loaded.scheduler_config)
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(
            prompt=request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            latents=engine.initial_noise(request).to(engine.device, engine.dtype),
        )
    _sync(engine)
    return time.perf_counter() - started


def engine_call(engine: Engine, request: GenerationRequest) -> tuple[float, float]:
    first: list[float] = []
    started = time.perf_counter()
    engine.run(request, on_step=lambda p: first or first.append(time.perf_counter() - started))
    _sync(engine)
    return time.perf_counter() - started, first[0]


def cancel_latency(engine: Engine, request: GenerationRequest, at_step: int = 3) -> int:
    """Steps completed after the cancel was asked for (0: it stopped within the step)."""
    cancel = threading.Event()
    steps: list[int] = []

    def on_step(preview: StepPreview) -> None:
        steps.append(preview.step)
        if preview.step == at_step:
            cancel.set()

    result = engine.run(request, on_step=on_step, cancel=cancel)
    assert result.cancelled
    return max(steps) - at_step


def _sync(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def preset_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The options every engine benchmark shares: which model, where, how long."""
    parser.add_argument("--preset", choices=["small", "sd15"], default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=rounds)


def preset_setup(args: argparse.Namespace, folder: Path) -> tuple[Engine, GenerationRequest, Path]:
    """Build the preset's model in ``folder``: the engine, a request for it, its ControlNet."""
    build = build_small if args.preset == "small" else build_sd15
    model, controlnet = build(folder)
    engine = Engine(EngineSettings(device=args.device))
    size = 256 if args.preset == "small" else 512
    request = GenerationRequest(
        prompt="a red circle", model=str(model), seed=1, steps=args.steps, width=size, height=size
    )
    return engine, request, controlnet


def main() -> None:
    parser = argparse.ArgumentParser()
    preset_arguments(parser, rounds=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine, request, controlnet = preset_setup(args, Path(tmp))
        size = request.width
        engine.run(replace(request, steps=2))  # load and warm up
        bare_call(engine, replace(request, steps=2))
        bare, ours, first = [], [], []
        for _ in range(args.rounds):
            bare.append(bare_call(engine, request))
            seconds, to_first = engine_call(engine, request)
            ours.append(seconds)
            first.append(to_first)
        latency = cancel_latency(engine, request)

        edges = Path(tmp) / "edges.png"
        from PIL import Image

        Image.new("RGB", (size, size)).save(edges)
        unit = ControlUnit(ControlKind.CANNY, str(controlnet), image=str(edges))
        controlled = replace(request, controls=(unit,))
        engine.run(replace(controlled, steps=2))
        if engine.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with_control = [engine_call(engine, controlled)[0] for _ in range(max(2, args.rounds // 2))]
        peak = torch.cuda.max_memory_allocated() / 2**30 if engine.device.type == "cuda" else None

    bare_s, ours_s = statistics.median(bare), statistics.median(ours)
    device = torch.cuda.get_device_name() if engine.device.type == "cuda" else platform.processor()
    print(f"machine: {platform.machine()} {device or 'cpu'}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, dtype {engine.dtype}")  # fmt: skip
    print(f"preset {args.preset}, {size}x{size}, {args.steps} steps, Euler, {args.rounds} rounds")
    print(f"bare pipeline, no callback : {args.steps / bare_s:7.2f} it/s ({bare_s:.2f} s/image)")
    print(f"engine, preview every step : {args.steps / ours_s:7.2f} it/s ({ours_s:.2f} s/image)")
    print(f"ratio engine/bare (it/s)   : {bare_s / ours_s:7.3f}  (goal >= 0.97)")
    print(f"run() to first preview     : {statistics.median(first):7.3f} s")
    print(f"steps run after cancel     : {latency}")
    control_s = statistics.median(with_control)
    print(
        f"with one ControlNet        : {args.steps / control_s:7.2f} it/s ({control_s:.2f} s/image)"
    )
    if peak is not None:
        print(f"peak VRAM (ControlNet run) : {peak:.2f} GiB")


if __name__ == "__main__":
    main()
