from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from pipelines import export
from pipelines.errors import ExportError, ImageReadError, StudioError, ValidationError
from pipelines.export import (
    DEFAULT_FILE_PATTERN,
    METADATA_KEY,
    PARAMETERS_KEY,
    check_file_pattern,
    file_name_part,
    format_parameters,
    model_display_name,
    next_free_path,
    parse_parameters,
    read_metadata,
    read_request,
    split_parameters,
    sweep_stale_temp_files,
    write_png,
)
from pipelines.types import (
    ControlKind,
    ControlUnit,
    GenerationRequest,
    MemoryOptions,
    PreviewMode,
    ResizeMode,
)

NOW = datetime(2024, 5, 17, 9, 8, 7)
NOW_TS = NOW.timestamp()


def image(size: tuple[int, int] = (16, 12), mode: str = "RGB") -> Image.Image:
    picture = Image.new(mode, size)
    if mode == "RGB":
        picture.putpixel((3, 4), (250, 10, 20))
    return picture


def full_request() -> GenerationRequest:
    return GenerationRequest(
        prompt="ein Hund im Schnee, 雪の中の犬 🐕\nsecond line, (detailed:1.2)",
        model="/models/sd15/dreamshaper_8.safetensors",
        negative_prompt='blurry, "text", watermark',
        seed=3_141_592_653,
        steps=28,
        cfg_scale=6.5,
        width=512,
        height=768,
        sampler="DPM++ 2M Karras",
        controls=(
            ControlUnit(
                kind=ControlKind.CANNY,
                model="/models/controlnet/control_v11p_sd15_canny",
                image="/photos/house.jpg",
                preprocess=True,
                strength=0.8,
                start=0.1,
                end=0.9,
                resize_mode=ResizeMode.CROP,
                canny_low=50,
                canny_high=150,
            ),
            ControlUnit(
                kind=ControlKind.POSE,
                model="/models/controlnet/control_v11p_sd15_openpose",
                image="/maps/pose.png",
                enabled=False,
            ),
            ControlUnit(
                kind=ControlKind.DEPTH,
                model="C:\\controlnet\\control_v11f1p_sd15_depth.safetensors",
                image="/maps/depth.png",
                resize_mode=ResizeMode.STRETCH,
            ),
        ),
        memory=MemoryOptions(attention_slicing=True, vae_tiling=True, cpu_offload=False),
        preview=PreviewMode.TINY,
    )


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- format_parameters -----------------------------------------------------------------------


def test_format_parameters_exact_text():
    request = GenerationRequest(
        prompt="a lighthouse at dusk, oil painting",
        negative_prompt="lowres",
        model="/models/sd15/dreamshaper_8.safetensors",
        seed=123,
        steps=20,
        cfg_scale=7.0,
        width=512,
        height=512,
        sampler="Euler a",
        controls=(
            ControlUnit(
                kind=ControlKind.CANNY,
                model="/cn/control_v11p_sd15_canny",
                image="/maps/edges.png",
                preprocess=True,
                resize_mode=ResizeMode.CROP,
            ),
        ),
    )
    assert format_parameters(request) == (
        "a lighthouse at dusk, oil painting\n"
        "Negative prompt: lowres\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, "
        "Model: dreamshaper_8, "
        'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny, Weight: 1.0, '
        "Resize Mode: Crop and Resize, Threshold A: 100, Threshold B: 200, "
        'Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced"'
    )


def test_format_parameters_without_negative_seed_size_or_model():
    request = GenerationRequest(prompt="just a prompt", cfg_scale=7.5, sampler="UniPC")
    assert format_parameters(request) == (
        "just a prompt\nSteps: 20, Sampler: UniPC, CFG scale: 7.5, Model: default"
    )


def test_format_parameters_disabled_units_keep_slot_numbers_and_ready_maps_have_no_module():
    text = format_parameters(full_request())
    last = text.splitlines()[-1]
    assert "ControlNet 1" not in last  # the disabled pose unit
    assert (
        'ControlNet 2: "Module: none, Model: control_v11f1p_sd15_depth, Weight: 1.0, '
        "Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 1.0, "
        'Control Mode: Balanced"'
    ) in last
    assert "Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3141592653, Size: 512x768" in last


def test_format_parameters_quotes_values_with_commas_like_a1111():
    request = GenerationRequest(prompt="p", model="/models/odd, name: v2.safetensors", seed=1)
    assert format_parameters(request).endswith('Model: "odd, name: v2"')
    assert parse_parameters(format_parameters(request)).model == "odd, name: v2"


