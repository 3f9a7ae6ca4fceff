"""Memory options for the large flow transformers: fp8-stored weights upcast per layer, and
GGUF-quantized transformer files loaded through diffusers' GGUF support."""

from __future__ import annotations

import numpy as np
import torch

from pipelines import flow
from pipelines.types import GenerationRequest, MemoryOptions


def _request(model: object, **changes: object) -> GenerationRequest:
    values = dict(prompt="a red cat", model=str(model), steps=2, seed=5, width=64, height=64,
                  cfg_scale=3.0)  # fmt: skip
    values.update(changes)
    return GenerationRequest(**values)


def _linear_dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {m.weight.dtype for m in module.modules() if isinstance(m, torch.nn.Linear)}


def test_fp8_weights_are_stored_in_fp8_and_the_model_reloads_without(engine, sd3_folder):
    plain = engine.run(_request(sd3_folder))
    small = engine.run(_request(sd3_folder, memory=MemoryOptions(fp8_weights=True)))
    pipe = engine.loaded.pipeline
    assert torch.float8_e4m3fn in _linear_dtypes(pipe.transformer)
    assert _linear_dtypes(pipe.text_encoder_3) == {torch.float32}
    assert engine.loaded.weights == flow.WeightOptions(fp8_weights=True)
    # Rounded weights, the same picture: close to the full-precision run, not equal to it.
    difference = np.abs(plain.latents.numpy() - small.latents.numpy())
    assert 0 < difference.mean() < 0.2
    again = engine.run(_request(sd3_folder))
    assert _linear_dtypes(engine.loaded.pipeline.transformer) == {torch.float32}
    assert np.array_equal(plain.latents.numpy(), again.latents.numpy())


def test_sequential_offload_is_accepted_on_the_cpu(engine, flux_folder):
    # Offloading moves weights between CPU and GPU; on a CPU-only machine the run is unchanged.
    plain = engine.run(_request(flux_folder))
    offloaded = engine.run(_request(flux_folder, memory=MemoryOptions(sequential_offload=True)))
    assert np.array_equal(plain.latents.numpy(), offloaded.latents.numpy())


def test_gguf_transformer_with_companions(engine, flux_comfy_file, flux_folder, tmp_path):
    import shutil

    from pipelines.models import detect_family, discover_models, load_base_pipeline
    from pipelines.types import ModelFamily
    from tests.flow_models import write_gguf_transformer

    root = tmp_path / "ComfyUI"
    shutil.copytree(flux_comfy_file.parents[2], root)
    unet = root / "models" / "unet"
    reference, _ = load_base_pipeline(flux_folder)
    path = write_gguf_transformer(reference.transformer, unet / "flux-tiny-Q8_0.gguf")
    assert detect_family(path) is ModelFamily.FLUX
    assert path in [m.path for m in discover_models([root], include_hf_cache=False).bases()]
    quantized = engine.run(_request(path))
    full = engine.run(_request(flux_folder))
    again = engine.run(_request(path))  # loaded again: the same quantized weights
    assert np.array_equal(quantized.latents.numpy(), again.latents.numpy())
    difference = np.abs(quantized.latents.numpy() - full.latents.numpy())
    assert 0 < difference.mean() < 0.2  # Q8_0 rounding, the same picture


def test_cli_memory_flags_reach_the_request(sd3_folder, tmp_path):
    from pipelines import cli
    from pipelines.export import read_request

    out = tmp_path / "small.png"
    code = cli.main(
        ["generate", "--prompt", "a cat", "--model", str(sd3_folder), "--steps", "2",
         "--size", "64x64", "--fp8-weights", "--sequential-offload", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    memory = read_request(out).memory
    assert memory.fp8_weights and memory.sequential_offload and not memory.cpu_offload
