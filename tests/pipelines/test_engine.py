"""The engine on tiny real models: samplers, previews, ControlNet, cancel, caching, bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import (
    FamilyMismatchError,
    ImageReadError,
    ModelNotFoundError,
    ValidationError,
)
from pipelines.samplers import SAMPLERS, get_sampler
from pipelines.types import ControlKind, ControlUnit, GenerationRequest, PreviewMode


@pytest.fixture
def request_for(sd1_folder):
    def make(**changes) -> GenerationRequest:
        # A decoder of its own at every step: Auto's choice depends on measured costs.
        base = GenerationRequest(
            prompt="a red circle",
            model=str(sd1_folder),
            seed=7,
            steps=4,
            preview=PreviewMode.APPROXIMATE,
        )
        return replace(base, **changes)

    return make


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_deterministically_with_one_preview_per_step(
    engine, request_for, sampler
):
    previews = []
    first = engine.run(request_for(sampler=sampler), on_step=previews.append)
    second = engine.run(request_for(sampler=sampler))
    assert first.image.size == (64, 64)
    assert np.array_equal(pixels(first), pixels(second)), "same request + seed must repeat exactly"
    assert [p.step for p in previews] == [1, 2, 3, 4]
    assert all(p.total == 4 and p.sampler == sampler for p in previews)
    spec = get_sampler(sampler)
    expected = spec.total_evaluations(4, engine.loaded.scheduler_config)
    assert previews[-1].evaluations == expected
    assert previews[0].evaluations == (2 if spec.evaluations_per_step == 2 else 1) or (
        sampler == "PNDM" and previews[0].evaluations == 2
    )
    assert previews[0].image.dtype == np.uint8 and previews[0].image.shape == (64, 64, 3)


def test_different_seeds_and_samplers_give_different_images(engine, request_for):
    base = pixels(engine.run(request_for()))
    assert not np.array_equal(base, pixels(engine.run(request_for(seed=8))))
    # (not DDIM: unclipped, it is Euler's method exactly)
    assert not np.array_equal(base, pixels(engine.run(request_for(sampler="DPM++ 2M"))))


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "UniPC", "Heun", "PNDM"])
def test_previews_are_denoised_estimates_and_the_last_step_is_the_final_image(
    engine, request_for, sampler
):
    """Estimates of x0 approach the result from the first step on (a noisy latent would look
    nothing like it); the last step shows the decoded image itself."""
    previews = []
    result = engine.run(request_for(sampler=sampler, steps=6), on_step=previews.append)
    assert [p.step for p in previews] == [1, 2, 3, 4, 5, 6]
    assert np.array_equal(previews[-1].image, pixels(result))
    decoded = engine.loaded.previews.decode(result.latents, PreviewMode.APPROXIMATE)
    noise = engine.initial_noise(result.request)
    noise_preview = engine.loaded.previews.decode(noise, PreviewMode.APPROXIMATE)

    def distance(image: np.ndarray) -> float:
        return float(np.abs(image.astype(np.int16) - decoded).mean())

    assert distance(previews[0].image) < distance(noise_preview)
    assert distance(previews[-2].image) < distance(previews[0].image)


def test_full_vae_preview_of_last_step_matches_result(engine, request_for):
    previews = []
    result = engine.run(request_for(preview=PreviewMode.FULL), on_step=previews.append)
    assert np.abs(previews[-1].image.astype(np.int16) - pixels(result)).max() <= 2


def test_no_preview_mode_sends_no_images(engine, request_for):
    previews = []
    engine.run(request_for(preview=PreviewMode.NONE), on_step=previews.append)
    assert previews == []


def test_controlnet_changes_the_image_and_honours_start_end(
    engine, request_for, controlnet_sd1_folder, condition_image
):
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sd1_folder), image=str(condition_image))
    plain = pixels(engine.run(request_for()))
    full = pixels(engine.run(request_for(controls=(unit,))))
    late = pixels(engine.run(request_for(controls=(replace(unit, start=0.5),))))
    # With 4 steps no step lies inside [0, 0.05]: the ControlNet is never applied.
    never = pixels(engine.run(request_for(controls=(replace(unit, end=0.05),))))
    weak = pixels(engine.run(request_for(controls=(replace(unit, strength=0.3),))))
    assert np.abs(full - plain).mean() > 1
    assert not np.array_equal(late, full) and not np.array_equal(late, plain)
    assert np.abs(never - plain).max() <= 1
    assert np.abs(weak - plain).mean() < np.abs(full - plain).mean()


def test_condition_map_reaches_the_pipeline_as_given(
    engine, request_for, controlnet_sd1_folder, condition_image
):
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sd1_folder), image=str(condition_image))
    result = engine.run(request_for(controls=(unit,)))
    assert np.array_equal(
        np.asarray(result.condition_maps[0]), np.asarray(Image.open(condition_image).convert("RGB"))
    )


def test_relative_control_paths_are_recorded_absolute_in_the_result(
    engine, request_for, controlnet_sd1_folder, condition_image, monkeypatch
):
    # The result's request goes into PNG metadata and the history: restored from another folder, a
    # relative path would find no map.
    monkeypatch.chdir(condition_image.parent.parent)
    relative_map = Path(condition_image.parent.name) / condition_image.name
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sd1_folder), image=str(relative_map))
    result = engine.run(request_for(controls=(unit,)))
    (recorded,) = result.request.controls
    assert Path(recorded.image).is_absolute()
    assert Path(recorded.image) == condition_image.absolute()
    assert Path(recorded.model).is_absolute()


def test_a_device_that_is_not_here_is_a_clear_error(monkeypatch):
    import torch

    from pipelines.engine import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValidationError, match="no usable CUDA GPU"):
        pick_device("cuda")
    assert pick_device("cpu").type == "cpu"


def test_multi_control_and_no_base_reload(
    engine, request_for, controlnet_sd1_folder, condition_image, tmp_path
):
    from tests.tiny_models import save_controlnet

    other = save_controlnet(tmp_path / "depth-cn", "sd1", seed=5)
    canny = ControlUnit(ControlKind.CANNY, str(controlnet_sd1_folder), image=str(condition_image))
    depth = ControlUnit(ControlKind.DEPTH, str(other), image=str(condition_image), strength=0.8)
    engine.run(request_for())
    unet = engine.loaded.pipeline.unet
    one = pixels(engine.run(request_for(controls=(canny,))))
    both = pixels(engine.run(request_for(controls=(canny, depth))))
    assert not np.array_equal(one, both)
    assert engine.loaded.pipeline.unet is unet, "changing ControlNets must not reload the model"
    disabled = replace(depth, enabled=False)
    assert np.array_equal(one, pixels(engine.run(request_for(controls=(canny, disabled)))))


def test_cancel_stops_within_a_step_and_engine_runs_again(engine, request_for):
    cancel = threading.Event()
    previews = []

    def on_step(preview):
        previews.append(preview)
        if preview.step == 2:
            cancel.set()

    result = engine.run(request_for(steps=10), on_step=on_step, cancel=cancel)
    assert result.cancelled and result.image is None
    assert len(previews) == 2
    again = engine.run(request_for(steps=10))
    fresh = engine.run(request_for(steps=10))
    assert not again.cancelled and np.array_equal(pixels(again), pixels(fresh))


def test_exception_inside_a_step_leaves_engine_usable(engine, request_for):
    expected = pixels(engine.run(request_for()))

    def explode(preview):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        engine.run(request_for(), on_step=explode)
    assert np.array_equal(pixels(engine.run(request_for())), expected)


def test_random_seed_is_drawn_and_recorded(engine, request_for):
    result = engine.run(request_for(seed=None))
    assert isinstance(result.request.seed, int)
    repeat = engine.run(request_for(seed=result.request.seed))
    assert np.array_equal(pixels(result), pixels(repeat))
    assert (result.request.width, result.request.height) == (64, 64)


def test_family_mismatch_is_reported_before_loading_weights(
    request_for, controlnet_sdxl_folder, condition_image
):
    from pipelines.engine import Engine

    # An engine of its own: the shared one may hold this ControlNet from an SDXL test run earlier.
    engine = Engine()
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sdxl_folder), image=str(condition_image))
    with pytest.raises(FamilyMismatchError, match="SDXL"):
        engine.run(request_for(controls=(unit,)))
    assert controlnet_sdxl_folder.resolve() not in engine._controlnets


def test_sdxl_model_runs_with_its_controlnet(
    engine, sdxl_folder, controlnet_sdxl_folder, condition_image
):
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sdxl_folder), image=str(condition_image))
    request = GenerationRequest(
        prompt="a cat", model=str(sdxl_folder), seed=1, steps=3, preview=PreviewMode.APPROXIMATE
    )
    previews = []
    plain = engine.run(request, on_step=previews.append)
    controlled = engine.run(replace(request, controls=(unit,)))
    assert plain.image.size == (64, 64) and len(previews) == 3
    assert not np.array_equal(pixels(plain), pixels(controlled))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 100}, "multiple of 8; use 96 or 104"),
        ({"height": 0}, "between"),
        ({"steps": 0}, "Steps"),
        ({"steps": 500}, "Steps"),
        ({"cfg_scale": -1.0}, "CFG"),
        ({"cfg_scale": float("nan")}, "CFG"),
        ({"sampler": "Eulerr"}, "Unknown sampler 'Eulerr'"),
        ({"seed": -5}, "Seed"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(engine, request_for, changes, message):
    with pytest.raises(ValidationError, match=message):
        engine.run(request_for(**changes))


def test_missing_model_and_bad_condition_image(
    engine, request_for, controlnet_sd1_folder, tmp_path
):
    with pytest.raises(ModelNotFoundError, match="nope"):
        engine.run(request_for(model=str(tmp_path / "nope")))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sd1_folder), image=str(broken))
    with pytest.raises(ImageReadError, match="broken.png"):
        engine.run(request_for(controls=(unit,)))
    bad_range = replace(unit, start=0.8, end=0.2)
    with pytest.raises(ValidationError, match="start"):
        engine.run(request_for(controls=(bad_range,)))
    assert engine.run(request_for()).image is not None


def test_long_prompt_is_read_whole_in_chunks(engine, request_for):
    words = " ".join(f"word{i}" for i in range(60))  # about 120 tokens: two chunks
    result = engine.run(request_for(prompt=words))
    assert result.warnings == ()
    # The last word, past the first 75 tokens, still changes the image.
    other = engine.run(request_for(prompt=words.replace("word59", "castle")))
    assert not np.array_equal(pixels(result), pixels(other))


def test_tiny_decoder_found_in_model_folders_drives_tiny_previews(sd1_folder, tmp_path):
    from pipelines.engine import Engine, EngineSettings
    from tests.tiny_models import save_tiny_autoencoder

    save_tiny_autoencoder(tmp_path / "taesd")
    engine = Engine(EngineSettings(model_folders=(tmp_path,)))
    loaded = engine.load(str(sd1_folder))
    # The tiny decoder is paced by its cost measured at load: said to be free here, so the first
    # step is decoded whatever this machine's timings (test_preview_choice tests the pacing).
    loaded.previews.costs = replace(loaded.previews.costs, tiny=0.0)
    request = GenerationRequest(
        prompt="x", model=str(sd1_folder), seed=1, steps=2, preview=PreviewMode.APPROXIMATE
    )
    tiny, approximate = [], []
    engine.run(replace(request, preview=PreviewMode.TINY), on_step=tiny.append)
    engine.run(request, on_step=approximate.append)
    assert engine.loaded.previews.tiny_vae is not None
    assert tiny[0].image.shape == (64, 64, 3)
    assert not np.array_equal(tiny[0].image, approximate[0].image)
    # The last step is the final image whatever the decoder.
    assert np.array_equal(tiny[-1].image, approximate[-1].image)


def _in_two_threads(*jobs: Callable[[], Any]) -> list[Any]:
    """Run each job in its own thread, started together; their results, or the first error."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = jobs[index]()
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a run never finished"
    if errors:
        raise errors[0]
    return results