def test_format_parameters_names_a1111_knows():
    assert "Sampler: DPM++ SDE Karras," in format_parameters(
        GenerationRequest("p", sampler="DPM++ SDE")
    )
    assert "Sampler: PLMS," in format_parameters(GenerationRequest("p", sampler="PNDM"))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("", "default"),
        ("/models/dreamshaper_8.safetensors", "dreamshaper_8"),
        ("/models/stable-diffusion-v1.5/", "stable-diffusion-v1.5"),
        ("C:\\Models\\juggernautXL_v9.ckpt", "juggernautXL_v9"),
        ("runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5"),
    ],
)
def test_model_display_name(model, name):
    assert model_display_name(model) == name


# -- parse_parameters --------------------------------------------------------------------------

A1111_MODERN = (
    "masterpiece, best quality, 1girl, <lora:add_detail:0.6>\n"
    "standing in a (field of flowers:1.2), golden hour\n"
    "Negative prompt: (worst quality:1.4), lowres,\n"
    "bad hands, EasyNegative\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 1944526060, "
    "Size: 832x1216, Model hash: 6d82a674e1, Model: helloobjects_V15evae, VAE hash: 63aeecb90f, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, '
    "Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 64.0, Threshold B: 192.0, "
    'Guidance Start: 0.05, Guidance End: 0.9, Pixel Perfect: False, Control Mode: Balanced", '
    'ControlNet 1: "Module: softedge_pidinet, Model: control_v11p_sd15_softedge [a8575a2a], '
    "Weight: 1.0, Resize Mode: Just Resize, Processor Res: 512, Threshold A: 0.5, "
    "Threshold B: 0.5, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, "
    'Control Mode: ControlNet is more important", '
    'ControlNet 2: "Module: none, Model: control_v11p_sd15_openpose [cab727d4], Weight: 1, '
    "Resize Mode: Resize and Fill, Low Vram: False, Guidance Start: 0, Guidance End: 1, "
    'Pixel Perfect: True, Control Mode: Balanced, Hr Option: Both", '
    'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.9.4'
)


def test_parse_modern_a1111_with_schedule_type_extra_keys_and_three_units():
    request = parse_parameters(A1111_MODERN)
    assert request.prompt == (
        "masterpiece, best quality, 1girl, <lora:add_detail:0.6>\n"
        "standing in a (field of flowers:1.2), golden hour"
    )
    assert request.negative_prompt == "(worst quality:1.4), lowres,\nbad hands, EasyNegative"
    assert (request.steps, request.cfg_scale, request.seed) == (30, 5.5, 1944526060)
    assert (request.width, request.height) == (832, 1216)
    assert request.sampler == "DPM++ 2M Karras"
    assert request.model == "helloobjects_V15evae"
    canny, softedge, pose = request.controls
    assert canny == ControlUnit(
        kind=ControlKind.CANNY,
        model="control_v11p_sd15_canny",
        preprocess=True,
        strength=0.8,
        start=0.05,
        end=0.9,
        resize_mode=ResizeMode.CROP,
        canny_low=64,
        canny_high=192,
    )
    # A preprocessor we do not run: a ready map of a custom unit, thresholds ignored.
    assert softedge == ControlUnit(
        kind=ControlKind.CUSTOM,
        model="control_v11p_sd15_softedge",
        preprocess=False,
        resize_mode=ResizeMode.STRETCH,
    )
    # Module "none": the map was ready; its kind comes from the model name.
    assert pose == ControlUnit(
        kind=ControlKind.POSE,
        model="control_v11p_sd15_openpose",
        preprocess=False,
        resize_mode=ResizeMode.FIT,
    )


