"""Image-to-image and inpainting on tiny real models and the bundled toy-world model."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from pipelines.compare import compare
from pipelines.errors import ImageReadError
from pipelines.previews import preview_size
from pipelines.rework import pipeline_strength, run_steps
from pipelines.types import (
    ControlKind,
    ControlUnit,
    GenerationRequest,
    ImageInput,
    InpaintArea,
    MaskedContent,
)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A 64x64 picture (blue with a yellow square) and a mask of its centre."""
    folder = tmp_path_factory.mktemp("pictures")
    picture = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(picture).rectangle((8, 8, 24, 24), fill=(230, 210, 40))
    picture.save(folder / "input.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 40, 40), fill=255)
    mask.save(folder / "mask.png")
    return folder


def request_on(model, pictures, **source) -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle",
        model=str(model),
        seed=11,
        steps=4,
        source=ImageInput(image=str(pictures / "input.png"), **source),
    )


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize(("strength", "steps", "spent"), [(0.5, 4, 2), (0.6, 10, 6),
                         (0.01, 20, 1), (1.0, 7, 7), (0.95, 20, 19), (0.3, 10, 3)])  # fmt: skip
def test_a_run_spends_its_strengths_share_of_the_steps(strength, steps, spent):
    assert run_steps(strength, steps) == spent
    assert min(int(steps * pipeline_strength(strength, steps)), steps) == spent


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M"])
def test_strength_one_is_text_to_image_of_the_same_seed_and_sampler(
    engine, sd1_folder, pictures, sampler
):
    reworked = request_on(sd1_folder, pictures, strength=1.0)
    reworked = replace(reworked, sampler=sampler)
    plain = replace(reworked, source=None)
    a, b = engine.run(reworked), engine.run(plain)
    assert np.array_equal(array(a.image), array(b.image))


def test_previews_count_the_steps_the_strength_spends(engine, sd1_folder, pictures):
    previews = []
    result = engine.run(request_on(sd1_folder, pictures, strength=0.5), on_step=previews.append)
    assert [p.step for p in previews] == [1, 2] and {p.total for p in previews} == {2}
    assert previews[-1].image.shape == (64, 64, 3)
    assert result.image.size == (64, 64)


def test_a_lower_strength_keeps_more_of_the_input(engine, pictures):
    # The bundled toy-world model, told what the picture shows: only the strength moves it away.
    toy = GenerationRequest(prompt="a yellow square at the top left on a blue background",
                            seed=5, steps=8, cfg_scale=1.0)  # fmt: skip
    source = ImageInput(image=str(pictures / "input.png"))
    original = array(Image.open(pictures / "input.png"))
    distances = []
    for strength in (0.1, 0.25, 0.5, 0.75, 1.0):
        result = engine.run(replace(toy, source=replace(source, strength=strength)))
        distances.append(np.abs(array(result.image) - original).mean())
    assert distances == sorted(distances), distances
    assert distances[0] < distances[-1] / 2


def test_cancel_stops_a_reworking_run_within_a_step(engine, sd1_folder, pictures):
    cancel = threading.Event()
    seen = []

    def on_step(preview):
        seen.append(preview.step)
        cancel.set()

    result = engine.run(
        request_on(sd1_folder, pictures, strength=0.75), on_step=on_step, cancel=cancel
    )
    assert result.cancelled and result.image is None and seen == [1]


def test_pixels_outside_the_blurred_mask_are_the_inputs(engine, sd1_folder, pictures):
    request = request_on(sd1_folder, pictures, strength=0.8, mask=str(pictures / "mask.png"),
                         mask_blur=2)  # fmt: skip
    previews = []
    result = engine.run(request, on_step=previews.append)
    original = array(Image.open(pictures / "input.png"))
    out = array(result.image)
    outside = np.zeros((64, 64), bool)
    outside[:, :16] = outside[:, 50:] = True
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[28:37, 28:37] - original[28:37, 28:37]).mean() > 5  # the centre changed
    # The preview is the composite: kept pixels around the estimate.
    assert np.array_equal(previews[-1].image.astype(np.int16)[outside], original[outside])


@pytest.mark.parametrize("content", list(MaskedContent))
@pytest.mark.parametrize("area", list(InpaintArea))
def test_every_masked_content_and_area_keeps_the_outside(engine, sd1_folder, pictures, content,
                                                         area):  # fmt: skip
    request = request_on(sd1_folder, pictures, strength=0.7, mask=str(pictures / "mask.png"),
                         mask_blur=0, masked_content=content, inpaint_area=area, padding=4)  # fmt: skip
    result = engine.run(request)
    original = array(Image.open(pictures / "input.png"))
    mask = np.asarray(Image.open(pictures / "mask.png")) > 0
    out = array(result.image)
    assert np.array_equal(out[~mask], original[~mask])
    assert not np.array_equal(out[mask], original[mask])


