"""A 9-channel inpainting UNet is recognised from a single file's header and from a folder's
config, loads with its own channel count, and runs through the inpainting pipeline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image, ImageDraw

from pipelines import models
from pipelines.engine import Engine, EngineSettings
from pipelines.models import detect_family, load_base_pipeline
from pipelines.types import ControlKind, ControlUnit, GenerationRequest, ImageInput, ModelFamily
from tests.original_layout import write_sd1_single_file
from tests.tiny_models import build_sd1_pipeline


@pytest.fixture(scope="module")
def inpainting_model(tmp_path_factory) -> tuple[Path, Path]:
    """(diffusers folder, single file) of a tiny SD 1.x inpainting model."""
    root = tmp_path_factory.mktemp("inpainting")
    base = build_sd1_pipeline(seed=4)
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 9})
    pipe = StableDiffusionPipeline(**{**base.components, "unet": unet},
                                   requires_safety_checker=False)  # fmt: skip
    folder = root / "tiny-inpainting"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder, write_sd1_single_file(folder, root / "tiny-inpainting.safetensors")


def test_inpainting_models_are_recognised(inpainting_model):
    folder, single = inpainting_model
    assert detect_family(folder) is ModelFamily.SD1
    assert detect_family(single) is ModelFamily.SD1
    assert models.unet_input_channels(models.read_safetensors_header(single)) == 9


def test_a_single_file_loads_with_nine_channels_from_a_four_channel_config(
    inpainting_model, sd1_folder
):
    folder, single = inpainting_model
    pipe, _ = load_base_pipeline(single, config_folder=sd1_folder)  # 4-channel config
    assert pipe.unet.config.in_channels == 9
    expected = UNet2DConditionModel.from_pretrained(folder / "unet")
    assert pipe.unet.conv_in.weight.shape == (32, 9, 3, 3)
    assert np.array_equal(pipe.unet.conv_in.weight.detach(), expected.conv_in.weight.detach())


def test_the_single_file_inpaints_and_draws(
    inpainting_model, sd1_folder, controlnet_sd1_folder, condition_image, tmp_path, monkeypatch
):
    _, single = inpainting_model
    # The tiny model is not laid out like the real SD 1.5 the engine's config folder describes.
    monkeypatch.setattr(models, "config_folder_for", lambda family, controlnet=False: sd1_folder)
    engine = Engine(EngineSettings(precision="fp32"))
    picture = Image.new("RGB", (64, 64), (30, 60, 200))
    picture.save(tmp_path / "in.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 40, 40), fill=255)
    mask.save(tmp_path / "mask.png")
    source = ImageInput(image=str(tmp_path / "in.png"), strength=0.9,
                        mask=str(tmp_path / "mask.png"), mask_blur=0)  # fmt: skip
    request = GenerationRequest(prompt="a red circle", model=str(single), seed=2, steps=3,
                                source=source)  # fmt: skip
    result = engine.run(request)
    assert engine.loaded.pipeline.unet.config.in_channels == 9
    out = np.asarray(result.image)
    inside = np.asarray(mask) > 0
    assert (out[~inside] == [30, 60, 200]).all()
    assert not (out[inside] == [30, 60, 200]).all()
    # Text to image on an inpainting model: the whole picture is repainted.
    drawn = engine.run(GenerationRequest(prompt="a red circle", model=str(single), seed=2, steps=3))
    assert drawn.image.size == (64, 64) and drawn.request.source is None
    # With a ControlNet unit: the ControlNet sees the latents, the UNet the mask and picture too.
    unit = ControlUnit(ControlKind.CANNY, model=str(controlnet_sd1_folder),
                       image=str(condition_image))  # fmt: skip
    controlled = engine.run(replace(request, controls=(unit,)))
    assert (np.asarray(controlled.image)[~inside] == [30, 60, 200]).all()