def test_split_parameters_keeps_extra_keys_and_unquotes_values():
    _prompt, _negative, fields = split_parameters(A1111_MODERN)
    assert fields["Model hash"] == "6d82a674e1"
    assert fields["Version"] == "v1.9.4"
    assert fields["Denoising strength"] == "0.45"
    assert fields["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert fields["ControlNet 0"].startswith("Module: canny, Model: control_v11p_sd15_canny [")


A1111_2023_MULTI_UNIT = (
    "an cel animation of a woman standing with a sword\n"
    "Negative prompt: two head, (ugly), duplicate\n"
    "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 3390913259, Size: 896x1072, "
    "Model hash: 2f23e688b6, Model: mel-paprika-v1, Denoising strength: 0.7, Mask blur: 4, "
    "ControlNet-0 Enabled: True, ControlNet-0 Module: canny, "
    "ControlNet-0 Model: control_canny-fp16 [e3fe7712], ControlNet-0 Weight: 0.55, "
    "ControlNet-0 Guidance Start: 0, ControlNet-0 Guidance End: 1, "
    "ControlNet-1 Enabled: True, ControlNet-1 Module: depth, "
    "ControlNet-1 Model: control_depth-fp16 [400750f6], ControlNet-1 Weight: 0.8, "
    "ControlNet-1 Guidance Start: 0, ControlNet-1 Guidance End: 1"
)


def test_parse_2023_numbered_controlnet_form():
    request = parse_parameters(A1111_2023_MULTI_UNIT)
    assert request.prompt == "an cel animation of a woman standing with a sword"
    assert request.negative_prompt == "two head, (ugly), duplicate"
    assert (request.sampler, request.steps, request.cfg_scale) == ("Euler a", 30, 7.0)
    assert (request.width, request.height, request.seed) == (896, 1072, 3390913259)
    assert request.model == "mel-paprika-v1"
    assert request.controls == (
        ControlUnit(ControlKind.CANNY, "control_canny-fp16", preprocess=True, strength=0.55),
        ControlUnit(
            ControlKind.DEPTH, "control_depth-fp16", preprocess=True, strength=0.8, module="depth"
        ),  # A1111's own module name is kept, to be written back as it was
    )


def test_parse_first_controlnet_form_without_negative_prompt():
    text = (
        "Studying girl, best quality, ultra high res, (photorealistic:1.4)\n"
        "Steps: 28, Sampler: DPM++ SDE Karras, CFG scale: 8, Seed: 2851621146, Size: 1024x560, "
        "Model hash: fc2511737a, Model: chilloutmix_NiPrunedFp32Fix, Denoising strength: 0.38, "
        "Mask blur: 4, ControlNet Enabled: True, ControlNet Module: canny, "
        "ControlNet Model: control_sd15_canny [fef5e48e], ControlNet Weight: 1, "
        "ControlNet Guidance Strength: 0.6"
    )
    request = parse_parameters(text)
    assert request.prompt == "Studying girl, best quality, ultra high res, (photorealistic:1.4)"
    assert request.negative_prompt == ""
    assert request.sampler == "DPM++ SDE"  # ours always uses Karras levels
    assert request.controls == (
        ControlUnit(ControlKind.CANNY, "control_sd15_canny", preprocess=True, end=0.6),
    )


def test_parse_prompt_with_commas_quotes_colons_and_unknown_sampler():
    text = (
        'a neon sign that says "OPEN, 24/7", rain: heavy, <lora:film:0.5>, 85mm\n'
        "Steps: 12, Sampler: Restart, CFG scale: 4, Seed: 7, Size: 640x640, Model: sdxl_base, "
        "Version: v1.6.0"
    )
    request = parse_parameters(text)
    assert (
        request.prompt == 'a neon sign that says "OPEN, 24/7", rain: heavy, <lora:film:0.5>, 85mm'
    )
    assert request.sampler == "Restart"  # the engine reports unknown samplers, not the parser
    assert request.controls == ()


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("DPM++ 2M SDE", "Karras", "DPM++ 2M SDE Karras"),
        ("DPM++ SDE", "Karras", "DPM++ SDE"),
        ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras"),
        ("Euler a", "Automatic", "Euler a"),
        ("Euler", "Uniform", "Euler"),
        ("Euler", "SGM Uniform", "Euler"),
        ("DPM++ 2M SDE", "Exponential", "DPM++ 2M SDE Exponential"),
        ("PLMS", None, "PNDM"),
        ("k_euler_a", None, "Euler a"),
    ],
)
def test_parse_sampler_names(sampler, schedule, expected):
    schedule_text = f"Schedule type: {schedule}, " if schedule else ""
    text = f"p\nSteps: 20, Sampler: {sampler}, {schedule_text}CFG scale: 7, Seed: 1"
    assert parse_parameters(text).sampler == expected


def test_parse_keeps_prompt_lines_verbatim_and_reads_a_prompt_only_text():
    text = "  indented line\nstyle: anime, pose: sitting, mood: calm"
    request = parse_parameters(text)
    # Three "key: value" pairs but none of A1111's keys: still prompt.
    assert request.prompt == text
    assert request.steps == GenerationRequest("x").steps


def test_parse_settings_only_text_gives_an_empty_prompt():
    request = parse_parameters("Steps: 9, Sampler: Euler, CFG scale: 3, Seed: 5")
    assert (request.prompt, request.steps, request.seed) == ("", 9, 5)