def _yield_often(preview: object) -> None:
    time.sleep(0.002)  # gives the other thread the interpreter between steps


def test_runs_from_two_threads_each_give_the_image_of_a_lone_run(engine, request_for):
    first = request_for(seed=11, sampler="Euler", steps=6)
    second = request_for(seed=12, sampler="DPM++ 2M Karras", steps=9, cfg_scale=4.0)
    alone = [pixels(engine.run(first)), pixels(engine.run(second))]
    for _ in range(3):
        together = _in_two_threads(
            lambda: engine.run(first, on_step=_yield_often),
            lambda: engine.run(second, on_step=_yield_often),
        )
        assert np.array_equal(pixels(together[0]), alone[0])
        assert np.array_equal(pixels(together[1]), alone[1])


def test_a_comparison_and_a_run_from_two_threads_do_not_mix(engine, request_for):
    from pipelines.compare import compare

    request = request_for(seed=5, steps=5)
    other = request_for(seed=6, sampler="UniPC", steps=7)
    samplers = ["Euler", "DDIM", "Heun"]  # two in lockstep, one through the engine
    alone = pixels(engine.run(other))
    compared_alone = [np.asarray(c.image) for c in compare(engine, request, samplers).columns]
    comparison, run = _in_two_threads(
        lambda: compare(engine, request, samplers, on_step=lambda i, p: _yield_often(p)),
        lambda: engine.run(other, on_step=_yield_often),
    )
    assert np.array_equal(pixels(run), alone)
    for column, expected in zip(comparison.columns, compared_alone, strict=True):
        assert np.array_equal(np.asarray(column.image), expected), column.sampler


