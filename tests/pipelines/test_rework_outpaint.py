"""Outpainting: the canvas grows, the border is pre-filled and masked, the picture stays put."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.errors import ValidationError
from pipelines.outpaint import SEAM, extend_canvas
from pipelines.types import GenerationRequest, ImageInput


def picture() -> Image.Image:
    image = Image.new("RGB", (64, 48), (30, 60, 200))
    ImageDraw.Draw(image).rectangle((0, 0, 10, 47), fill=(230, 210, 40))
    return image


@pytest.mark.parametrize("fill", ["edge", "mirror"])
def test_the_canvas_grows_with_the_picture_in_place_and_the_border_masked(fill):
    canvas, mask = extend_canvas(picture(), (16, 8, 0, 24), fill=fill)
    assert canvas.size == mask.size == (80, 80)
    pixels, masked = np.asarray(canvas), np.asarray(mask)
    assert np.array_equal(pixels[8:56, 16:80], np.asarray(picture()))
    assert (
        (masked[:8] == 255).all() and (masked[:, :16] == 255).all() and (masked[56:] == 255).all()
    )
    # The seam fades inside the picture along the grown sides only; the right side was not grown.
    assert masked[30, 16] > masked[30, 16 + SEAM // 2] > masked[30, 16 + SEAM] == 0
    assert (masked[8 + SEAM : 56 - SEAM, 16 + SEAM :] == 0).all()
    # Pre-filled from the picture: the left border takes the yellow edge's colours.
    assert pixels[30, 14, 0] > 150 and pixels[30, 14, 2] < 120


def test_bad_borders_and_fills_are_refused():
    with pytest.raises(ValidationError):
        extend_canvas(picture(), (-8, 0, 0, 0))
    with pytest.raises(ValidationError):
        extend_canvas(picture(), (8, 0, 0, 0), fill="stripes")
    with pytest.raises(ValidationError, match="multiple of 8"):
        ImageInput(image="a.png", outpaint=(4, 0, 0, 0)).validate()


def test_outpainting_returns_the_larger_picture_with_the_original_in_place(
    engine, sd1_folder, tmp_path
):
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (30, 60, 200)).save(path)
    source = ImageInput(image=str(path), strength=1.0, outpaint=(16, 0, 16, 8), mask_blur=2)
    request = GenerationRequest(prompt="a red circle", model=str(sd1_folder), seed=3, steps=3,
                                source=source)  # fmt: skip
    previews = []
    result = engine.run(request, on_step=previews.append)
    assert result.image.size == (96, 72)
    assert previews[-1].image.shape == (72, 96, 3)
    out = np.asarray(result.image)
    margin = SEAM + 3 * source.mask_blur  # the seam, widened by the mask's blur
    inner = out[: 64 - margin, 16 + margin : 80 - margin]
    assert (inner == [30, 60, 200]).all()
    assert not (out[:, :8] == [30, 60, 200]).all()  # the border was painted
