"""Device set-up once per load: memory options set on change only, the CUDA tuning's code paths
(channels_last, fused QKV with SDPA kept), the opt-in compiled UNet, and the half-precision VAE
guard."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipelines import device_tuning
from pipelines.engine import Engine
from pipelines.types import EngineSettings, GenerationRequest, MemoryOptions, PreviewMode


@pytest.fixture
def request_for(sd1_folder):
    def make(**changes) -> GenerationRequest:
        base = GenerationRequest("a red circle", model=str(sd1_folder), seed=5, steps=3,
                                 preview=PreviewMode.APPROXIMATE)  # fmt: skip
        return replace(base, **changes)

    return make


def test_memory_options_touch_the_processors_only_when_they_change(
    engine, request_for, monkeypatch
):
    engine.run(request_for())
    unet = engine.loaded.pipeline.unet
    calls = []
    original = type(unet).set_attention_slice
    monkeypatch.setattr(
        type(unet),
        "set_attention_slice",
        lambda self, size: calls.append(size) or original(self, size),
    )
    engine.run(request_for())
    engine.run(request_for(seed=6))
    assert calls == []  # the same options: the processors stay as they are
    sliced = request_for(memory=MemoryOptions(attention_slicing=True))
    engine.run(sliced)
    engine.run(sliced)
    assert len(calls) == 1
    engine.run(request_for())
    assert len(calls) == 2 and calls[-1] is None


def test_cuda_tuning_keeps_sdpa_fuses_qkv_and_changes_the_image_little(sd1_folder, request_for):
    engine = Engine(EngineSettings(precision="fp32"))
    before = np.asarray(engine.run(request_for()).image, dtype=np.int16)
    pipe = engine.loaded.pipeline
    assert device_tuning.sdpa_everywhere(pipe.unet)
    done = device_tuning.tune_for_device(pipe, torch.device("cpu"), force=True)
    assert "unet channels_last" in done and "unet fused QKV" in done
    kinds = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert kinds == {"FusedAttnProcessor2_0"}
    after = np.asarray(engine.run(request_for()).image, dtype=np.int16)
    assert np.abs(after - before).max() <= 2


def fake_compile(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stands for torch.compile (minutes of inductor on this CPU): marks the module compiled and
    records the options of each call."""
    calls: list[dict] = []

    def compile_(module: torch.nn.Module, **options: object) -> torch.nn.Module:
        calls.append(options)
        module._orig_mod = module
        return module

    monkeypatch.setattr(device_tuning.torch, "compile", compile_)
    return calls


def test_compiled_mode_compiles_the_unet_once_with_its_cache_in_the_studio_cache_folder(
    sd1_folder, request_for, own_user_folders, monkeypatch
):
    monkeypatch.delenv(device_tuning.CACHE_VARIABLE, raising=False)
    expected = np.asarray(Engine(EngineSettings(precision="fp32")).run(request_for()).image)
    compiled = fake_compile(monkeypatch)
    engine = Engine(EngineSettings(precision="fp32", compile=True))
    result = engine.run(request_for())
    engine.run(request_for(seed=8))
    assert compiled == [{"backend": "inductor", "dynamic": False}]  # at the load, once
    assert device_tuning.is_compiled(engine.loaded.pipeline.unet)
    folder = own_user_folders["XDG_CACHE_HOME"] / "diffusion-studio" / "torch-compile"
    assert folder.is_dir() and os.environ[device_tuning.CACHE_VARIABLE] == str(folder)
    assert np.array_equal(np.asarray(result.image), expected)


def test_a_half_precision_vae_that_overflows_is_decoded_again_in_fp32_and_said_once(
    request_for, monkeypatch
):
    engine = Engine(EngineSettings(precision="bf16"))
    first = engine.run(request_for())
    vae = engine.loaded.pipeline.vae
    decode = type(vae).decode

    def overflowing(self, latents, *args, **kwargs):
        # What an fp16 VAE does on some latents: infinities, then NaN, in half precision only.
        output = decode(self, latents, *args, **kwargs)
        if next(self.parameters()).dtype != torch.float32:
            output[0].fill_(float("nan"))
        return output

    monkeypatch.setattr(type(vae), "decode", overflowing)
    result = engine.run(request_for())
    again = engine.run(request_for(seed=9))
    image = np.asarray(result.image, dtype=np.int16)
    assert image.std() > 5  # not the black image the NaN would have given
    assert np.abs(image - np.asarray(first.image, dtype=np.int16)).mean() < 8
    assert any("overflowed" in w for w in result.warnings)
    assert not any("overflowed" in w for w in again.warnings)  # said once
    assert next(vae.parameters()).dtype == torch.bfloat16  # back to its own precision


def test_the_cli_flag_turns_the_compiled_mode_on(sd1_folder, tmp_path, monkeypatch):
    from pipelines import cli

    compiled = fake_compile(monkeypatch)
    out = tmp_path / "x.png"
    arguments = ["generate", "--prompt", "x", "--model", str(sd1_folder), "--steps", "2"]
    assert cli.main([*arguments, "--size", "64x64", "--out", str(out), "--compile"]) == 0
    assert out.exists() and len(compiled) == 1


def test_a_lora_on_a_fused_unet_still_changes_the_image(sd1_folder, tmp_path):
    from tests.lora_files import save_kohya_lora
    from tests.tiny_models import build_sd1_pipeline

    save_kohya_lora(tmp_path / "Lora" / "detail.safetensors", build_sd1_pipeline(), seed=1)
    settings = EngineSettings(model_folders=(tmp_path,), precision="fp32")
    request = GenerationRequest("a red car <lora:detail:1>", model=str(sd1_folder), seed=5,
                                steps=2, preview=PreviewMode.APPROXIMATE)  # fmt: skip
    plain = Engine(settings)
    expected = np.asarray(plain.run(request).image, dtype=np.int16)
    tuned = Engine(settings)
    tuned.load(str(sd1_folder))
    device_tuning.tune_for_device(tuned.loaded.pipeline, torch.device("cpu"), force=True)
    result = np.asarray(tuned.run(request).image, dtype=np.int16)
    kinds = {type(p).__name__ for p in tuned.loaded.pipeline.unet.attn_processors.values()}
    assert "FusedAttnProcessor2_0" not in kinds
    assert np.abs(result - expected).max() <= 2
