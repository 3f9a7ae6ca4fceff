"""The command line on a tiny model: generate, models, info, and bad input (exit 2, no traceback)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import cli
from pipelines.export import default_data_folder, read_request


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
    assert not unit.preprocess
    # The request names a copy kept in the app's data folder, as the window keeps its maps.
    assert Path(unit.image).parent == default_data_folder() / "condition-maps"
    assert np.array_equal(np.asarray(Image.open(unit.image)), np.asarray(Image.open(edge_map)))


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
         "does not exist"),
        (["--controlnet", "bogus=/x"], "unknown control kind 'bogus'"),
        (["--controlnet", "canny"], "KIND=PATH"),
        (["--control", "custom:x.png"], "no preprocessor"),
        (["--out", "/nonexistent-folder/o.png"], "does not exist"),
        (["--prompt", "x" * 10_001], "at most 10,000"),
        pytest.param(["--device", "cuda"], "no usable CUDA GPU", marks=pytest.mark.skipif(
            torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
        pytest.param(["--device", "mps"], "MPS", marks=pytest.mark.skipif(
            torch.backends.mps.is_available(), reason="this machine has MPS")),
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
    assert err.count("\n") == 1 and err.startswith("error: ")
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


@pytest.fixture(scope="module")
def damaged_checkpoints(tmp_path_factory, sd1_folder):
    from safetensors.torch import load_file, save_file

    from tests.original_layout import write_sd1_single_file

    root = tmp_path_factory.mktemp("damaged")
    weights = load_file(write_sd1_single_file(sd1_folder, root / "whole.safetensors"))
    text = "cond_stage_model."
    save_file(
        {k: v for k, v in weights.items() if not k.startswith(text)}, root / "no_te.safetensors"
    )
    (key,) = [k for k in weights if k.startswith(text) and k.endswith("position_embedding.weight")]
    save_file({**weights, key: torch.zeros(77, 5)}, root / "wrong_te.safetensors")
    (root / "cut.safetensors").write_bytes((root / "whole.safetensors").read_bytes()[:20000])
    return root


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_te", "holds no weights for its CLIPTextModel"),
        ("wrong_te", "position_embedding.weight has the shape [77, 5]"),
        ("cut", "truncated"),
    ],
)
def test_damaged_checkpoints_give_one_line_exit_2_and_the_traceback_goes_to_the_log(
    damaged_checkpoints, tmp_path, capsys, name, message
):
    code = cli.main(["generate", "--prompt", "x", "--model", str(damaged_checkpoints / f"{name}.safetensors"),
                     "--steps", "1", "--size", "64x64", "--out", str(tmp_path / "o.png")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == cli.EXIT_USAGE
    assert captured.err.startswith("error: Cannot load") or captured.err.startswith("error: /")
    assert message in captured.err and captured.err.count("\n") == 1
    log_text = (cli.log_folder() / cli.LOG_FILE_NAME).read_text()
    assert "Traceback" in log_text and message.split(" [")[0] in log_text
    assert not (tmp_path / "o.png").exists()


def test_verbose_shows_the_traceback_on_the_console_too(damaged_checkpoints, tmp_path, capsys):
    code = cli.main(["generate", "--verbose", "--prompt", "x", "--model",
                     str(damaged_checkpoints / "no_te.safetensors"), "--out", str(tmp_path / "o.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: Cannot load")


def test_an_unexpected_failure_is_one_line_naming_the_log(
    sd1_folder, tmp_path, capsys, monkeypatch
):
    from pipelines.engine import Engine

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(Engine, "run", broken)
    code = cli.main(["generate", "--prompt", "x", "--model", str(sd1_folder),
                     "--out", str(tmp_path / "o.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE and err.count("\n") == 1
    assert err.startswith("error: unexpected RuntimeError: something inside broke; details in")
    assert str(cli.log_folder()) in err


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("generate", ["--out", "{tmp}/o.jpg"], "must end in .png"),
        ("generate", ["--out", "{tmp}/missing/o.png"], "does not exist"),
        ("generate", ["--out", "{tmp}/taken.png"], "pass --overwrite"),
        ("compare", ["--out", "{tmp}/g.png", "--animation", "{tmp}/out.mp4"], ".webp or .gif"),
        ("compare", ["--out", "{tmp}/g.png", "--animation", "{tmp}/taken.gif"], "pass --overwrite"),
        ("compare", ["--out", "{tmp}/g.png", "--animation", "{tmp}/a.gif", "--columns",
                     "{tmp}/taken.png"], "it is a file"),
        ("compare", ["--out", "{tmp}/g.png", "--columns", "{tmp}/no/such/cols"], "parent folder"),
        ("compare", ["--out", "{tmp}/g.png", "--columns", "{tmp}/cols"], "already exists"),
        ("compare", ["--out", "{tmp}/g.png", "--animation", "{tmp}/g.png"], ".webp or .gif"),
        ("compare", ["--out", "{tmp}/taken.png"], "pass --overwrite"),
    ],
)  # fmt: skip
def test_every_output_is_checked_before_any_work(
    sd1_folder, tmp_path, capsys, monkeypatch, command, options, message
):
    from pipelines import compare
    from pipelines.engine import Engine

    def must_not_run(*args, **kwargs):
        raise RuntimeError("the run started before the outputs were checked")

    monkeypatch.setattr(Engine, "run", must_not_run)
    monkeypatch.setattr(compare, "compare", must_not_run)
    monkeypatch.setattr(Engine, "__init__", must_not_run)
    (tmp_path / "taken.png").write_bytes(b"keep")
    (tmp_path / "taken.gif").write_bytes(b"keep")
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "02-DDIM-3.png").write_bytes(b"keep")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    samplers = ["--samplers", "Euler,DDIM"] if command == "compare" else []
    code = cli.main([command, "--prompt", "x", "--model", str(sd1_folder), "--steps", "3",
                     *samplers, *(o.format(tmp=tmp_path) for o in options)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert message in err and err.count("\n") == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_control_units_keep_command_line_order_and_absolute_copied_maps(
    edge_map, tmp_path, monkeypatch
):
    monkeypatch.chdir(edge_map.parent)
    args = cli._build_parser().parse_args(
        ["generate", "--prompt", "x", "--out", "o.png", "--model", "nowhere-by-name",
         "--control-map", f"depth:{edge_map.name}:0.5", "--control", f"canny:{edge_map.name}",
         "--control-map", "custom:./edges.png", "--controlnet", "depth=cn/depth",
         "--controlnet", "canny=cn/canny", "--controlnet", "custom=/abs/custom"]
    )  # fmt: skip
    request = cli.build_request(args, engine=None)
    assert [(u.kind.value, u.preprocess) for u in request.controls] == [
        ("depth", False), ("canny", True), ("custom", False)
    ]  # fmt: skip
    assert [u.image for u in request.controls] == [str(edge_map)] * 3
    assert [u.model for u in request.controls] == [
        str(edge_map.parent / "cn" / "depth"), str(edge_map.parent / "cn" / "canny"), "/abs/custom"
    ]  # fmt: skip
    assert request.model == "nowhere-by-name"  # a name, looked up in the model folders

    kept = cli.keep_map_copies(request, tmp_path / "data")
    copies = [Path(u.image) for u in kept.controls]
    assert len(set(copies)) == 3
    for copy in copies:
        assert copy.parent == tmp_path / "data" / "condition-maps" and copy.is_absolute()
        assert np.array_equal(np.asarray(Image.open(copy)), np.asarray(Image.open(edge_map)))
    assert [u.strength for u in kept.controls] == [0.5, 1.0, 1.0]
    os.chdir(tmp_path)  # restored from elsewhere, the maps are still found
    assert all(Path(u.image).exists() for u in kept.controls)


def test_generate_sweeps_stale_temp_files_from_the_folder_it_writes_to(sd1_folder, tmp_path):
    stale = tmp_path / ".diffusion-studio-0123abcd-old.tmp"
    stale.write_bytes(b"half an image")
    os.utime(stale, (1, 1))
    recent = tmp_path / ".diffusion-studio-0123abce-now.tmp"
    recent.write_bytes(b"being written")
    code = cli.main(["generate", "--prompt", "x", "--model", str(sd1_folder), "--steps", "1",
                     "--size", "64x64", "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert code == 0
    assert not stale.exists() and recent.exists() and (tmp_path / "o.png").exists()
