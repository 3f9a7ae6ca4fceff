"""SD 3.x and Flux.1 through the engine vs the bare diffusers pipeline, on the CPU.

Both paths drive the same loaded pipeline object in one process, interleaved round by round; the
engine adds its x0 preview (x_t - sigma * v, approximate latent-to-RGB map) at every step, Flux's
packing and its step tracking. Wall time and this process's CPU time are both reported.

    python -m benchmarks.bench_flow                 # both families, 256x256, 8 steps, 3 rounds
    python -m benchmarks.bench_flow --rounds 5 --steps 12

The shapes are small but have the real structure: 64-wide attention heads for SD 3 (128 for Flux),
a 16-channel VAE with 8x downsampling, CLIP + T5 text encoders, the real token counts (77 CLIP,
256 / 512 T5). Weights are random: the cost of a step does not depend on their values.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from pipelines import flow
from pipelines.engine import Engine, EngineSettings
from pipelines.types import GenerationRequest


def build_models(folder: Path) -> dict[str, Path]:
    """An SD 3-shaped (6 heads, 4 blocks) and a Flux-shaped (3 heads, 2 + 6 blocks) model."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    from tests import flow_models

    tokenizer = flow_models.train_t5_tokenizer(folder / "t5")
    sd3 = flow_models.build_sd3_pipeline(tokenizer)
    torch.manual_seed(0)
    sd3.transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, num_layers=4, attention_head_dim=64,
        num_attention_heads=6, joint_attention_dim=flow_models.T5_WIDTH,
        caption_projection_dim=384, out_channels=16, pos_embed_max_size=64,
        pooled_projection_dim=flow_models.CLIP_L_WIDTH + flow_models.CLIP_G_WIDTH,
    ).eval()  # fmt: skip
    flux = flow_models.build_flux_pipeline(tokenizer)
    flux.transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=6, attention_head_dim=128,
        num_attention_heads=3, joint_attention_dim=flow_models.T5_WIDTH,
        pooled_projection_dim=flow_models.CLIP_L_WIDTH, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    ).eval()  # fmt: skip
    return {
        "SD 3.x": flow_models.save_pipeline(sd3, folder / "sd3-bench"),
        "Flux.1-dev": flow_models.save_pipeline(flux, folder / "flux-bench"),
    }


def bare_call(engine: Engine, request: GenerationRequest) -> tuple[float, float]:
    """The pipeline as diffusers' documentation calls it, from the engine's starting noise."""
    loaded = engine.loaded
    pipe = loaded.pipeline
    pipe.scheduler = type(pipe.scheduler).from_config(loaded.scheduler_config)
    latents = engine.initial_noise(request, flow.latent_channels(pipe)).to(engine.dtype)
    arguments = dict(guidance_scale=request.cfg_scale)
    if loaded.family.value == "flux":
        latents = flow.pack(latents)
    else:
        arguments["negative_prompt"] = request.negative_prompt or None
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        pipe(
            prompt=request.prompt, num_inference_steps=request.steps, width=request.width,
            height=request.height, latents=latents, **arguments,
        )  # fmt: skip
    return time.perf_counter() - wall, time.process_time() - cpu


def engine_call(engine: Engine, request: GenerationRequest) -> tuple[float, float, int]:
    previews: list[object] = []
    wall, cpu = time.perf_counter(), time.process_time()
    engine.run(request, on_step=previews.append)
    return time.perf_counter() - wall, time.process_time() - cpu, len(previews)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    # The bare pipeline runs on torch's thread count: the engine gets the same, so the ratio is
    # the engine's own cost, not its thread policy's (bench_cpu measures that).
    threads = torch.get_num_threads()
    engine = Engine(EngineSettings(device="cpu", precision="fp32", threads=threads))
    print(f"machine: {platform.machine()} {platform.processor() or 'cpu'}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, fp32")  # fmt: skip
    print(f"{args.size}x{args.size}, {args.steps} steps, Euler, {args.rounds} interleaved rounds")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in build_models(Path(tmp)).items():
            request = GenerationRequest(
                prompt="a lighthouse on a cliff at dusk", model=str(model), seed=1,
                steps=args.steps, width=args.size, height=args.size,
                cfg_scale=4.0 if label == "SD 3.x" else 3.5,
            )  # fmt: skip
            engine.run(replace(request, steps=2))  # load and warm up both paths
            bare_call(engine, replace(request, steps=2))
            bare, ours, shown = [], [], 0
            for round_ in range(args.rounds):
                # Alternating which path goes first: neither always runs on a cooler cache.
                if round_ % 2:
                    *timing, shown = engine_call(engine, request)
                    bare.append(bare_call(engine, request))
                else:
                    bare.append(bare_call(engine, request))
                    *timing, shown = engine_call(engine, request)
                ours.append(tuple(timing))
            parameters = sum(p.numel() for p in engine.loaded.pipeline.transformer.parameters())
            bare_wall = statistics.median(t[0] for t in bare)
            ours_wall = statistics.median(t[0] for t in ours)
            bare_cpu = statistics.median(t[1] for t in bare)
            ours_cpu = statistics.median(t[1] for t in ours)
            print(f"\n{label} ({parameters / 1e6:.1f} M transformer parameters, CFG/guidance "
                  f"{request.cfg_scale:g}, {shown} previews per run)")  # fmt: skip
            print(f"  bare pipeline   : {args.steps / bare_wall:6.2f} it/s  wall {bare_wall:6.2f} s"
                  f"  cpu {bare_cpu:6.2f} s")  # fmt: skip
            print(f"  engine          : {args.steps / ours_wall:6.2f} it/s  wall {ours_wall:6.2f} s"
                  f"  cpu {ours_cpu:6.2f} s")  # fmt: skip
            print(f"  ratio engine/bare (it/s): {bare_wall / ours_wall:.3f} by wall time, "
                  f"{bare_cpu / ours_cpu:.3f} by CPU time  (goal >= 0.97)")  # fmt: skip


if __name__ == "__main__":
    main()
