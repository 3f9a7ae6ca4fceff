"""From which UNet size bf16 beats fp32 on a CPU with bf16 units: one UNet evaluation (a CFG pair)
in fp32 and bf16, alternately, for the bundled model's UNet and SD 1.5-shaped UNets scaled down
(random weights: the time is real, the output is not). Chooses ``pipelines.cpu.BF16_MIN_PARAMETERS``.

    python -m benchmarks.bench_bf16_size --rounds 5 --side 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

WIDTHS = (32, 64, 128, 320)  # first block's channels; 320 is SD 1.5's own UNet


def unets() -> list[tuple[str, object]]:
    from diffusers import UNet2DConditionModel

    from pipelines.engine import default_model_path
    from pipelines.resources import resource_path

    found = [
        ("bundled toy-world", UNet2DConditionModel.from_pretrained(default_model_path() / "unet"))
    ]
    config = UNet2DConditionModel.load_config(resource_path("configs", "sd1", "unet"))
    for width in WIDTHS:
        channels = [width * m for m in (1, 2, 4, 4)]
        scaled = dict(config, block_out_channels=channels)
        found.append((f"SD 1.5 shape, width {width}", UNet2DConditionModel.from_config(scaled)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--side", type=int, default=16, help="latent side (image side / 8)")
    args = parser.parse_args()
    import torch

    from pipelines import cpu

    print(f"bf16 units: {cpu.native_bf16()}; torch {torch.__version__}")
    print("| UNet | parameters | latent | threads | fp32 ms/step | bf16 ms/step | bf16 / fp32 speed "
          "| fp32 CPU ms | bf16 CPU ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, unet in unets():
        unet.eval()
        parameters = sum(p.numel() for p in unet.parameters())
        side = unet.config.sample_size if name.startswith("bundled") else args.side
        dim = unet.config.cross_attention_dim
        generator = torch.Generator().manual_seed(1)
        sample = torch.randn(2, 4, side, side, generator=generator)
        text = torch.randn(2, 77, dim, generator=generator)
        threads = cpu.choose_threads(side * side, parameters)
        copies = {"fp32": unet, "bf16": __import__("copy").deepcopy(unet).to(torch.bfloat16)}
        wall: dict[str, list[float]] = {"fp32": [], "bf16": []}
        used: dict[str, list[float]] = {"fp32": [], "bf16": []}
        with torch.inference_mode(), cpu.thread_count(threads):
            for index in range(args.rounds + 1):  # the first round warms up
                for label, model in copies.items():
                    dtype = torch.float32 if label == "fp32" else torch.bfloat16
                    started, cpu_started = time.perf_counter(), os.times()
                    model(sample.to(dtype), 500, encoder_hidden_states=text.to(dtype))
                    ended = os.times()
                    if index:
                        wall[label].append(time.perf_counter() - started)
                        used[label].append(ended.user + ended.system
                                           - cpu_started.user - cpu_started.system)  # fmt: skip
        fp32, bf16 = (statistics.median(wall[k]) * 1000 for k in ("fp32", "bf16"))
        fp32_cpu, bf16_cpu = (statistics.median(used[k]) * 1000 for k in ("fp32", "bf16"))
        print(f"| {name} | {parameters / 1e6:.1f} M | {side}x{side} | {threads} | {fp32:.1f} "
              f"| {bf16:.1f} | {fp32 / bf16:.2f}x | {fp32_cpu:.0f} | {bf16_cpu:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
