"""The high-resolution pass: scale x size, one step counter over both passes, upscaler files."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines.errors import ModelFormatError, ModelNotFoundError, ValidationError
from pipelines.types import GenerationRequest, HiresPass
from pipelines.upscalers import (
    find_upscalers,
    load_upscaler,
    resolve_upscaler,
    upscale_with_model,
)


@pytest.fixture(scope="module")
def upscaler_file(tmp_path_factory):
    """A tiny Real-ESRGAN-compact (x2) with random weights, as a user's models/ESRGAN file."""
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    folder = tmp_path_factory.mktemp("user") / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    path = folder / "2x-tiny-compact.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def hires_request(model, **hires) -> GenerationRequest:
    return GenerationRequest(prompt="a red circle", model=str(model), seed=3, steps=2,
                             hires=HiresPass(**hires))  # fmt: skip


@pytest.mark.parametrize(
    ("upscaler", "scale", "side"), [("lanczos", 2.0, 128), ("latent", 1.5, 96)]
)
def test_the_hires_pass_returns_scale_times_size_on_one_step_counter(
    engine, sd1_folder, upscaler, scale, side
):
    previews = []
    request = hires_request(sd1_folder, scale=scale, steps=4, strength=0.5, upscaler=upscaler)
    result = engine.run(request, on_step=previews.append)
    assert result.image.size == (side, side)
    assert result.request.hires == request.hires and result.request.width == 64
    # Two steps at 64 px, then half of the pass's four steps at the enlarged size.
    assert [(p.step, p.total) for p in previews] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert previews[-1].image.shape == (side, side, 3)


def test_an_upscaler_model_file_enlarges(engine, sd1_folder, upscaler_file):
    assert find_upscalers([upscaler_file.parents[2]]) == [upscaler_file]
    picture = Image.new("RGB", (20, 12), (200, 30, 30))
    enlarged = upscale_with_model(picture, upscaler_file, (40, 24), torch.device("cpu"))
    assert enlarged.size == (40, 24)
    assert load_upscaler(upscaler_file).scale == 2
    result = engine.run(hires_request(sd1_folder, scale=2.0, upscaler=str(upscaler_file)))
    assert result.image.size == (128, 128)


def test_pickled_or_foreign_upscalers_are_refused(tmp_path):
    pickled = tmp_path / "4x-old.pth"
    torch.save({"weight": torch.zeros(1)}, pickled)
    with pytest.raises(ModelFormatError, match="pickle"):
        load_upscaler(pickled)
    foreign = tmp_path / "not-an-upscaler.safetensors"
    save_file({"weight": torch.zeros(1)}, str(foreign))
    with pytest.raises(ModelFormatError, match="upscaler"):
        load_upscaler(foreign)


def test_a_hires_size_past_the_limit_is_refused_once_the_native_size_is_known(engine, sd1_folder):
    request = GenerationRequest(prompt="x", model=str(sd1_folder), seed=1, steps=2, width=2048,
                                height=64, hires=HiresPass(scale=2.5))  # fmt: skip
    with pytest.raises(ValidationError, match="Width after"):
        engine.run(request)


def test_an_upscaler_named_as_a1111_writes_it_is_found_and_a_missing_one_refused_first(
    engine, sd1_folder, upscaler_file
):
    user_folder = upscaler_file.parents[2]
    assert resolve_upscaler("2x-tiny-compact", [user_folder]) == upscaler_file
    assert resolve_upscaler(str(upscaler_file), []) == upscaler_file
    previews = []
    with pytest.raises(ModelNotFoundError, match="4x-UltraSharp"):
        engine.run(hires_request(sd1_folder, upscaler="4x-UltraSharp"), on_step=previews.append)
    assert previews == []  # refused before the first pass drew anything


def test_sdxl_hires_from_the_latents(engine, sdxl_folder):
    result = engine.run(hires_request(sdxl_folder, scale=1.5, steps=2, upscaler="latent"))
    assert result.image.size == (96, 96)


def test_cancel_in_the_second_pass_stops_within_its_step(engine, sd1_folder):
    cancel = threading.Event()
    seen = []

    def on_step(preview):
        seen.append(preview.step)
        if preview.step == 3:  # the first step of the enlarged pass
            cancel.set()

    request = hires_request(sd1_folder, scale=2.0, steps=4, strength=1.0)
    result = engine.run(request, on_step=on_step, cancel=cancel)
    assert result.cancelled and result.image is None and seen == [1, 2, 3]
    assert result.request.hires == request.hires
