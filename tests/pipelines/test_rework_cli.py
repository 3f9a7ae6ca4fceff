"""The command line reworks pictures: img2img, inpainting, outpainting, hires, compare, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines import cli
from pipelines.export import default_data_folder, read_request
from pipelines.types import InpaintArea, MaskedContent


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-pictures")
    Image.new("RGB", (64, 64), (30, 60, 200)).save(folder / "in.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 40, 40), fill=255)
    mask.save(folder / "mask.png")
    mask.resize((32, 32)).save(folder / "small-mask.png")
    (folder / "broken.png").write_bytes(b"not a picture")
    return folder


def generate(model: Path, out: Path, *arguments: str) -> int:
    return cli.main(["generate", "--prompt", "a red circle", "--model", str(model), "--steps", "2",
                     "--seed", "5", "--out", str(out), *arguments])  # fmt: skip


def test_inpainting_from_the_command_line_keeps_copies_of_input_and_mask(
    sd1_folder, pictures, tmp_path, capsys
):
    out = tmp_path / "inpainted.png"
    code = generate(sd1_folder, out, "--init-image", str(pictures / "in.png"), "--strength", "1",
                    "--mask", str(pictures / "small-mask.png"), "--mask-blur", "0",
                    "--inpaint-area", "masked", "--masked-content", "fill", "--padding", "8")  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "stretched" in err  # the 32 px mask on a 64 px picture
    request = read_request(out)
    source = request.source
    assert (source.strength, source.mask_blur, source.padding) == (1.0, 0, 8)
    assert source.inpaint_area is InpaintArea.MASKED
    assert source.masked_content is MaskedContent.FILL
    # The input and mask the PNG names are the kept copies beside the condition maps.
    folder = default_data_folder() / "condition-maps"
    assert Path(source.image).parent == folder and Path(source.mask).parent == folder
    assert np.array_equal(np.asarray(Image.open(source.image)),
                          np.asarray(Image.open(pictures / "in.png")))  # fmt: skip
    out_pixels = np.asarray(Image.open(out))
    assert (out_pixels[:, :8] == [30, 60, 200]).all()


def test_outpaint_and_hires_sizes(sd1_folder, pictures, tmp_path):
    out = tmp_path / "grown.png"
    assert generate(sd1_folder, out, "--init-image", str(pictures / "in.png"),
                    "--outpaint", "8,0,8,16", "--hires-scale", "1.5", "--hires-steps", "2",
                    "--hires-strength", "0.5", "--upscaler", "latent") == 0  # fmt: skip
    assert Image.open(out).size == (120, 120)  # (64 + 16) x (64 + 16), then x 1.5
    request = read_request(out)
    assert request.source.outpaint == (8, 0, 8, 16) and request.hires.upscaler == "latent"


def test_compare_reworks_the_same_input_in_every_column(sd1_folder, pictures, tmp_path):
    columns = tmp_path / "columns"
    code = cli.main(["compare", "--prompt", "a red circle", "--model", str(sd1_folder),
                     "--steps", "2", "--seed", "5", "--samplers", "Euler,DDIM",
                     "--init-image", str(pictures / "in.png"), "--mask", str(pictures / "mask.png"),
                     "--strength", "0.5", "--out", str(tmp_path / "grid.png"),
                     "--columns", str(columns)])  # fmt: skip
    assert code == 0
    images = sorted(columns.iterdir())
    assert len(images) == 2
    for path in images:
        assert (np.asarray(Image.open(path))[:, :4] == [30, 60, 200]).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--init-image", "{p}/broken.png"], "damaged"),
        (["--init-image", "{p}/missing.png"], "does not exist"),
        (["--init-image", "{p}/in.png", "--strength", "1.5"], "between 0 and 1"),
        (["--init-image", "{p}/in.png", "--mask", "{p}/broken.png"], "damaged"),
        (["--strength", "0.5"], "need --init-image"),
        (["--mask", "{p}/mask.png"], "need --init-image"),
        (["--init-image", "{p}/in.png", "--mask-blur", "8"], "need --mask"),
        (["--init-image", "{p}/in.png", "--outpaint", "8,8"], "LEFT,TOP,RIGHT,BOTTOM"),
        (["--init-image", "{p}/in.png", "--outpaint", "4,0,0,0"], "multiple of 8"),
        (
            ["--size", "64x64", "--init-image", "{p}/in.png", "--outpaint", "4096,0,0,0"],
            "at most 4096",
        ),
        (["--hires-steps", "4"], "need --hires-scale"),
        (["--hires-scale", "5"], "Hires scale"),
        (["--hires-scale", "2", "--upscaler", "{p}/none.pth"], "found neither as a file"),
        (["--size", "2048x2048", "--hires-scale", "4"], "at most 4096"),
    ],
)
def test_bad_rework_input_exits_2_with_one_line_and_no_file(
    sd1_folder, pictures, tmp_path, capsys, arguments, message
):
    out = tmp_path / "o.png"
    code = generate(sd1_folder, out, *(a.replace("{p}", str(pictures)) for a in arguments))
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not out.exists()


def test_models_lists_the_upscaler_files_it_finds(tmp_path, capsys):
    folder = tmp_path / "webui" / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    (folder / "4x-UltraSharp.safetensors").write_bytes(b"")
    assert cli.main(["models", "--model-dir", str(tmp_path / "webui")]) == 0
    out = capsys.readouterr().out
    assert "upscaler" in out and "4x-UltraSharp" in out
