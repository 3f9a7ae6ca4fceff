"""The reworking settings travel in the PNG's A1111 text and JSON record, and come back."""

from __future__ import annotations

import pytest
from PIL import Image

from pipelines.errors import ValidationError
from pipelines.export import (
    format_parameters,
    parse_parameters,
    read_metadata,
    split_parameters,
    write_png,
)
from pipelines.types import GenerationRequest, HiresPass, ImageInput, InpaintArea, MaskedContent

SOURCE = ImageInput(image="/in.png", strength=0.6, mask="/mask.png", mask_blur=8,
                    masked_content=MaskedContent.FILL, inpaint_area=InpaintArea.MASKED,
                    padding=24)  # fmt: skip
REQUEST = GenerationRequest(prompt="a red circle", seed=3, steps=20, width=512, height=512,
                            source=SOURCE, hires=HiresPass(scale=1.5, steps=10, strength=0.4,
                                                           upscaler="/up/4x-UltraSharp.pth"))  # fmt: skip


def test_the_a1111_keys_are_written():
    _, _, fields = split_parameters(format_parameters(REQUEST))
    assert fields["Denoising strength"] == "0.6"
    assert fields["Mask blur"] == "8"
    assert fields["Inpaint area"] == "Only masked"
    assert fields["Masked area padding"] == "24"
    assert fields["Masked content"] == "fill"
    assert fields["Hires upscale"] == "1.5"
    assert fields["Hires steps"] == "10"
    assert fields["Hires upscaler"] == "4x-UltraSharp"
    assert fields["Hires denoising"] == "0.4"
    plain = split_parameters(format_parameters(GenerationRequest(prompt="x", seed=1)))[2]
    assert not {"Denoising strength", "Mask blur", "Hires upscale"} & plain.keys()


def test_the_text_reads_back_without_the_files():
    back = parse_parameters(format_parameters(REQUEST))
    assert back.source == ImageInput(image="", strength=0.6, mask="", mask_blur=8,
                                     masked_content=MaskedContent.FILL,
                                     inpaint_area=InpaintArea.MASKED, padding=24)  # fmt: skip
    assert back.hires == HiresPass(scale=1.5, steps=10, strength=0.4, upscaler="4x-UltraSharp")
    back.check_fields()
    with pytest.raises(ValidationError, match="input image"):
        back.validate()  # the user names the files again


def test_the_png_keeps_the_complete_request(tmp_path):
    path = tmp_path / "out.png"
    write_png(Image.new("RGB", (8, 8)), REQUEST, path)
    metadata = read_metadata(path)
    assert metadata.from_json and metadata.request == REQUEST and not metadata.warnings


def test_a1111_img2img_and_hires_texts_read():
    inpainted = parse_parameters(
        "a cat\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, "
        "Model: v15, Denoising strength: 0.75, Mask blur: 4, Inpaint area: Only masked, "
        "Masked area padding: 32, Masked content: latent nothing, Version: v1.10.1"
    )
    assert inpainted.source.strength == 0.75 and inpainted.source.mask == ""
    assert inpainted.source.inpaint_area is InpaintArea.MASKED
    assert inpainted.source.masked_content is MaskedContent.LATENT_NOISE
    assert inpainted.hires is None
    # A1111's text to image with hires: "Denoising strength" is the hires pass's.
    hires = parse_parameters(
        "a dog\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 2, "
        "Size: 512x512, Model: v15, Denoising strength: 0.55, Hires upscale: 2, Hires steps: 15, "
        "Hires upscaler: Latent (nearest-exact), Version: v1.9.4"
    )
    assert hires.source is None
    assert hires.hires == HiresPass(scale=2.0, steps=15, strength=0.55, upscaler="latent")
    resized = parse_parameters(
        "a dog\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 2, Size: 512x512, "
        "Denoising strength: 0.3, Hires resize: 1024x1024, Hires upscaler: R-ESRGAN 4x+"
    )
    assert resized.hires == HiresPass(scale=2.0, strength=0.3, upscaler="R-ESRGAN 4x+")
