"""Previews that tell the truth: Auto's choice of decoder, and final images at every last step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipelines.compare import compare, downscale
from pipelines.preview_choice import (
    TINY_DECODER_BUDGET,
    PreviewCosts,
    PreviewPacer,
    PreviewPlan,
    choose_plan,
    describe,
    pacer_for,
)
from pipelines.previews import final_preview
from pipelines.types import GenerationRequest, PreviewMode

FULL, TINY, APPROXIMATE = PreviewMode.FULL, PreviewMode.TINY, PreviewMode.APPROXIMATE


def count_decodes(previews) -> list[PreviewMode]:
    """The modes of the decodes ``previews`` makes from now on, in order."""
    decoded, decode = [], previews.decode_async

    def counted(latents, mode):
        decoded.append(mode)
        return decode(latents, mode)

    previews.decode_async = counted
    return decoded


def costs(step: float, full: float, tiny: float | None = None) -> PreviewCosts:
    return PreviewCosts(64, step, full, tiny, approximate=1e-4, approximate_error=40.0)


@pytest.mark.parametrize(
    ("measured", "plan"),
    [
        (costs(step=0.1, full=0.01), PreviewPlan(FULL)),  # 10 % of a step: every step
        (costs(step=0.1, full=0.011, tiny=0.002), PreviewPlan(TINY)),
        (costs(step=0.1, full=0.5, tiny=0.02), PreviewPlan(TINY, 2)),
        # A fast model: the full VAE every 7th step keeps to 10 %, a preview every 0.06 s.
        (costs(step=0.008, full=0.0055), PreviewPlan(FULL, 7)),
        # ... and its VAE costs less than the tiny decoder: the exact one.
        (costs(step=0.008, full=0.0055, tiny=0.007), PreviewPlan(FULL, 7)),
        # A slow model: the full VAE every 20th step is a preview every 60 s: approximate.
        (costs(step=3.0, full=6.0), PreviewPlan(APPROXIMATE)),
    ],
)
def test_auto_picks_by_cost(measured, plan):
    assert choose_plan(measured) == plan


def test_auto_for_a_comparison_never_strides():
    assert choose_plan(costs(step=0.008, full=0.0055), every_step=True) == PreviewPlan(APPROXIMATE)
    assert choose_plan(costs(step=0.1, full=0.01), every_step=True) == PreviewPlan(FULL)


def test_costs_scale_with_the_size():
    scaled = costs(step=0.1, full=0.5, tiny=0.02).at(256)
    assert scaled.step == pytest.approx(0.4) and scaled.full == pytest.approx(2.0)
    assert scaled.tiny == pytest.approx(0.08)


def test_auto_picks_the_full_vae_on_the_bundled_model():
    from pipelines.engine import Engine, EngineSettings

    engine = Engine(EngineSettings(precision="fp32"))
    loaded = engine.load()
    measured = loaded.previews.costs
    assert measured is not None and measured.full > 0 and measured.step > 0
    plan = loaded.previews.plan(PreviewMode.AUTO, measured.latent_pixels)
    assert plan.mode is FULL
    # The approximate map's colours were measured against the VAE, and the tooltip says so.
    assert measured.approximate_error > 5
    assert f"{measured.approximate_error:.0f}/255" in describe(measured)
    # A run with the default (Auto) previews decodes the full VAE at steps 1, 1 + stride, …; the
    # steps between show the newest frame again; the last step is the final image.
    request = GenerationRequest("a small red circle at the top left on a blue background", seed=3)
    assert request.preview is PreviewMode.AUTO
    frames, decoded = [], count_decodes(loaded.previews)
    steps = plan.stride + 2
    result = engine.run(replace(request, steps=steps), on_step=frames.append)
    assert [f.step for f in frames] == list(range(1, steps + 1))
    assert decoded == [FULL, FULL]  # steps 1 and 1 + stride
    assert all(np.array_equal(f.image, frames[0].image) for f in frames[1 : plan.stride])
    assert not np.array_equal(frames[plan.stride].image, frames[0].image)
    assert np.array_equal(frames[-1].image, np.asarray(result.image))


@pytest.mark.parametrize("preview", [PreviewMode.AUTO, PreviewMode.APPROXIMATE])
def test_every_comparison_column_ends_on_its_final_image(engine, sd1_folder, preview):
    request = GenerationRequest(
        prompt="a red circle", model=str(sd1_folder), seed=7, steps=3, preview=preview
    )
    # Euler, DDIM and UniPC run in lockstep; Heun and PNDM on their own.
    result = compare(engine, request, ["Euler", "DDIM", "UniPC", "Heun", "PNDM"])
    assert [c.lockstep for c in result.columns] == [True, True, True, False, False]
    for column in result.columns:
        assert column.completed == 3, column.sampler
        final = downscale(final_preview(column.image), 256)
        assert np.array_equal(column.previews[-1], final), column.sampler
        # The steps before are estimates, not the final image.
        assert not np.array_equal(column.previews[0], final), column.sampler


def test_the_cli_keeps_the_precision_in_the_png(sd1_folder, tmp_path):
    from pipelines import cli
    from pipelines.engine import pick_device, pick_dtype, precision_name
    from pipelines.export import read_metadata

    out = tmp_path / "x.png"
    arguments = ["generate", "--prompt", "x", "--model", str(sd1_folder), "--steps", "2"]
    assert cli.main([*arguments, "--size", "64x64", "--out", str(out)]) == 0
    expected = precision_name(pick_dtype(pick_device(), parameters=1))  # a tiny UNet
    assert read_metadata(out).extra == {"precision": expected}


def test_the_pacer_keeps_decoding_within_its_share_of_the_run():
    pacer = PreviewPacer(0.05, expected=0.02)
    elapsed, decoded = 0.0, []
    for step in range(1, 41):
        elapsed += 0.1  # a step
        if pacer.allows(elapsed):
            decoded.append(step)
            pacer.record(0.02)
            elapsed += 0.02
    # 20 % of a step a decode, 5 % allowed: every fourth step, the first once it fits.
    assert decoded == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert pacer.spent <= 0.05 * (elapsed - pacer.spent) + 1e-9
    # A decode as slow as a step is never run; without a budget, every one is.
    assert not PreviewPacer(0.05, expected=0.1).allows(1.0)
    assert PreviewPacer(None, expected=10.0).allows(0.0)


def test_only_the_tiny_decoder_is_paced():
    measured = costs(step=0.1, full=0.5, tiny=0.02)
    assert pacer_for(PreviewPlan(TINY), measured).budget == TINY_DECODER_BUDGET
    assert pacer_for(PreviewPlan(TINY), measured).expected == 0.02
    assert pacer_for(PreviewPlan(FULL), measured).budget is None
    assert pacer_for(PreviewPlan(APPROXIMATE), measured).budget is None
    # Asked for, but the model has no tiny decoder: the approximate map runs, unpaced.
    assert pacer_for(PreviewPlan(TINY), costs(step=0.1, full=0.5)).budget is None


@pytest.mark.parametrize(("tiny_cost", "decodes"), [(0.0, 6), (1e3, 0)])
def test_a_run_decodes_the_tiny_decoder_as_its_cost_allows(sd1_folder, tmp_path, tiny_cost,
                                                          decodes):  # fmt: skip
    from pipelines.engine import Engine, EngineSettings
    from tests.tiny_models import save_tiny_autoencoder

    save_tiny_autoencoder(tmp_path / "taesd")
    engine = Engine(EngineSettings(model_folders=(tmp_path,)))
    loaded = engine.load(str(sd1_folder))
    assert loaded.previews.tiny_vae is not None
    # The costs measured at load, with the tiny decoder said to cost nothing or 1,000 s.
    loaded.previews.costs = replace(loaded.previews.costs, tiny=tiny_cost)
    decoded, frames = count_decodes(loaded.previews), []
    request = GenerationRequest("x", model=str(sd1_folder), seed=1, steps=7, preview=TINY)
    result = engine.run(request, on_step=frames.append)
    if decodes:  # free: the first step is decoded at once (later ones as their time allows)
        assert decoded[0] is TINY and 1 <= len(decoded) <= decodes and frames[0].step == 1
    else:  # dearer than the whole run: never decoded, the final image is the only frame
        assert decoded == [] and [f.step for f in frames] == [7]
    assert np.array_equal(frames[-1].image, np.asarray(result.image))