def test_parse_rejects_bad_numbers_and_empty_text():
    with pytest.raises(ValidationError, match="Steps: many"):
        parse_parameters("p\nSteps: many, Sampler: Euler, CFG scale: 7")
    with pytest.raises(ValidationError, match="Size"):
        parse_parameters("p\nSteps: 3, Sampler: Euler, Size: big")
    with pytest.raises(ValidationError):
        parse_parameters("  \n ")


def test_format_then_parse_restores_what_the_text_can_carry():
    request = GenerationRequest(
        prompt="line one, with commas\nline two: with a colon",
        negative_prompt="bad\nworse",
        model="dreamshaper_8",
        seed=42,
        steps=33,
        cfg_scale=4.25,
        width=768,
        height=512,
        sampler="DPM++ 2M SDE Karras",
        controls=(
            ControlUnit(ControlKind.CANNY, "control_v11p_sd15_canny", preprocess=True, canny_low=7),
            ControlUnit(ControlKind.DEPTH, "control_v11f1p_sd15_depth", strength=1.5, start=0.2),
            ControlUnit(ControlKind.POSE, "control_v11p_sd15_openpose", preprocess=True, end=0.5),
        ),
    )
    assert parse_parameters(format_parameters(request)) == request


# -- write_png / read_request ------------------------------------------------------------------


def test_round_trip_keeps_everything_including_paths_memory_and_unicode(tmp_path):
    request = full_request()
    target = tmp_path / "out.png"
    assert write_png(image(), request, target) == target
    assert read_request(target) == request
    with Image.open(target) as saved:
        assert saved.size == (16, 12)
        assert saved.getpixel((3, 4)) == (250, 10, 20)
        # A1111 reads info["parameters"] without decoding the pixels.
        assert saved.info[PARAMETERS_KEY] == format_parameters(request)
        document = json.loads(saved.info[METADATA_KEY])
    assert document["version"] == export.METADATA_VERSION
    assert document["request"] == request.to_dict()
    assert "extra" not in document


def test_extra_is_stored_and_read_back(tmp_path):
    target = write_png(
        image(), full_request(), tmp_path / "x.png", extra={"timings": {"total": 1.5}}
    )
    metadata = read_metadata(target)
    assert metadata.from_json
    assert metadata.extra == {"timings": {"total": 1.5}}
    assert metadata.parameters == format_parameters(full_request())


def test_latin1_text_is_tEXt_and_other_text_is_iTXt(tmp_path):
    ascii_file = write_png(image(), GenerationRequest("plain prompt", seed=1), tmp_path / "a.png")
    unicode_file = write_png(image(), GenerationRequest("雪の中の犬", seed=1), tmp_path / "b.png")
    assert b"tEXtparameters" in ascii_file.read_bytes()
    assert b"iTXtparameters" in unicode_file.read_bytes()
    assert read_request(unicode_file).prompt == "雪の中の犬"


def test_images_in_modes_png_cannot_hold_are_converted(tmp_path):
    target = write_png(image(mode="CMYK"), GenerationRequest("p"), tmp_path / "c.png")
    with Image.open(target) as saved:
        assert saved.mode == "RGB"
    rgba = write_png(image(mode="RGBA"), GenerationRequest("p"), tmp_path / "d.png")
    with Image.open(rgba) as saved:
        assert saved.mode == "RGBA"


def test_refuses_to_overwrite_and_leaves_the_old_file(tmp_path):
    target = tmp_path / "keep.png"
    write_png(image(), GenerationRequest("first"), target)
    before = target.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        write_png(image(), GenerationRequest("second"), target)
    assert target.read_bytes() == before
    assert files_in(tmp_path) == ["keep.png"]


def test_overwrite_true_replaces(tmp_path):
    target = tmp_path / "x.png"
    write_png(image(), GenerationRequest("first"), target)
    write_png(image(), GenerationRequest("second"), target, overwrite=True)
    assert read_request(target).prompt == "second"
    assert files_in(tmp_path) == ["x.png"]


def test_a_file_appearing_between_check_and_rename_is_not_overwritten(tmp_path, monkeypatch):
    target = tmp_path / "race.png"
    real_check = export.check_target

    def check_then_someone_else_writes(path, *args):
        real_check(path, *args)
        path.write_bytes(b"someone else's file")

    monkeypatch.setattr(export, "check_target", check_then_someone_else_writes)
    with pytest.raises(ExportError, match="already exists"):
        write_png(image(), GenerationRequest("p"), target)
    assert target.read_bytes() == b"someone else's file"
    assert files_in(tmp_path) == ["race.png"]


