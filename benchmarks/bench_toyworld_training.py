"""Toy-world training steps: fp32 against bf16 autocast, on this machine's CPU.

    python -m benchmarks.bench_toyworld_training --rounds 5 --steps 3

One training step of each fine-tuning stage (``text``: the text-encoder distillation through the
frozen UNet; ``controlnet``: the canny ControlNet with the UNet frozen), batch 32, at the bundled
model's size, one torch thread, built from the shipped weights. The two precisions run alternately,
round after round (interleaved), so a busy machine slows both alike. Reported per stage and
precision: the median wall and CPU seconds per step, and the ratio fp32 / bf16 (above 1: bf16 is
faster). The training script turns bf16 on by itself only where it pays (``--precision auto``:
CUDA GPUs with bf16, CPUs with AMX).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

BATCH = 32


def _models() -> dict:
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    from pipelines.resources import resource_path

    root = resource_path("models")
    load = dict(torch_dtype=torch.float32)
    return {
        "unet": UNet2DConditionModel.from_pretrained(root / "toy-world" / "unet", **load),
        "text": CLIPTextModel.from_pretrained(root / "toy-world" / "text_encoder", **load),
        "canny": ControlNetModel.from_pretrained(root / "toy-world-controlnet-canny", **load),
    }


def _steps(models: dict) -> dict:
    unet, text, controlnet = models["unet"], models["text"], models["canny"]
    unet.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(BATCH, 4, 8, 8, generator=g)
    timesteps = torch.randint(0, 1000, (BATCH,), generator=g)
    tokens = torch.randint(0, 49000, (BATCH, 77), generator=g)
    maps = torch.rand(BATCH, 3, 64, 64, generator=g)

    def text_step() -> torch.Tensor:
        with torch.no_grad():
            target = unet(latents, timesteps, text(tokens)[0]).sample
        return F.mse_loss(unet(latents, timesteps, text(tokens)[0]).sample.float(), target.float())

    def controlnet_step() -> torch.Tensor:
        with torch.no_grad():
            hidden = text(tokens)[0]
        down, mid = controlnet(latents, timesteps, hidden, controlnet_cond=maps, return_dict=False)
        out = unet(latents, timesteps, hidden, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample  # fmt: skip
        return out.float().pow(2).mean()

    return {"text": text_step, "controlnet": controlnet_step}


def _time(step, bf16: bool, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = step()
        loss.backward()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per precision per round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from pipelines.toyworld.base import cpu_has_fast_bf16

    steps = _steps(_models())
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for step in steps.values():  # warm up both paths once
        _time(step, False, 1), _time(step, True, 1)
    for _ in range(args.rounds):
        for name, step in steps.items():
            for precision in ("fp32", "bf16"):
                times.setdefault((name, precision), []).append(
                    _time(step, precision == "bf16", args.steps)
                )
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    report = {
        "cpu": platform.processor() or platform.machine(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "auto_uses_bf16": cpu_has_fast_bf16(),
        "rounds": args.rounds,
        "steps": args.steps,
    }
    print(json.dumps(report))
    print(f"{'stage':12s} {'precision':9s} {'wall s/step':>12s} {'CPU s/step':>11s}")
    for (name, precision), values in times.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        report[f"{name}_{precision}_wall"], report[f"{name}_{precision}_cpu"] = wall, cpu
        print(f"{name:12s} {precision:9s} {wall:12.3f} {cpu:11.3f}")
    for name in steps:
        ratio = report[f"{name}_fp32_wall"] / report[f"{name}_bf16_wall"]
        report[f"{name}_fp32_over_bf16"] = ratio
        print(f"{name}: fp32 / bf16 wall time = {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
