"""Prompts with weights, BREAK, LoRA tags and clip skip survive PNG metadata, `info` and reuse;
what another tool wrote that the studio cannot apply is listed, never dropped silently."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image, PngImagePlugin

from pipelines import cli
from pipelines.export import format_parameters, parse_parameters, read_metadata, write_png
from pipelines.types import ControlKind, GenerationRequest
from pipelines.unapplied import not_applied_text, unapplied_settings
from tests.lora_files import save_embedding, save_kohya_lora
from tests.tiny_models import TEXT_DIM, build_sd1_pipeline

PROMPT = "a castle, (fog:1.2), ((detailed)) BREAK [blurry] night <lora:detail_tweaker:0.5>"
REQUEST = GenerationRequest(
    prompt=PROMPT,
    negative_prompt="easynegative, (worst quality:1.4)",
    seed=7,
    steps=2,
    width=64,
    height=64,
    clip_skip=2,
    lora_hashes="detail_tweaker: 0123456789ab",
    ti_hashes="easynegative: ba9876543210",
)


def a1111_png(path, text: str):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_prompt_settings_round_trip_through_both_records(tmp_path):
    written = write_png(Image.new("RGB", (8, 8)), REQUEST, tmp_path / "a.png")
    metadata = read_metadata(written)
    assert metadata.request == REQUEST and metadata.warnings == () and metadata.not_applied == ()
    text = format_parameters(REQUEST)
    assert 'Clip skip: 2, Lora hashes: "detail_tweaker: 0123456789ab", TI hashes: ' in text
    # The text alone, as AUTOMATIC1111 or a viewer would read it.
    from_text = read_metadata(a1111_png(tmp_path / "text.png", text))
    assert not from_text.from_json and from_text.not_applied == ()
    assert from_text.request == replace(REQUEST, model="")


def test_info_prints_the_prompt_settings_and_what_is_not_applied(tmp_path, capsys):
    text = format_parameters(REQUEST).replace(
        "Steps: 2,",
        "Steps: 2, Denoising strength: 0.7, Hires upscale: 2, Schedule type: SGM Uniform,",
    )
    png = a1111_png(tmp_path / "a.png", text)
    assert cli.main(["info", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(PROMPT + "\nNegative prompt: easynegative")
    assert "Clip skip: 2" in out and "Lora hashes" in out
    assert out.strip().endswith(
        "Not applied: Denoising strength: 0.7; Hires upscale: 2; Schedule type: SGM Uniform."
    )


def test_controlnet_modules_map_to_kinds_and_keep_their_names():
    text = (
        "a dancer\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
        'ControlNet 0: "Module: openpose_full, Model: control_v11p_sd15_openpose [cab727d4], '
        "Weight: 1, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 0.5, "
        "Threshold B: 0.5, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, "
        'Control Mode: Balanced", '
        'ControlNet 1: "Module: depth_midas, Model: control_v11f1p_sd15_depth, Weight: 0.5", '
        'ControlNet 2: "Module: softedge_pidinet, Model: control_v11p_sd15_softedge, Weight: 1"'
    )
    request = parse_parameters(text)
    pose, depth, soft = request.controls
    assert (pose.kind, pose.preprocess, pose.module) == (ControlKind.POSE, True, "openpose_full")
    assert (depth.kind, depth.preprocess) == (ControlKind.DEPTH, True)  # our own module's name
    assert not soft.preprocess
    written = format_parameters(request)
    assert "Module: openpose_full" in written and "Module: depth_midas" in written
    from pipelines.export import split_parameters

    left = unapplied_settings(split_parameters(text)[2])
    assert left == [
        "ControlNet 0 Processor Res: 512",
        "ControlNet 2 Module: softedge_pidinet (supply its map)",
    ]
    assert not_applied_text([]) == ""
    # AUTOMATIC1111's own weighting rule is the studio's; its "No norm" variant is not.
    assert unapplied_settings({"Emphasis": "Original", "Version": "v1.9.4"}) == []
    assert unapplied_settings({"Emphasis": "No norm"}) == ["Emphasis: No norm"]


def test_cli_lora_option_is_a_prompt_tag_and_models_lists_add_ons(tmp_path, capsys):
    assert cli.prompt_with_loras("a cat", ["detail:0.5", "grain"]) == (
        "a cat <lora:detail:0.5> <lora:grain:1>"
    )
    pipe = build_sd1_pipeline()
    save_kohya_lora(tmp_path / "models" / "Lora" / "detail.safetensors", pipe)
    save_embedding(tmp_path / "tis" / "shiny.safetensors", (TEXT_DIM,))
    models = tmp_path / "models"
    assert cli.main(["models", "--model-dir", str(models), "--embedding-dir",
                     str(tmp_path / "tis")]) == 0  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    assert "LoRAs" in out and "detail  [SD 1.x]" in out
    assert "neither" not in captured.err  # the model scan leaves the Lora folder to the LoRA list
    assert "shiny  [unknown family]" in out


def test_cli_generate_applies_clip_skip_and_lora_and_records_them(sd1_folder, tmp_path, capsys):
    save_kohya_lora(tmp_path / "Lora" / "detail.safetensors", build_sd1_pipeline())
    out = tmp_path / "out.png"
    code = cli.main(["generate", "--prompt", "a dog", "--model", str(sd1_folder), "--steps", "2",
                     "--seed", "3", "--clip-skip", "2", "--lora", "detail:0.7", "--model-dir",
                     str(tmp_path), "--lora", "missing", "--out", str(out)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "LoRA “missing” was not found" in err
    request = read_metadata(out).request
    assert request.prompt == "a dog <lora:detail:0.7> <lora:missing:1>"
    assert request.clip_skip == 2 and request.lora_hashes.startswith("detail: ")