def test_write_leaves_no_temporary_files(tmp_path):
    write_png(image(), GenerationRequest("p"), tmp_path / "a.png")
    write_png(image(), GenerationRequest("p"), tmp_path / "a.png", overwrite=True)
    assert files_in(tmp_path) == ["a.png"]


def test_failure_while_encoding_removes_the_temporary_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ExportError, match="No space left on device"):
        write_png(image(), GenerationRequest("p"), tmp_path / "a.png")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_while_renaming_keeps_the_old_file_and_no_temporary(
    tmp_path, monkeypatch, overwrite
):
    target = tmp_path / "a.png"
    write_png(image(), GenerationRequest("old"), target)
    other = tmp_path / "b.png"

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export.os, "replace", fail)
    monkeypatch.setattr(export.os, "link", fail)
    with pytest.raises(ExportError, match="permission"):
        write_png(
            image(), GenerationRequest("new"), target if overwrite else other, overwrite=overwrite
        )
    assert files_in(tmp_path) == ["a.png"]
    assert read_request(target).prompt == "old"


def test_unexpected_errors_also_clean_up(tmp_path, monkeypatch):
    def interrupted(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_png(image(), GenerationRequest("p"), tmp_path / "a.png")
    assert files_in(tmp_path) == []


def test_file_system_without_hard_links_still_refuses_to_overwrite(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(export.os, "link", no_links)
    target = write_png(image(), GenerationRequest("p"), tmp_path / "a.png")
    assert read_request(target).prompt == "p"
    assert files_in(tmp_path) == ["a.png"]


def test_missing_folder_is_an_error_unless_asked_to_make_it(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        write_png(image(), GenerationRequest("p"), tmp_path / "new" / "a.png")
    assert files_in(tmp_path) == []
    made = write_png(image(), GenerationRequest("p"), tmp_path / "new" / "a.png", make_folder=True)
    assert made.is_file()
    # Only the last level is created: a mistyped parent stays an error.
    with pytest.raises(ExportError, match="parent folder does not exist"):
        write_png(image(), GenerationRequest("p"), tmp_path / "x" / "y" / "a.png", make_folder=True)
    assert not (tmp_path / "x").exists()


def test_bad_targets_are_refused(tmp_path):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ExportError, match="folder has that name"):
        write_png(image(), GenerationRequest("p"), tmp_path / "folder.png", overwrite=True)
    with pytest.raises(ExportError, match="not a folder"):
        write_png(image(), GenerationRequest("p"), tmp_path / "file" / "a.png")
    with pytest.raises(ExportError, match=r"\.png"):
        write_png(image(), GenerationRequest("p"), tmp_path / "a.jpg")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="needs POSIX permissions and a non-root user",
)
def test_read_only_folder_is_an_export_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ExportError, match="permission"):
            write_png(image(), GenerationRequest("p"), folder / "a.png")
    finally:
        folder.chmod(0o700)
    assert files_in(folder) == []


def test_permission_error_when_creating_the_file_is_an_export_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export.os, "open", denied)
    with pytest.raises(ExportError, match="No permission to write"):
        write_png(image(), GenerationRequest("p"), tmp_path / "a.png")
    assert isinstance(ExportError("x"), StudioError)


@pytest.mark.skipif(sys.platform == "win32", reason="umask is POSIX")
def test_written_file_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        target = write_png(image(), GenerationRequest("p"), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


def test_read_a1111_png_without_our_chunk(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_2023_MULTI_UNIT)
    target = tmp_path / "a1111.png"
    image().save(target, pnginfo=info)
    metadata = read_metadata(target)
    assert not metadata.from_json
    assert metadata.request == parse_parameters(A1111_2023_MULTI_UNIT)
    assert metadata.request.seed == 3390913259


def test_damaged_json_chunk_falls_back_to_the_parameters_text(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, "from text\nSteps: 5, Sampler: Euler, CFG scale: 2, Seed: 9")
    info.add_text(METADATA_KEY, '{"version": 1, "request": {"prompt": ')
    target = tmp_path / "a.png"
    image().save(target, pnginfo=info)
    assert read_request(target) == GenerationRequest(
        "from text", steps=5, sampler="Euler", cfg_scale=2.0, seed=9
    )


def test_json_from_a_newer_version_with_unknown_keys_is_read(tmp_path):
    data = GenerationRequest("future", seed=3).to_dict() | {"new_field": [1, 2]}
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps({"version": 7, "request": data, "other": 1}))
    target = tmp_path / "a.png"
    image().save(target, pnginfo=info)
    assert read_request(target) == GenerationRequest("future", seed=3)


