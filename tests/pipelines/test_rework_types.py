"""A reworking request (input image, mask, outpaint border, hires pass) checks its fields and
survives the JSON round trip that history, PNG metadata and the window's settings use."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pipelines.errors import ValidationError
from pipelines.types import (
    GenerationRequest,
    HiresPass,
    ImageInput,
    InpaintArea,
    MaskedContent,
    ResizeMode,
)

SOURCE = ImageInput(
    image="/pictures/in.png",
    strength=0.6,
    resize_mode=ResizeMode.CROP,
    mask="/pictures/mask.png",
    mask_blur=8,
    masked_content=MaskedContent.LATENT_NOISE,
    inpaint_area=InpaintArea.MASKED,
    padding=16,
    outpaint=(8, 0, 16, 0),
)
REQUEST = GenerationRequest(
    prompt="a red circle", seed=2, steps=4, width=64, height=64, source=SOURCE,
    hires=HiresPass(scale=1.5, steps=3, strength=0.4, upscaler="latent"),
)  # fmt: skip


def test_a_reworking_request_round_trips_through_json():
    back = GenerationRequest.from_dict(json.loads(json.dumps(REQUEST.to_dict())))
    assert back == REQUEST
    assert back.source.masked_content is MaskedContent.LATENT_NOISE
    assert back.source.outpaint == (8, 0, 16, 0)
    back.validate()


def test_requests_stored_before_reworking_existed_read_as_text_to_image():
    data = REQUEST.to_dict()
    del data["source"], data["hires"]
    back = GenerationRequest.from_dict(data)
    assert back.source is None and back.hires is None


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("source", "in.png", "input"),
        ("source", {"strength": 0.5}, "no image"),
        ("source", {"image": "a.png", "strength": 1.5}, "strength"),
        ("source", {"image": "a.png", "strength": "half"}, "strength"),
        ("source", {"image": "a.png", "mask_blur": -1}, "Mask blur"),
        ("source", {"image": "a.png", "mask_blur": 2.5}, "Mask blur"),
        ("source", {"image": "a.png", "masked_content": "paint"}, "Masked content"),
        ("source", {"image": "a.png", "inpaint_area": "half"}, "Inpaint area"),
        ("source", {"image": "a.png", "padding": -4}, "padding"),
        ("source", {"image": "a.png", "outpaint": [1, 2]}, "Outpaint"),
        ("source", {"image": "a.png", "outpaint": [0, 0, -8, 0]}, "Outpaint"),
        ("source", {"image": "a.png", "resize_mode": "squash"}, "resize mode"),
        ("source", {"image": 5}, "input image"),
        ("hires", [2], "Hires"),
        ("hires", {"scale": 5}, "Hires scale"),
        ("hires", {"scale": 0.5}, "Hires scale"),
        ("hires", {"steps": -1}, "Hires steps"),
        ("hires", {"strength": 2}, "Hires denoising"),
        ("hires", {"upscaler": ""}, "upscaler"),
    ],
)
def test_a_stored_reworking_field_that_is_wrong_is_refused_naming_it(field, value, named):
    with pytest.raises(ValidationError, match=named):
        GenerationRequest.from_dict({**REQUEST.to_dict(), field: value})


def test_outpainting_and_hires_past_the_size_limit_are_refused_before_a_run():
    wide = replace(REQUEST, width=4000, source=replace(SOURCE, outpaint=(64, 0, 64, 0)), hires=None)
    with pytest.raises(ValidationError, match="Width after outpainting"):
        wide.validate()
    large = replace(REQUEST, width=1024, height=2048, source=None, hires=HiresPass(scale=4.0))
    with pytest.raises(ValidationError, match="Height"):
        large.validate()
    replace(REQUEST, width=1024, height=1024, source=None, hires=HiresPass(scale=4.0)).validate()


def test_an_empty_input_path_is_complete_only_in_storage():
    unfinished = replace(REQUEST, source=ImageInput(image=""))
    unfinished.check_fields()  # the window may hold it while the user picks a picture
    with pytest.raises(ValidationError, match="needs an input image"):
        unfinished.validate()