def _save_sd1_with_vae_blocks(folder: Path, blocks: int) -> Path:
    """The tiny SD 1.x model with a VAE of ``blocks`` levels: it scales by 2 ** (blocks - 1)."""
    import torch
    from diffusers import AutoencoderKL

    from tests.tiny_models import build_sd1_pipeline

    pipe = build_sd1_pipeline()
    torch.manual_seed(4)
    pipe.vae = AutoencoderKL(
        block_out_channels=(16, 32, 32, 32, 32)[:blocks],
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        latent_channels=4,
        norm_num_groups=16,
        layers_per_block=1,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("preview", [PreviewMode.APPROXIMATE, PreviewMode.FULL])
def test_image_has_the_requested_size_when_the_vae_scales_by_four(tmp_path, preview):
    from pipelines.engine import Engine

    folder = _save_sd1_with_vae_blocks(tmp_path / "vae-x4", blocks=3)
    engine = Engine()
    previews = []
    request = GenerationRequest(
        prompt="a red circle", model=str(folder), seed=3, steps=2, width=96, height=64
    )
    result = engine.run(replace(request, preview=preview), on_step=previews.append)
    assert result.image.size == (96, 64)
    assert engine.loaded.scale_factor == 4
    assert result.latents.shape[-2:] == (16, 24)
    assert previews[-1].image.shape == (64, 96, 3)


def test_size_the_vae_cannot_make_is_refused_before_denoising(tmp_path):
    from pipelines.engine import Engine

    folder = _save_sd1_with_vae_blocks(tmp_path / "vae-x16", blocks=5)
    engine = Engine()
    request = GenerationRequest(prompt="x", model=str(folder), seed=3, steps=2, width=72, height=64)
    steps = []
    with pytest.raises(ValidationError, match="Width 72 is not a multiple of 16.*use 64 or 80"):
        engine.run(request, on_step=steps.append)
    assert steps == []
    assert engine.run(replace(request, width=64), on_step=steps.append).image.size == (64, 64)


def test_a_consumer_still_holding_a_frame_gets_fewer_decodes_and_the_last_step(
    engine, request_for, monkeypatch
):
    request = request_for(steps=8, sampler="DPM++ 2M")
    every = []
    engine.run(request, on_step=every.append)
    decodes = []
    previews = engine.loaded.previews
    decode = previews.decode_async
    monkeypatch.setattr(
        previews, "decode_async", lambda *a, **k: decodes.append(1) or decode(*a, **k)
    )
    # A slow consumer: a one-frame mailbox it empties at every third question only.
    mailbox, taken, asked = [], [], []

    def wants_preview() -> bool:
        asked.append(1)
        if len(asked) % 3 == 0 and mailbox:
            taken.append(mailbox.pop())
        return not mailbox

    result = engine.run(request, on_step=mailbox.append, wants_preview=wants_preview)
    delivered = taken + mailbox
    # Every delivered frame but the last (the final image, decoded by the pipeline) was decoded.
    assert len(decodes) == len(delivered) - 1 < len(every) - 1
    assert [p.step for p in delivered] == sorted({p.step for p in delivered})
    assert delivered[-1].step == 8 and np.array_equal(delivered[-1].image, every[-1].image)
    for preview in delivered:
        assert np.array_equal(preview.image, every[preview.step - 1].image)
    assert np.array_equal(pixels(result), pixels(engine.run(request)))