def test_png_without_metadata_is_an_image_read_error(tmp_path):
    target = tmp_path / "plain.png"
    image().save(target)
    with pytest.raises(ImageReadError, match="carries no generation settings"):
        read_request(target)


def test_non_png_images_and_other_files_are_image_read_errors(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    image().save(jpeg, format="JPEG")
    with pytest.raises(ImageReadError, match="JPEG"):
        read_request(jpeg)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageReadError, match="not an image"):
        read_request(text)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_request(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_request(tmp_path)


def test_corrupt_pngs_are_image_read_errors(tmp_path):
    good = write_png(image((64, 64)), GenerationRequest("p"), tmp_path / "good.png")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: data.index(b"IDAT") + 20])
    with pytest.raises(ImageReadError, match="damaged"):
        read_request(truncated)
    flipped = bytearray(data)
    at = data.index(b"IDAT") + 10
    flipped[at] ^= 0xFF
    bad_checksum = tmp_path / "flipped.png"
    bad_checksum.write_bytes(bytes(flipped))
    with pytest.raises(ImageReadError, match="damaged"):
        read_request(bad_checksum)


def test_unreadable_parameters_text_is_an_image_read_error(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, "p\nSteps: lots, Sampler: Euler, CFG scale: 7")
    target = tmp_path / "a.png"
    image().save(target, pnginfo=info)
    with pytest.raises(ImageReadError, match="Steps: lots"):
        read_request(target)


# -- file names --------------------------------------------------------------------------------


def test_default_pattern_first_file(tmp_path):
    request = GenerationRequest("A cat, sitting on a mat (masterpiece:1.2)", seed=123)
    path = next_free_path(tmp_path, DEFAULT_FILE_PATTERN, request, now=NOW)
    assert path == tmp_path / "2024-05-17-00001-123-A_cat_sitting_on_a_mat_masterpiece_1_2.png"


def test_index_continues_after_the_highest_existing_one(tmp_path):
    for name in (
        "2024-05-01-00007-1-old.png",
        "2023-12-31-00012-99-older-1.png",  # a collision copy still counts
        "2024-05-02-00500-notes.txt",  # not a PNG of this pattern
        "holiday.png",
    ):
        (tmp_path / name).write_bytes(b"")
    path = next_free_path(tmp_path, DEFAULT_FILE_PATTERN, GenerationRequest("new", seed=5), now=NOW)
    assert path.name == "2024-05-17-00013-5-new.png"


def test_explicit_index_and_collisions_get_numbered_suffixes(tmp_path):
    request = GenerationRequest("dog", seed=1)
    first = next_free_path(tmp_path, DEFAULT_FILE_PATTERN, request, index=3, now=NOW)
    assert first.name == "2024-05-17-00003-1-dog.png"
    first.write_bytes(b"")
    second = next_free_path(tmp_path, DEFAULT_FILE_PATTERN, request, index=3, now=NOW)
    assert second.name == "2024-05-17-00003-1-dog-1.png"
    second.write_bytes(b"")
    third = next_free_path(tmp_path, DEFAULT_FILE_PATTERN, request, index=3, now=NOW)
    assert third.name == "2024-05-17-00003-1-dog-2.png"


def test_pattern_without_index_never_returns_an_existing_file(tmp_path):
    request = GenerationRequest("x", seed=8, steps=25, sampler="DPM++ 2M Karras")
    pattern = "{date}_{time}-{sampler}-{steps}-{seed}"
    path = next_free_path(tmp_path, pattern, request, now=NOW)
    assert path.name == "2024-05-17_09-08-07-DPM_2M_Karras-25-8.png"
    path.write_bytes(b"")
    assert next_free_path(tmp_path, pattern, request, now=NOW).name == (
        "2024-05-17_09-08-07-DPM_2M_Karras-25-8-1.png"
    )


def test_plain_index_pattern_counts_up(tmp_path):
    for n in (1, 2, 9):
        (tmp_path / f"{n}.png").write_bytes(b"")
    assert next_free_path(tmp_path, "{index}.png", GenerationRequest("p")).name == "10.png"


