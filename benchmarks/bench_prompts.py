"""Prompt encoding and LoRA switching costs.

1. Encoding: a plain 75-token prompt vs a 225-token weighted prompt (three chunks, weights on every
   phrase), both with the empty negative prompt of a guided run, through the studio's encoder; the
   plain prompt through diffusers' own ``encode_prompt`` too, as the reference the studio replaced.
2. LoRA: loading the base model (a fresh Engine, as a model switch does), the first load of a LoRA
   onto it, switching between two loaded LoRAs, and a run without LoRAs after them.

Variants run interleaved round by round in one process; each figure is the median over rounds,
wall time and CPU time (all threads) side by side.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_prompts                    # bundled model
    OMP_NUM_THREADS=1 python -m benchmarks.bench_prompts --text-encoder sd15 # + SD 1.5's CLIP ViT-L

Weights are random where no real model is at hand: the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipelines.engine import Engine, EngineSettings, default_model_path
from pipelines.loras import LoraUse, describe_lora
from pipelines.prompt_encoding import encode_prompts
from pipelines.types import ModelFamily

PHRASES = ("(a lighthouse on a cliff at dusk:1.2)", "((dramatic sky))", "[blurry]",
           "oil painting", "(seagulls:0.8)", "rocks in the foreground", "(warm light:1.1)",
           "waves", "mist", "(masterpiece, best quality:1.3)", "detailed brush strokes")  # fmt: skip


def prompt_of(tokenizer: Any, tokens: int, weighted: bool) -> str:
    """Phrases (their weights stripped when not ``weighted``) up to exactly ``tokens`` tokens."""
    from pipelines.prompts import prompt_report

    pieces: list[str] = []
    index = 0
    while True:
        phrase = PHRASES[index % len(PHRASES)]
        if not weighted:
            phrase = phrase.strip("()[]").split(":")[0].strip("()")
        candidate = ", ".join([*pieces, phrase])
        if prompt_report(tokenizer, candidate).tokens > tokens:
            break
        pieces.append(phrase)
        index += 1
    text = ", ".join(pieces)
    while prompt_report(tokenizer, text).tokens < tokens:
        text += " sea"  # one token each
    return text


def timed(action: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_pair(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def sd15_text_pipeline(pipe: Any) -> Any:
    """``pipe`` with SD 1.5's text encoder architecture (CLIP ViT-L/14, 123 M parameters)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipelines.resources import resource_path

    config = CLIPTextConfig.from_pretrained(resource_path("configs", "sd1", "text_encoder"))
    torch.manual_seed(0)
    pipe.text_encoder = CLIPTextModel(config).eval()
    return pipe


def bench_encoding(pipe: Any, rounds: int, label: str) -> list[str]:
    from pipelines.prompts import prompt_report

    plain = prompt_of(pipe.tokenizer, 75, weighted=False)
    weighted = prompt_of(pipe.tokenizer, 225, weighted=True)
    assert prompt_report(pipe.tokenizer, plain).chunks == 1
    assert prompt_report(pipe.tokenizer, weighted).tokens == 225
    variants: dict[str, Callable[[], Any]] = {
        "diffusers encode_prompt, plain 75 tokens": lambda: _diffusers_encode(pipe, plain),
        "studio, plain 75 tokens": lambda: encode_prompts(pipe, ModelFamily.SD1, plain, "", True),
        "studio, 225-token weighted": lambda: encode_prompts(
            pipe, ModelFamily.SD1, weighted, "", True
        ),
    }
    for action in variants.values():
        action()  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, action in variants.items():
            samples[name].append(timed(action))
    chunks = prompt_report(pipe.tokenizer, weighted).chunks
    base = median_pair(samples["studio, plain 75 tokens"])[0]
    lines = [f"\n{label}: prompt encoding (guided: prompt + empty negative), {rounds} rounds; "
             f"the weighted prompt fills {chunks} chunks",
             "| variant | wall ms | CPU ms | / studio plain |", "|---|---|---|---|"]  # fmt: skip
    for name in variants:
        wall, cpu = median_pair(samples[name])
        lines.append(f"| {name} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {wall / base:.2f}x |")
    return lines


def _diffusers_encode(pipe: Any, prompt: str) -> Any:
    with torch.inference_mode():
        return pipe.encode_prompt(prompt, pipe.device, 1, True, None)


def bench_loras(model: Path, folder: Path, rounds: int, switches: int) -> list[str]:
    from tests.lora_files import save_kohya_lora

    engine = Engine(EngineSettings(precision="fp32"))
    pipe = engine.load(str(model)).pipeline
    first = describe_lora(save_kohya_lora(folder / "a.safetensors", pipe, seed=1, rank=16))
    second = describe_lora(save_kohya_lora(folder / "b.safetensors", pipe, seed=2, rank=16))
    del engine, pipe
    samples: dict[str, list[tuple[float, float]]] = {
        k: []
        for k in (
            "base model load",
            "first LoRA load",
            "switch between two loaded LoRAs",
            "weight change",
            "back to no LoRA",
        )  # fmt: skip
    }
    for index in range(rounds + 1):  # the first round warms caches and is not counted
        measured = _lora_round(model, first, second, switches)
        if index:
            for name, value in measured.items():
                samples[name].append(value)
    base = median_pair(samples["base model load"])[0]
    lines = [f"\nLoRA costs on {model.name} (rank-16 kohya LoRAs on every attention layer and the "
             f"text encoder), {rounds} rounds", "| step | wall ms | CPU ms | / base model load |",
             "|---|---|---|---|"]  # fmt: skip
    for name, values in samples.items():
        wall, cpu = median_pair(values)
        lines.append(f"| {name} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {wall / base:.3f}x |")
    return lines


def _lora_round(
    model: Path, first: Any, second: Any, switches: int
) -> dict[str, tuple[float, float]]:
    gc.collect()
    engine = Engine(EngineSettings(precision="fp32"))
    load = timed(lambda: engine.load(str(model)))
    loaded = engine.loaded.pipeline
    adapters = engine._prompts.adapters  # the engine's own adapter state
    use_a, use_b = LoraUse(first, 1.0), LoraUse(second, 0.7)
    first_load = timed(lambda: adapters.apply(loaded, [use_a]))
    adapters.apply(loaded, [use_b])  # the second file's own first load, not counted
    switch = [timed(lambda u=u: adapters.apply(loaded, [u]))
              for _ in range(switches) for u in (use_a, use_b)]  # fmt: skip
    weight = [timed(lambda w=w: adapters.apply(loaded, [LoraUse(first, w)]))
              for w in (0.3, 0.6, 0.9)]  # fmt: skip
    off = timed(lambda: adapters.apply(loaded, []))
    return {
        "base model load": load,
        "first LoRA load": first_load,
        "switch between two loaded LoRAs": median_pair(switch),
        "weight change": median_pair(weight),
        "back to no LoRA": off,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--switches", type=int, default=5)
    parser.add_argument("--text-encoder", choices=["bundled", "sd15"], default="bundled")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    model = args.model or default_model_path()
    engine = Engine(EngineSettings(precision="fp32"))
    pipe = engine.load(str(model)).pipeline
    lines = bench_encoding(pipe, args.rounds, f"{model.name} text encoder")
    if args.text_encoder == "sd15":
        lines += bench_encoding(sd15_text_pipeline(pipe), args.rounds, "SD 1.5 text encoder")
    del engine, pipe
    with tempfile.TemporaryDirectory(prefix="bench-loras-") as folder:
        lines += bench_loras(model, Path(folder), args.rounds, args.switches)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
