"""The command line under bad input: one line on stderr, exit status 2, no traceback, nothing
written. Each table row is one bad input; ``{model}``, ``{cn}``, ``{in}`` and ``{out}`` stand for the
tiny model, its ControlNet, the folder of bad files and the (watched) output folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import cli
from tests.robustness.cases import assert_untouched, case

GENERATE = ["generate", "--prompt", "a red circle", "--model", "{model}", "--steps", "1",
            "--size", "64x64", "--seed", "1", "--out", "{out}/image.png"]  # fmt: skip
COMPARE = ["compare", "--prompt", "a red circle", "--model", "{model}", "--steps", "1",
           "--size", "64x64", "--seed", "1", "--samplers", "Euler,DDIM",
           "--out", "{out}/grid.png"]  # fmt: skip
MAP = "{in}/map.png"
CN = ["--controlnet", "canny={cn}"]
# Lines the CLI may print on stderr before a failure: model loading progress and argparse usage.
PROGRESS = ("Loading ", "Moving ", "Preparing previews", "usage:", " ")

GENERATE_CASES = [
    # sizes
    case(["--size", "100x64"], "multiple of 8", id="size-not-multiple-of-8"),
    case(["--size", "big"], "WIDTHxHEIGHT", id="size-word"),
    case(["--size", "0x0"], "between", id="size-zero"),
    case(["--size=-64x64"], "between", id="size-negative-width"),
    case(["--size", "64x-64"], "between", id="size-negative-height"),
    case(["--size", "8x8"], "between", id="size-below-minimum"),
    case(["--size", "99999x64"], "between", id="size-above-maximum"),
    case(["--size", "64x64x64"], "WIDTHxHEIGHT", id="size-three-numbers"),
    case(["--size", "64.5x64"], "WIDTHxHEIGHT", id="size-fraction"),
    case(["--size", "x64"], "WIDTHxHEIGHT", id="size-missing-width"),
    case(["--size", "1e3x64"], "WIDTHxHEIGHT", id="size-exponent"),
    # steps
    case(["--steps", "0"], "Steps", id="steps-zero"),
    case(["--steps=-1"], "Steps", id="steps-negative"),
    case(["--steps", "201"], "Steps", id="steps-above-maximum"),
    case(["--steps", "1000000"], "Steps", id="steps-million"),
    case(["--steps", "abc"], "--steps", id="steps-word"),
    case(["--steps", "1.5"], "--steps", id="steps-fraction"),
    case(["--steps", ""], "--steps", id="steps-empty"),
    # CFG
    case(["--cfg=-1"], "CFG", id="cfg-negative"),
    case(["--cfg", "31"], "CFG", id="cfg-above-maximum"),
    case(["--cfg", "nan"], "CFG", id="cfg-nan"),
    case(["--cfg", "inf"], "CFG", id="cfg-inf"),
    case(["--cfg=-inf"], "CFG", id="cfg-minus-inf"),
    case(["--cfg", "1e308"], "CFG", id="cfg-1e308"),
    case(["--cfg", "seven"], "--cfg", id="cfg-word"),
    # seeds
    case(["--seed=-1"], "Seed", id="seed-negative"),
    case(["--seed", str(2**32)], "Seed", id="seed-2-to-32"),
    case(["--seed", str(2**64)], "Seed", id="seed-2-to-64"),
    case(["--seed", "abc"], "--seed", id="seed-word"),
    case(["--seed", "1.5"], "--seed", id="seed-fraction"),
    # samplers
    case(["--sampler", "Nope"], "Unknown sampler", id="sampler-unknown"),
    case(["--sampler", ""], "Unknown sampler", id="sampler-empty"),
    case(["--sampler", "Euler; rm -rf ~"], "Unknown sampler", id="sampler-shell-text"),
    # devices this machine does not have
    pytest.param(["--device", "cuda"], "cuda", id="device-cuda-absent",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
    pytest.param(["--device", "mps"], "mps", id="device-mps-absent",
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is here")),
    # prompts
    case(["--prompt", "a red circle " * 1000], "characters", id="prompt-13000-characters"),
    case(["--negative", "blurry " * 2000], "characters", id="negative-14000-characters"),
    # models
    case(["--model", "{in}/missing.safetensors"], "missing.safetensors", id="model-missing"),
    case(["--model", "{in}/empty-folder"], "empty-folder", id="model-empty-folder"),
    case(["--model", "{in}/broken-diffusers"], "broken-diffusers", id="model-broken-index"),
    case(["--model", "{in}/truncated.safetensors"], "truncated.safetensors",
         id="model-truncated-single-file"),
    case(["--model", "{trunc}"], "truncated", id="model-truncated-unet-weights"),
    case(["--model", "{in}/huge-header.safetensors"], "huge-header.safetensors",
         id="model-1tb-header"),
    case(["--model", "{in}/negative-header.safetensors"], "negative-header.safetensors",
         id="model-negative-header"),
    case(["--model", "{in}/zero.safetensors"], "zero.safetensors", id="model-empty-file"),
    case(["--model", "{in}/text.safetensors"], "text.safetensors", id="model-text-file"),
    case(["--model", "{in}/notes.txt"], "notes.txt", id="model-txt"),
    case(["--model", "{in}/payload.ckpt"], "pickle", id="model-ckpt-pickle-no-opt-in"),
    case(["--model", "{in}/payload.pt"], "pickle", id="model-pt-pickle-no-opt-in"),
    case(["--model", "../../../../../../../etc/passwd"], "passwd", id="model-path-escape"),
    case(["--model", "{cn}"], "ControlNet", id="model-is-a-controlnet"),
    # control specs
    case(["--control-map", f"sketch:{MAP}"], "Unknown control kind", id="control-kind-unknown"),
    case(["--control-map", "canny"], "no image", id="control-no-image"),
    case(["--control-map", "canny:"], "no image", id="control-empty-image"),
    case(["--control-map", f":{MAP}"], "Unknown control kind", id="control-no-kind"),
    case(["--control", f"custom:{MAP}", *CN], "preprocessor", id="control-custom-preprocessed"),
    case(["--control-map", f"canny:{MAP}"], "No canny ControlNet", id="control-no-controlnet"),
    case(["--control-map", f"canny:{MAP}:5", *CN], "strength", id="control-strength-5"),
    case(["--control-map", f"canny:{MAP}:-1", *CN], "strength", id="control-strength-negative"),
    case(["--control-map", f"canny:{MAP}:nan", *CN], "strength", id="control-strength-nan"),
    case(["--control-map", f"canny:{MAP}:inf", *CN], "strength", id="control-strength-inf"),
    case([*(a for _ in range(4) for a in ("--control-map", f"canny:{MAP}")), *CN], "At most 3",
         id="control-four-units"),
    case(["--control-map", "canny:{in}/missing.png", *CN], "missing.png", id="map-missing"),
    case(["--control-map", "canny:{in}/corrupt.png", *CN], "corrupt.png", id="map-corrupt"),
    case(["--control-map", "canny:{in}/truncated.png", *CN], "truncated.png", id="map-truncated"),
    case(["--control-map", "canny:{in}/text.png", *CN], "text.png", id="map-text-file"),
    case(["--control-map", "canny:{in}/empty.png", *CN], "empty.png", id="map-empty-file"),
    case(["--control-map", "canny:{in}/bomb.png", *CN], "bomb.png", id="map-60000px-bomb"),
    case(["--control-map", "canny:{in}/zero-size.png", *CN], "zero-size.png", id="map-0x0"),
    case(["--control-map", "canny:{in}/folder.png", *CN], "folder.png", id="map-is-folder"),
    case(["--control-map", "canny:{in}/notes.txt", *CN], "notes.txt", id="map-txt"),
    case(["--control-map", "canny:/etc/passwd", *CN], "passwd", id="map-path-escape"),
    case(["--control", "canny:{in}/corrupt.png", *CN], "corrupt.png", id="photo-corrupt"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "bogus=/x"], "bogus",
         id="controlnet-unknown-kind"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "canny"], "KIND=PATH",
         id="controlnet-no-path"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "canny={in}/missing-cn"],
         "missing-cn", id="controlnet-missing"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "canny={in}/notes.txt"], "notes.txt",
         id="controlnet-txt"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "canny={in}/payload.ckpt"], "payload.ckpt",
         id="controlnet-pickle-no-opt-in"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "canny={in}/huge-header.safetensors"],
         "huge-header", id="controlnet-1tb-header"),
    case(["--control-map", f"canny:{MAP}", "--controlnet", "canny=/etc"], "/etc",
         id="controlnet-path-escape"),
    # outputs
    case(["--out", "{out}"], "folder", id="out-is-folder"),
    case(["--out", "{out}/image.jpg"], ".png", id="out-jpg-suffix"),
    case(["--out", "{out}/image"], ".png", id="out-no-suffix"),
    case(["--out", "{out}/a/b/image.png"], "does not exist", id="out-missing-parents"),
    case(["--out", "{in}/notes.txt/image.png"], "notes.txt", id="out-under-a-file"),
    case(["--out", "/proc/diffusion-studio-fuzz.png"], "diffusion-studio-fuzz.png",
         id="out-unwritable"),
    case(["--out", "{out}/existing.png"], "--overwrite", id="out-exists-no-overwrite"),
    case(["--out", "{out}/" + "x" * 300 + ".png"], "x" * 20, id="out-name-too-long"),
    case(["--out", "{out}/image.jpg", "--model", "{in}/missing.safetensors"], ".png",
         id="out-suffix-checked-before-model"),
    case(["--out", "{out}/a/b/image.png", "--model", "{in}/missing.safetensors"],
         "does not exist", id="out-folder-checked-before-model"),
]  # fmt: skip

COMPARE_CASES = [
    case(["--samplers", "Euler"], "at least two", id="samplers-one"),
    case(["--samplers", ",,,"], "at least two", id="samplers-only-commas"),
    case(["--samplers", "Euler,Nope"], "Unknown sampler", id="samplers-unknown"),
    case(["--samplers", "Euler,DDIM:x"], "NAME:STEPS", id="samplers-steps-word"),
    case(["--samplers", "Euler,DDIM:0"], "Steps", id="samplers-steps-zero"),
    case(["--samplers", "Euler,DDIM:-5"], "Steps", id="samplers-steps-negative"),
    case(["--samplers", "Euler,DDIM:1000"], "Steps", id="samplers-steps-1000"),
    case(["--out", "{out}/grid.jpg"], ".png", id="grid-jpg-suffix"),
    case(["--out", "{out}/existing.png"], "--overwrite", id="grid-exists-no-overwrite"),
    case(["--animation", "{out}/steps.mp4"], "mp4", id="animation-mp4"),
    case(["--animation", "{out}"], "folder", id="animation-is-folder"),
    case(["--columns", "{in}/notes.txt"], "notes.txt", id="columns-is-a-file"),
    case(["--columns", "{out}/a/b"], "does not exist", id="columns-missing-parents"),
    case(["--size", "100x64"], "multiple of 8", id="compare-size"),
    case(["--model", "{in}/payload.ckpt"], "pickle", id="compare-pickle"),
]  # fmt: skip

INFO_CASES = [
    case("missing.png", "missing.png", id="info-missing"),
    case("folder.png", "folder", id="info-folder"),
    case("text.png", "text.png", id="info-text-file"),
    case("corrupt.png", "corrupt.png", id="info-corrupt"),
    case("truncated.png", "truncated.png", id="info-truncated"),
    case("empty.png", "empty.png", id="info-empty-file"),
    case("bomb.png", "bomb.png", id="info-60000px-bomb"),
    case("photo.jpg", "PNG", id="info-jpeg"),
    case("nometa.png", "no generation settings", id="info-no-settings"),
    case("meta-nested.png", "meta-nested.png", id="info-deeply-nested-json"),
    case("meta-json-array.png", "meta-json-array.png", id="info-json-array-only"),
    case("meta-not-json.png", "meta-not-json.png", id="info-json-garbage-only"),
    case("meta-params-bad-steps.png", "Steps", id="info-parameters-steps-word"),
    case("meta-params-bad-size.png", "Size", id="info-parameters-size-word"),
    case("meta-params-empty.png", "meta-params-empty.png", id="info-parameters-blank"),
    case("meta-width-huge.png", "Width", id="info-json-width-1e12"),
    case("meta-steps-text.png", "Steps", id="info-json-steps-word"),
]  # fmt: skip


@pytest.fixture(scope="module")
def truncated_model(sd1_folder, tmp_path_factory):
    """The tiny model with its UNet weights cut in half, as an interrupted copy leaves them."""
    folder = tmp_path_factory.mktemp("truncated") / "truncated"
    shutil.copytree(sd1_folder, folder)
    (weights,) = (folder / "unet").glob("*.safetensors")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture
def fill(sd1_folder, controlnet_sd1_folder, bad_folder, out_folder, truncated_model):
    names = {"model": sd1_folder, "cn": controlnet_sd1_folder, "in": bad_folder,
             "out": out_folder, "trunc": truncated_model}  # fmt: skip
    return lambda argv: [a.format(**names) for a in argv]


def is_progress(line: str) -> bool:
    return line.startswith(PROGRESS) or bool(re.search(r" ready \(.*\)\.$", line))


def assert_one_line_exit_2(code: int, err: str, fragment: str) -> None:
    assert code == cli.EXIT_USAGE, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if not is_progress(line)]
    assert len(errors) == 1, err
    assert "error:" in errors[0] and fragment in errors[0], err
    assert lines[-1] == errors[0], "the message is the last line"


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err, captured.out


@pytest.mark.parametrize(("extra", "fragment"), GENERATE_CASES)
def test_generate_bad_input(fill, out_folder, bad_folder, capsys, extra, fragment):
    code, err, _ = run_main(fill([*GENERATE, *extra]), capsys)
    assert_one_line_exit_2(code, err, fragment.format(**{"in": bad_folder}))
    assert_untouched(out_folder)
    assert not (bad_folder / "PICKLE-WAS-LOADED").exists()


@pytest.mark.parametrize(("extra", "fragment"), COMPARE_CASES)
def test_compare_bad_input(fill, out_folder, bad_folder, capsys, extra, fragment):
    code, err, _ = run_main(fill([*COMPARE, *extra]), capsys)
    assert_one_line_exit_2(code, err, fragment)
    assert_untouched(out_folder)
    assert not (bad_folder / "PICKLE-WAS-LOADED").exists()


@pytest.mark.parametrize(("name", "fragment"), INFO_CASES)
def test_info_bad_file(bad_folder, capsys, name, fragment):
    code, err, _ = run_main(["info", str(bad_folder / name)], capsys)
    assert_one_line_exit_2(code, err, fragment)


@pytest.mark.parametrize(
    "argv",
    [
        case([], id="no-command"),
        case(["generate"], id="generate-without-prompt"),
        case(["render", "--prompt", "x"], id="unknown-command"),
        case(["generate", "--prompt", "x", "--device", "tpu", "--out", "o.png"], id="device-tpu"),
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    code, err, _ = run_main(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert sum("error:" in line for line in err.splitlines()) == 1


def test_models_reports_bad_files_and_goes_on(bad_folder, capsys):
    code, err, out = run_main(["models", "--model-dir", str(bad_folder)], capsys)
    assert code == 0 and "Traceback" not in err
    assert all(line.startswith("skipped: ") for line in err.splitlines() if line.strip())
    assert str(bad_folder) in out


@pytest.mark.slow  # a fresh interpreter imports torch: seconds per case
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        case([*GENERATE, "--steps", "abc"], "--steps", id="process-steps-word"),
        case([*GENERATE, "--model", "{in}/huge-header.safetensors"], "huge-header",
             id="process-1tb-header"),
        case([*GENERATE, "--model", "{trunc}"], "truncated",
             id="process-truncated-unet-weights"),
        case([*GENERATE, "--control-map", f"canny:{MAP}", "--controlnet", "bogus=/x"], "bogus",
             id="process-controlnet-unknown-kind"),
        case(["info", "{in}/corrupt.png"], "corrupt.png", id="process-info-corrupt"),
    ],
)  # fmt: skip
def test_as_a_process(fill, out_folder, argv, fragment):
    """The real process: what a shell sees, exit status and stderr included."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DIFFUSION_STUDIO_LOG_DIR": str(out_folder.parent),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *fill(argv)],
        capture_output=True, text=True, env=env, cwd=out_folder.parent, timeout=300,
    )  # fmt: skip
    assert_one_line_exit_2(done.returncode, done.stderr, fragment)
    assert_untouched(out_folder)