def test_prompt_in_file_names_is_short_and_safe():
    long_prompt = 'a "very" long prompt, with/slashes\\and:colons?, ' * 5
    part = file_name_part(long_prompt)
    assert len(part) <= 40
    assert part.startswith("a_very_long_prompt_with_slashes_and")
    assert all(c.isalnum() or c in "-_" for c in part)
    assert file_name_part("雪の中の犬, winter") == "雪の中の犬_winter"
    assert file_name_part("(((  )))") == ""


def test_empty_prompt_and_unseeded_request_still_give_a_name(tmp_path):
    path = next_free_path(tmp_path, DEFAULT_FILE_PATTERN, GenerationRequest("!!!"), now=NOW)
    assert path.name == "2024-05-17-00001-random-untitled.png"


def test_windows_reserved_names_are_avoided(tmp_path):
    assert next_free_path(tmp_path, "{prompt}", GenerationRequest("con")).name == "con_image.png"


@pytest.mark.parametrize("pattern", ["{prompt}/{seed}.png", "{width}.png", "{seed", "{}.png"])
def test_bad_patterns_are_export_errors(tmp_path, pattern):
    with pytest.raises(ExportError):
        next_free_path(tmp_path, pattern, GenerationRequest("p", seed=1), now=NOW)


@pytest.mark.parametrize(
    ("prompt", "negative"),
    [
        ("a cat\nNegative prompt: evil", ""),
        ("a cat\r\n  Negative prompt: evil", "blur"),
        ("Negative prompt: evil", ""),
        ("a cat\nSteps: 1, Sampler: DDIM, CFG scale: 1, Seed: 5", ""),
        ("a cat", "blur\nSteps: 2, Sampler: DDIM, CFG scale: 1, Seed: 5"),
        ("a cat\rSteps: 1, Sampler: DDIM, CFG scale: 1", "x\nNegative prompt: y"),
    ],
)
def test_prompt_lines_that_look_like_structure_cannot_forge_the_settings_text(prompt, negative):
    request = GenerationRequest(prompt, negative_prompt=negative, seed=7, steps=12)
    text = format_parameters(request)
    parsed = parse_parameters(text)
    # The reader of the text gets the same words (the text encoder lower-cases everything) and
    # never a forged negative prompt or settings.
    assert parsed.prompt.lower() == prompt.lower().replace("\r\n", "\n").replace("\r", "\n")
    assert parsed.negative_prompt.lower() == negative.lower()
    assert (parsed.steps, parsed.seed, parsed.sampler) == (12, 7, "Euler")
    settings_lines = [line for line in text.splitlines() if line.startswith("Steps:")]
    assert settings_lines == [text.splitlines()[-1]]
    assert sum(line.lstrip().startswith("Negative prompt:") for line in text.splitlines()) == (
        1 if negative else 0
    )


def test_png_with_a_forged_prompt_reads_back_from_json_without_warnings(tmp_path):
    request = GenerationRequest(
        "a cat\nNegative prompt: evil\nSteps: 1, Sampler: DDIM, CFG scale: 1"
    )
    metadata = read_metadata(write_png(image(), request, tmp_path / "a.png"))
    assert metadata.request == request
    assert metadata.warnings == ()


def test_chunks_that_disagree_are_reported_and_the_json_wins(tmp_path):
    request = GenerationRequest("a cat", seed=1, steps=20)
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, "a dog\nSteps: 50, Sampler: Euler, CFG scale: 7, Seed: 1")
    info.add_text(METADATA_KEY, json.dumps({"version": 1, "request": request.to_dict()}))
    target = tmp_path / "edited.png"
    image().save(target, pnginfo=info)
    metadata = read_metadata(target)
    assert metadata.request == request
    (warning,) = metadata.warnings
    assert "differs from its complete settings in prompt, steps" in warning


def test_json_with_wrong_types_is_reported_and_the_text_is_read(tmp_path):
    bad = GenerationRequest("a cat", seed=1).to_dict() | {"steps": "abc"}
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, "a cat\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: 1")
    info.add_text(METADATA_KEY, json.dumps({"version": 1, "request": bad}))
    target = tmp_path / "typed.png"
    image().save(target, pnginfo=info)
    metadata = read_metadata(target)
    assert not metadata.from_json and metadata.request.steps == 5
    assert "damaged (Steps must be a whole number" in metadata.warnings[0]
    only_json = tmp_path / "only-json.png"
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps({"version": 1, "request": bad}))
    image().save(only_json, pnginfo=info)
    with pytest.raises(ImageReadError, match="Steps must be a whole number"):
        read_request(only_json)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{index}\0.png", "control character"),
        ("a\nb.png", "control character"),
        ("{index:0>4000}.png", "wider than 40"),
        ("{index:,>999999999}.png", "wider than 40"),
        ("{index:{seed}}.png", "nested field"),
        ("{prompt}" * 6 + ".png", "names of"),
        ("x" * 600, "longer than 500"),
        ("   ", "empty"),
        ("{index.real}.png", "Unknown field"),
        ("{prompt!z}.png", "cannot be filled in"),
        ("{seed:d}.png", "cannot be filled in"),
    ],
)
def test_file_name_patterns_that_cannot_give_a_name_are_refused_when_set(pattern, message):
    with pytest.raises(ExportError, match=message):
        check_file_pattern(pattern)
    with pytest.raises(ExportError):
        next_free_path("/nonexistent", pattern, GenerationRequest("p", seed=1), now=NOW)


