"""Generating with tiny SD 3.x and Flux.1 models through the engine and the CLI: flow samplers,
guidance, previews of the velocity model's x0 estimate at every step, cancel, repeatability."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import cli
from pipelines.errors import ValidationError
from pipelines.export import read_request
from pipelines.flow_samplers import sampler_names_for
from pipelines.types import GenerationRequest, ModelFamily, PreviewMode, StepPreview


def _request(model: object, **changes: object) -> GenerationRequest:
    values = dict(prompt="a red cat over the house", model=str(model), steps=3, seed=7,
                  width=64, height=64, cfg_scale=4.0)  # fmt: skip
    values.update(changes)
    return GenerationRequest(**values)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("model", ["sd3_folder", "flux_folder"])
def test_two_samplers_generate_and_repeat_bit_identically(engine, model, request):
    path = request.getfixturevalue(model)
    euler = engine.run(_request(path, sampler="Euler"))
    again = engine.run(_request(path, sampler="Euler"))
    other = engine.run(_request(path, sampler="DPM++ 2M"))
    assert euler.image.size == (64, 64)
    assert np.array_equal(_pixels(euler.image), _pixels(again.image))
    assert np.array_equal(euler.latents.numpy(), again.latents.numpy())
    assert not np.array_equal(euler.latents.numpy(), other.latents.numpy())
    assert euler.latents.shape == (1, 16, 8, 8)  # Flux's packed latents come back spatial


@pytest.mark.parametrize("model", ["sd3_folder", "flux_folder"])
def test_previews_every_step_and_the_last_is_the_result(engine, model, request):
    # For a velocity model x0 = x_t - sigma_t * v; at the last Euler step (to sigma 0) that
    # estimate is exactly where the sampler lands, so the last full preview is the image.
    previews: list[StepPreview] = []
    result = engine.run(
        _request(request.getfixturevalue(model), steps=4, preview=PreviewMode.FULL),
        on_step=previews.append,
    )
    assert [p.step for p in previews] == [1, 2, 3, 4]
    assert all(p.image.shape == (64, 64, 3) for p in previews)
    assert np.abs(previews[-1].image.astype(int) - _pixels(result.image)).max() <= 1
    assert not np.array_equal(previews[0].image, previews[-1].image)
    approximate: list[StepPreview] = []
    engine.run(_request(request.getfixturevalue(model)), on_step=approximate.append)
    assert [p.image.shape for p in approximate] == [(64, 64, 3)] * 3


def test_cancel_stops_within_the_step(engine, sd3_folder):
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(preview: StepPreview) -> None:
        seen.append(preview.step)
        cancel.set()

    result = engine.run(_request(sd3_folder, steps=5), on_step=on_step, cancel=cancel)
    assert result.cancelled and result.image is None
    assert seen == [1]


def test_heun_on_sd3_counts_two_evaluations_per_step(engine, sd3_folder):
    previews: list[StepPreview] = []
    result = engine.run(_request(sd3_folder, sampler="Heun"), on_step=previews.append)
    assert result.image is not None
    assert [p.step for p in previews] == [1, 2, 3]
    assert previews[-1].evaluations == 5  # the last step is a single first-order evaluation


def test_samplers_a_family_cannot_run_are_refused_with_the_valid_ones(engine, flux_folder):
    with pytest.raises(ValidationError) as caught:
        engine.run(_request(flux_folder, sampler="Heun"))
    message = str(caught.value)
    assert "Heun" in message and "Euler, DPM++ 2M, UniPC" in message
    with pytest.raises(ValidationError, match="Choose one of: Euler"):
        engine.run(_request(flux_folder, sampler="DDIM"))
    assert sampler_names_for(ModelFamily.SD3) == ["Euler", "Heun", "DPM++ 2M", "UniPC"]
    assert "DDIM" in sampler_names_for(ModelFamily.SD1)


def test_sd3_guidance_changes_the_image(engine, sd3_folder):
    weak = engine.run(_request(sd3_folder, cfg_scale=1.0))
    strong = engine.run(_request(sd3_folder, cfg_scale=6.0))
    assert not np.array_equal(weak.latents.numpy(), strong.latents.numpy())


def test_flux_dev_takes_guidance_as_input_and_schnell_none(engine, flux_folder, schnell_folder):
    low = engine.run(_request(flux_folder, cfg_scale=1.5, negative_prompt="blurry"))
    high = engine.run(_request(flux_folder, cfg_scale=5.0))
    assert not np.array_equal(low.latents.numpy(), high.latents.numpy())
    assert any("negative prompt" in w for w in low.warnings)
    schnell = engine.run(_request(schnell_folder, cfg_scale=4.0, steps=2))
    assert schnell.request.cfg_scale == 1.0
    assert any("schnell" in w for w in schnell.warnings)


def test_flow_sizes_must_fit_the_patches(engine, sd3_folder):
    with pytest.raises(ValidationError, match="multiple of 16"):
        engine.run(_request(sd3_folder, width=72))


def test_cli_generates_with_both_families(sd3_folder, flux_comfy_file, tmp_path, capsys):
    for model, sampler in ((sd3_folder, "UniPC"), (flux_comfy_file, "Euler")):
        out = tmp_path / f"{model.stem}.png"
        code = cli.main(
            ["generate", "--prompt", "a dog", "--model", str(model), "--steps", "2",
             "--seed", "3", "--sampler", sampler, "--size", "64x64", "--cfg", "3.5",
             "--out", str(out)]
        )  # fmt: skip
        assert code == 0
        request = read_request(out)
        assert (request.sampler, request.cfg_scale) == (sampler, 3.5)
        assert Image.open(out).size == (64, 64)


def test_cli_refuses_a_sampler_of_another_family_in_one_line(sd3_folder, tmp_path, capsys):
    code = cli.main(
        ["generate", "--prompt", "x", "--model", str(sd3_folder), "--steps", "2",
         "--sampler", "DPM++ SDE", "--size", "64x64", "--out", str(tmp_path / "x.png")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Choose one of: Euler, Heun" in err


def test_cli_lists_flow_models_with_their_family(flux_comfy_file, sd3_folder, capsys):
    code = cli.main(["models", "--model-dir", str(flux_comfy_file.parents[2]),
                     "--model-dir", str(sd3_folder.parent)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert any("Flux.1-dev" in line and "flux-tiny" in line for line in lines)
    assert any("SD 3.x" in line and "tiny-sd3" in line for line in lines)


@pytest.mark.parametrize("model", ["sd3_folder", "flux_folder"])
def test_comparison_columns_equal_their_single_runs(engine, model, request):
    from pipelines.compare import compare

    path = request.getfixturevalue(model)
    samplers = ["Euler", "DPM++ 2M", "UniPC", *(["Heun"] if model == "sd3_folder" else [])]
    result = compare(engine, _request(path), samplers)
    # One evaluation per step: batched into one transformer call; Heun's two: a run of its own.
    assert [c.lockstep for c in result.columns] == [True] * 3 + [False] * (len(samplers) - 3)
    for column in result.columns:
        single = engine.run(_request(path, sampler=column.sampler))
        assert torch.allclose(column.latents, single.latents, atol=1e-4), column.sampler
        image_difference = np.abs(_pixels(column.image) - _pixels(single.image)).max()
        assert image_difference <= 2, column.sampler
        assert len(column.previews) == 3
    assert not np.array_equal(result.columns[0].latents.numpy(), result.columns[1].latents.numpy())


def test_flux_dev_metadata_writes_distilled_guidance_and_reads_it_back(
    flux_folder, tmp_path, capsys
):
    from pipelines.export import format_parameters, parse_parameters

    out = tmp_path / "dev.png"
    code = cli.main(
        ["generate", "--prompt", "a dog", "--model", str(flux_folder), "--steps", "2",
         "--seed", "3", "--size", "64x64", "--cfg", "3.5", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    stored = read_request(out)
    assert stored.distilled_guidance and stored.cfg_scale == 3.5
    text = format_parameters(stored)
    assert "CFG scale: 1, " in text and "Distilled CFG Scale: 3.5" in text
    parsed = parse_parameters(text)
    assert (parsed.cfg_scale, parsed.distilled_guidance) == (3.5, True)
    assert GenerationRequest.from_dict(stored.to_dict()) == stored
    assert cli.main(["info", str(out)]) == 0
    assert "Distilled CFG Scale: 3.5" in capsys.readouterr().out


def test_a_taesd3_tiny_decoder_is_used_for_tiny_previews(sd3_folder, tmp_path):
    from diffusers import AutoencoderTiny

    from pipelines.engine import Engine, EngineSettings

    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=16,
    ).save_pretrained(tmp_path / "taesd3", safe_serialization=True)  # fmt: skip
    engine = Engine(EngineSettings(precision="fp32", model_folders=(tmp_path,)))
    tiny: list[StepPreview] = []
    approximate: list[StepPreview] = []
    engine.run(_request(sd3_folder, preview=PreviewMode.TINY), on_step=tiny.append)
    engine.run(_request(sd3_folder, preview=PreviewMode.APPROXIMATE), on_step=approximate.append)
    assert engine.loaded.previews.tiny_vae is not None
    assert tiny[0].image.shape == (64, 64, 3)
    assert not np.array_equal(tiny[0].image, approximate[0].image)


def test_cancel_stops_a_flow_comparison_within_a_step(engine, flux_folder):
    from pipelines.compare import compare

    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def on_step(column: int, preview: StepPreview) -> None:
        seen.append((column, preview.step))
        cancel.set()

    result = compare(engine, _request(flux_folder, steps=4), ["Euler", "UniPC"],
                     on_step=on_step, cancel=cancel)  # fmt: skip
    assert result.cancelled and all(c.cancelled for c in result.columns)
    assert max(step for _, step in seen) == 1  # both columns' first step, nothing after


@pytest.mark.parametrize("model", ["sd3_folder", "flux_folder"])
def test_a_batch_gives_each_seed_its_own_image(engine, model, request):
    path = request.getfixturevalue(model)
    batch = engine.run(_request(path, batch_size=2, steps=2))
    second = engine.run(_request(path, seed=8, steps=2))
    assert len(batch.images) == 2
    assert np.abs(_pixels(batch.images[1]) - _pixels(second.image)).max() <= 2


def test_what_flow_models_cannot_run_yet_is_refused_before_any_step(engine, sd3_folder):
    from pipelines.types import Branch

    with pytest.raises(ValidationError, match="Branching"):
        engine.run(_request(sd3_folder, branches=(Branch(step=1, cfg=2.0),)))
    with pytest.raises(ValidationError, match="Branching"):
        engine.run(_request(sd3_folder, branches=(Branch(step=2, sampler="UniPC"),)))
