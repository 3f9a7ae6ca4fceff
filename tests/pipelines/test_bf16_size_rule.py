"""precision="auto" on a CPU with bf16 units picks bf16 only for a denoiser large enough to gain."""

from __future__ import annotations

import pytest
import torch

from pipelines import cpu
from pipelines.engine import Engine, pick_dtype
from pipelines.types import EngineSettings, GenerationRequest

BF16_CPU = frozenset({"avx2", "avx512_bf16"})
SD15_UNET = 859_520_964


@pytest.mark.parametrize(
    ("flags", "parameters", "expected"),
    [
        (BF16_CPU, SD15_UNET, torch.bfloat16),
        (BF16_CPU, cpu.BF16_MIN_PARAMETERS, torch.bfloat16),
        (BF16_CPU, cpu.BF16_MIN_PARAMETERS - 1, torch.float32),
        (BF16_CPU, 3_300_000, torch.float32),  # the bundled model's UNet
        (BF16_CPU, None, torch.bfloat16),  # no model yet: sized like the usual ones
        (frozenset({"avx2"}), SD15_UNET, torch.float32),  # bf16 emulated: never
    ],
)
def test_auto_picks_bf16_for_large_denoisers_on_bf16_cpus(flags, parameters, expected):
    assert cpu.bf16_pays(parameters, flags) is (expected == torch.bfloat16)
    assert pick_dtype(torch.device("cpu"), "auto", flags, parameters) == expected
    # An explicit choice and GPUs are not concerned.
    assert pick_dtype(torch.device("cpu"), "bf16", flags, 1) == torch.bfloat16
    assert pick_dtype(torch.device("cuda"), "auto", flags, 1) == torch.float16


def test_a_small_model_runs_in_fp32_on_a_bf16_cpu(monkeypatch, sd1_folder):
    monkeypatch.setattr(cpu, "cpu_flags", lambda cpuinfo=None: BF16_CPU)
    engine = Engine(EngineSettings(device="cpu"))
    assert engine.precision == "bf16"  # before any model is known
    engine._controlnets[sd1_folder] = (torch.nn.Linear(1, 1).bfloat16(), None)
    result = engine.run(GenerationRequest(prompt="x", model=str(sd1_folder), steps=2, seed=1))
    assert result.precision == "fp32" and engine.precision == "fp32"
    assert next(engine.loaded.pipeline.unet.parameters()).dtype == torch.float32
    assert next(engine.loaded.pipeline.vae.parameters()).dtype == torch.float32
    assert not engine._controlnets  # kept in bf16, they would not fit the fp32 UNet