def test_usual_patterns_pass_the_check():
    for pattern in (DEFAULT_FILE_PATTERN, "{index}", "{date}_{time}_{sampler}_{steps}_{seed}.png",
                    "{index:04d}-{prompt:.10}.png"):  # fmt: skip
        check_file_pattern(pattern)


def test_a_nul_in_the_target_path_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="NUL"):
        write_png(image(), GenerationRequest("p"), tmp_path / "a\0b.png")


def test_read_only_file_system_reports_the_write_not_the_temp_cleanup(tmp_path, monkeypatch):
    import errno

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    monkeypatch.setattr(export.os, "open", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)  # a read-only file system refuses this too
    with pytest.raises(ExportError) as caught:
        write_png(image(), GenerationRequest("p"), tmp_path / "out.png")
    message = str(caught.value)
    assert message == f"Could not write {tmp_path / 'out.png'}: Read-only file system."
    assert ".tmp" not in message


def test_stale_temp_files_of_this_app_are_swept_and_nothing_else(tmp_path):
    def touch(name: str, age: float) -> Path:
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (NOW_TS - age, NOW_TS - age))
        return path

    stale = touch(".diffusion-studio-0a1b2c3d-2024-05-17-00001-1-cat.tmp", 7200)
    earlier = touch(".2024-05-17-00002-1-cat.deadbeef.tmp", 7200)
    fresh = touch(".diffusion-studio-0a1b2c3e-cat.tmp", 60)  # maybe being written right now
    others = [touch(name, 7200) for name in ("notes.tmp", ".cache.tmp", "cat.png", ".hidden")]
    (tmp_path / ".diffusion-studio-00000000-dir.tmp").mkdir()

    assert sorted(sweep_stale_temp_files(tmp_path, now=NOW_TS)) == sorted([stale, earlier])
    assert not stale.exists() and not earlier.exists()
    assert fresh.exists() and all(p.exists() for p in others)
    assert sweep_stale_temp_files(tmp_path / "missing", now=NOW_TS) == []


def test_a_killed_write_leaves_a_temp_file_the_next_sweep_removes(tmp_path):
    import subprocess

    target = tmp_path / "big.png"
    script = (
        "import os, signal, sys\n"
        "from pipelines.export import write_atomically\n"
        "def save(handle):\n"
        "    handle.write(b'x' * 1000)\n"
        "    handle.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"write_atomically({str(target)!r}, save)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".diffusion-studio-") and not target.exists()
    assert sweep_stale_temp_files(tmp_path, now=left.stat().st_mtime + 3601) == [left]
    assert list(tmp_path.iterdir()) == []


def test_metadata_is_limited_to_what_readers_take_and_a_longest_prompt_fits(tmp_path):
    longest = GenerationRequest("ü" * 10_000, negative_prompt="x" * 10_000, seed=1)
    assert read_request(write_png(image(), longest, tmp_path / "long.png")) == longest
    with pytest.raises(ExportError, match="at most 524,288 can be stored"):
        write_png(image(), longest, tmp_path / "huge.png", extra={"log": "x" * 600_000})
    assert not (tmp_path / "huge.png").exists()


@pytest.mark.parametrize(
    ("line", "named"),
    [("Steps: 99999", "Steps"), ("Size: 99999999x64", "Width"), ("CFG scale: 1e9", "CFG")],
)
def test_settings_text_out_of_range_is_refused_whole_when_read(tmp_path, line, named):
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, f"a cat\n{line}, Sampler: Euler, Seed: 1, Model: m")
    target = tmp_path / "a1111.png"
    image().save(target, pnginfo=info)
    with pytest.raises(ImageReadError, match=f"cannot be read: {named}"):
        read_request(target)
