"""The command line on a tiny model: generate, models, info, and bad input (exit 2, no traceback)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipelines import cli
from pipelines.export import read_request


@pytest.fixture(scope="module")
def edge_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "edges.png"
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:44, 30:34] = 255
    Image.fromarray(image).save(path)
    return path


def test_generate_writes_png_with_request(sd1_folder, tmp_path, capsys):
    out = tmp_path / "cat.png"
    code = cli.main(
        ["generate", "--prompt", "a cat", "--model", str(sd1_folder), "--steps", "3",
         "--seed", "42", "--sampler", "DPM++ 2M Karras", "--size", "64x64", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert Image.open(out).size == (64, 64)
    request = read_request(out)
    assert (request.prompt, request.seed, request.steps, request.sampler) == (
        "a cat", 42, 3, "DPM++ 2M Karras"
    )  # fmt: skip
    assert "seed 42" in capsys.readouterr().out


def test_generate_with_control_map_and_explicit_controlnet(
    sd1_folder, controlnet_sd1_folder, edge_map, tmp_path
):
    out = tmp_path / "controlled.png"
    code = cli.main(
        ["generate", "--prompt", "x", "--model", str(sd1_folder), "--steps", "2", "--seed", "1",
         "--control-map", f"canny:{edge_map}:0.7",
         "--controlnet", f"canny={controlnet_sd1_folder}", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    (unit,) = read_request(out).controls
    assert unit.kind.value == "canny" and unit.strength == pytest.approx(0.7)
    assert unit.image == str(edge_map) and not unit.preprocess


def test_controlnet_found_beside_the_model(sd1_folder, controlnet_sd1_folder, edge_map, tmp_path):
    # The fixture's ControlNet folder name says "canny": discovery picks it for --control-map canny.
    out = tmp_path / "auto.png"
    code = cli.main(
        ["generate", "--prompt", "x", "--model", str(sd1_folder), "--steps", "2",
         "--model-dir", str(controlnet_sd1_folder.parent),
         "--control", f"canny:{edge_map}", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    (unit,) = read_request(out).controls
    assert unit.preprocess and unit.model == str(controlnet_sd1_folder)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--size", "100x64"], "multiple of 8"),
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--sampler", "Nope"], "Unknown sampler"),
        (["--steps", "0"], "Steps"),
        (["--control-map", "sketch:foo.png"], "Unknown control kind"),
        (["--control-map", "canny:/nonexistent/map.png", "--controlnet", "canny=/nonexistent/cn"],
         "not found"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(sd1_folder, tmp_path, capsys, arguments, message):
    code = cli.main(
        ["generate", "--prompt", "x", "--model", str(sd1_folder), "--out", str(tmp_path / "o.png"),
         *arguments]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_missing_model_and_existing_output(sd1_folder, tmp_path, capsys):
    assert cli.main(["generate", "--prompt", "x", "--model", str(tmp_path / "none"),
                     "--out", str(tmp_path / "a.png")]) == 2  # fmt: skip
    assert "none" in capsys.readouterr().err
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"keep me")
    args = ["generate", "--prompt", "x", "--model", str(sd1_folder), "--steps", "1"]
    assert cli.main([*args, "--out", str(taken)]) == 2
    assert taken.read_bytes() == b"keep me" and "--overwrite" in capsys.readouterr().err


def test_models_lists_what_it_found_and_where_it_looked(sd1_folder, controlnet_sd1_folder, capsys):
    code = cli.main(
        ["models", "--model-dir", str(sd1_folder.parent), "--model-dir",
         str(controlnet_sd1_folder.parent)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "tiny-sd1" in out and "SD 1.x" in out and "[canny]" in out
    assert "looked in:" in out and str(sd1_folder.parent) in out


def test_info_prints_parameters(sd1_folder, tmp_path, capsys):
    out = tmp_path / "i.png"
    cli.main(["generate", "--prompt", "a dog", "--negative", "blurry", "--model", str(sd1_folder),
              "--steps", "2", "--seed", "5", "--out", str(out)])  # fmt: skip
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("a dog\nNegative prompt: blurry\nSteps: 2, Sampler: Euler")
    assert cli.main(["info", str(tmp_path / "missing.png")]) == 2


def test_compare_writes_grid_animation_and_columns(sd1_folder, tmp_path, capsys):
    from PIL import Image as PILImage

    grid, animation, columns = tmp_path / "grid.png", tmp_path / "steps.gif", tmp_path / "cols"
    code = cli.main(
        ["compare", "--prompt", "a cat", "--model", str(sd1_folder), "--steps", "3", "--seed", "9",
         "--samplers", "Euler, DDIM, Heun:2", "--out", str(grid), "--animation", str(animation),
         "--columns", str(columns)]
    )  # fmt: skip
    assert code == 0
    request = read_request(grid)
    assert (request.prompt, request.seed, request.steps) == ("a cat", 9, 3)
    with PILImage.open(animation) as frames:
        assert frames.n_frames == 3  # one frame per step index of the longest column
    assert len(list(columns.glob("*.png"))) == 3
    out = capsys.readouterr().out
    assert "Euler" in out and "DDIM" in out and "Heun" in out


@pytest.mark.parametrize(
    ("samplers", "message"),
    [("Euler", "at least two"), ("Euler,Nope", "Unknown sampler"), ("Euler,DDIM:x", "NAME:STEPS")],
)
def test_compare_bad_samplers_exit_2(sd1_folder, tmp_path, capsys, samplers, message):
    code = cli.main(["compare", "--prompt", "x", "--model", str(sd1_folder), "--samplers", samplers,
                     "--out", str(tmp_path / "g.png")])  # fmt: skip
    assert code == 2 and message in capsys.readouterr().err


def test_info_warns_when_the_two_settings_records_disagree(tmp_path, capsys):
    from PIL import PngImagePlugin

    from pipelines.export import METADATA_KEY, PARAMETERS_KEY
    from pipelines.types import GenerationRequest

    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, "a dog\nSteps: 50, Sampler: Euler, CFG scale: 7, Seed: 1")
    request = GenerationRequest("a cat\nNegative prompt: evil", seed=1)
    info.add_text(METADATA_KEY, json.dumps({"version": 1, "request": request.to_dict()}))
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png", pnginfo=info)
    assert cli.main(["info", str(tmp_path / "x.png")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("a cat\nnegative prompt: evil\nSteps: 20,")
    assert captured.err.startswith("warning: x.png: its settings text differs")