def test_inpainting_with_a_controlnet_unit(engine, sd1_folder, controlnet_sd1_folder, pictures,
                                           condition_image):  # fmt: skip
    unit = ControlUnit(ControlKind.CANNY, model=str(controlnet_sd1_folder),
                       image=str(condition_image))  # fmt: skip
    for area in InpaintArea:
        request = request_on(sd1_folder, pictures, strength=0.9, mask=str(pictures / "mask.png"),
                             inpaint_area=area)  # fmt: skip
        result = engine.run(replace(request, controls=(unit,)))
        assert result.image.size == (64, 64) and len(result.condition_maps) == 1


def test_sdxl_reworks_too(engine, sdxl_folder, pictures):
    request = request_on(sdxl_folder, pictures, strength=0.5, mask=str(pictures / "mask.png"))
    result = engine.run(request)
    original = array(Image.open(pictures / "input.png"))
    assert np.array_equal(array(result.image)[:, :10], original[:, :10])


def test_a_mask_of_another_size_is_stretched_with_a_warning(engine, sd1_folder, pictures, tmp_path):
    small = tmp_path / "small-mask.png"
    Image.open(pictures / "mask.png").resize((32, 32)).save(small)
    result = engine.run(request_on(sd1_folder, pictures, strength=0.5, mask=str(small)))
    assert any("stretched" in w for w in result.warnings)


def test_a_missing_input_is_refused_before_any_step(engine, sd1_folder, pictures, tmp_path):
    request = request_on(sd1_folder, pictures)
    request = replace(request, source=replace(request.source, image=str(tmp_path / "none.png")))
    with pytest.raises(ImageReadError, match="does not exist"):
        engine.run(request)


def test_an_inpainted_centre_follows_the_prompt_and_the_rest_stays(engine, tmp_path):
    blue = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (20, 40, 220)).save(blue)
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    mask.save(tmp_path / "centre.png")
    source = ImageInput(image=str(blue), strength=1.0, mask=str(tmp_path / "centre.png"))
    result = engine.run(GenerationRequest(prompt="a red circle", seed=1, steps=10, source=source))
    out = array(result.image)
    red, green, blue_channel = out[24:40, 24:40].reshape(-1, 3).mean(axis=0)
    assert red > 150 and red > 2 * max(green, blue_channel)
    blurred = np.asarray(mask.filter(ImageFilter.GaussianBlur(source.mask_blur)))
    kept = blurred == 0
    assert kept.sum() > 1000
    assert np.array_equal(out[kept], np.broadcast_to([20, 40, 220], out.shape)[kept])


def test_a_comparison_reworks_the_same_input_in_every_column(engine, sd1_folder, pictures):
    request = request_on(sd1_folder, pictures, strength=0.5, mask=str(pictures / "mask.png"))
    result = compare(engine, request, ["Euler", "DDIM", ("Heun", 6)])
    original = array(Image.open(pictures / "input.png"))
    assert [len(c.previews) for c in result.columns] == [2, 2, 3]
    for column, sampler in zip(result.columns, ["Euler", "DDIM", "Heun"], strict=True):
        assert np.array_equal(array(column.image)[:, :8], original[:, :8])
        single = engine.run(replace(request, sampler=sampler, steps=column.steps))
        assert np.array_equal(array(column.image), array(single.image))


def test_a_reworking_comparison_plans_the_evaluations_it_spends(engine, sd1_folder, pictures):
    request = request_on(sd1_folder, pictures, strength=0.5)
    result = compare(engine, request, [("Euler", 6), ("Heun", 6)])
    assert [c.planned_evaluations for c in result.columns] == [3, 5]
    assert [c.total_evaluations for c in result.columns] == [3, 5]


@pytest.mark.parametrize("area", list(InpaintArea))
def test_previews_of_a_picture_past_the_preview_size_are_scaled_down(
    engine, sd1_folder, pictures, area
):
    request = request_on(sd1_folder, pictures, strength=1.0, mask=str(pictures / "mask.png"),
                         inpaint_area=area, padding=0)  # fmt: skip
    previews = []
    result = engine.run(replace(request, width=576, height=64, steps=1), on_step=previews.append)
    assert result.image.size == (576, 64)
    assert previews[-1].image.shape == (*preview_size(64, 576, 1), 3)


def test_sdxl_inpainting_with_a_controlnet_unit(engine, sdxl_folder, controlnet_sdxl_folder,
                                                pictures, condition_image):  # fmt: skip
    unit = ControlUnit(ControlKind.CANNY, model=str(controlnet_sdxl_folder),
                       image=str(condition_image))  # fmt: skip
    request = request_on(sdxl_folder, pictures, strength=0.8, mask=str(pictures / "mask.png"),
                         inpaint_area=InpaintArea.MASKED, padding=4)  # fmt: skip
    result = engine.run(replace(request, controls=(unit,)))
    original = array(Image.open(pictures / "input.png"))
    assert np.array_equal(array(result.image)[:, :8], original[:, :8])


@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DDIM"])
def test_strength_one_on_the_bundled_model_is_its_text_to_image(engine, pictures, sampler):
    plain = GenerationRequest(prompt="a red circle at the middle on a blue background", seed=9,
                              steps=4, sampler=sampler)  # fmt: skip
    reworked = replace(plain, source=ImageInput(image=str(pictures / "input.png"), strength=1.0))
    assert np.array_equal(array(engine.run(reworked).image), array(engine.run(plain).image))
