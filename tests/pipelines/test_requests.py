"""A request refuses wrong types and ranges field by field, whether built in code or read back."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.errors import ValidationError
from pipelines.types import MAX_PROMPT_CHARS, ControlKind, ControlUnit, GenerationRequest

GOOD = GenerationRequest(prompt="a cat", seed=1, steps=4, width=64, height=64).to_dict()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("steps", "abc", "Steps"),
        ("steps", True, "Steps"),
        ("steps", 4.0, "Steps"),
        ("width", 1e12, "Width"),
        ("width", 10**12, "Width"),
        ("height", "64", "Height"),
        ("sampler", 5, "Sampler"),
        ("prompt", 12345, "prompt"),
        ("prompt", None, "prompt"),
        ("negative_prompt", ["x"], "negative prompt"),
        ("model", 3, "model"),
        ("seed", 1.5, "Seed"),
        ("seed", -1, "Seed"),
        ("cfg_scale", "7", "CFG scale"),
        ("cfg_scale", float("nan"), "CFG scale"),
        ("preview", "sharp", "Preview"),
        ("preview", ["full"], "Preview"),
        ("memory", [1], "Memory"),
        ("memory", {"cpu_offload": "yes"}, "cpu_offload"),
        ("controls", "canny", "Controls"),
        ("controls", [3], "control unit"),
        ("controls", [{"model": "m"}], "no kind"),
        ("controls", [{"kind": "laser", "model": "m"}], "kind"),
        ("controls", [{"kind": "canny", "model": "m", "strength": "1"}], "strength"),
        ("controls", [{"kind": "canny", "model": "m", "canny_low": 1.5}], "canny_low"),
        ("controls", [{"kind": "canny", "model": "m", "resize_mode": 7}], "resize mode"),
        ("controls", [{"kind": "canny", "model": "m", "enabled": "no"}], "enabled"),
        ("controls", [{"kind": "canny", "model": "m", "end": 9.0}], "end"),
    ],
)
def test_stored_request_with_a_wrong_field_is_refused_naming_it(field, value, named):
    with pytest.raises(ValidationError, match=named):
        GenerationRequest.from_dict({**GOOD, field: value})


@pytest.mark.parametrize("data", [None, [], "prompt", 5])
def test_stored_request_that_is_not_a_table_is_refused(data):
    with pytest.raises(ValidationError):
        GenerationRequest.from_dict(data)


def test_stored_request_round_trips_and_may_hold_an_unfinished_control_unit():
    unit = ControlUnit(ControlKind.CANNY, model="", image=None)  # being set up in the window
    request = GenerationRequest(prompt="a cat", seed=3, controls=(unit,))
    assert GenerationRequest.from_dict(request.to_dict()) == request


@pytest.mark.parametrize(
    "changes",
    [
        {"seed": 1.5},
        {"cfg_scale": "7"},
        {"prompt": None},
        {"steps": True},
        {"width": 64.0},
        {"sampler": None},
        {"controls": [ControlUnit(ControlKind.CANNY, "m", "i")]},
        {"prompt": "x" * (MAX_PROMPT_CHARS + 1)},
        {"negative_prompt": "x" * (MAX_PROMPT_CHARS + 1)},
    ],
)
def test_validate_refuses_wrong_types_not_only_wrong_values(changes):
    with pytest.raises(ValidationError):
        GenerationRequest(**{"prompt": "a cat", "steps": 4, **changes}).validate()


def test_numpy_numbers_count_as_numbers_and_long_prompts_say_the_limit():
    GenerationRequest(
        prompt="a", seed=np.int64(5), steps=np.int32(4), cfg_scale=np.float32(5)
    ).validate()
    with pytest.raises(ValidationError, match="at most 10,000"):
        GenerationRequest(prompt="x" * 10_001).validate()


@pytest.mark.parametrize(
    ("value", "snapped"),
    [
        (300, 304),
        (308, 312),
        (316, 320),
        (301, 304),
        (299.9, 296),
        (3, 64),
        (10**9, 4096),
        (4100, 4096),
    ],
)
def test_sizes_snap_to_the_nearest_multiple_of_8_halves_up_within_limits(value, snapped):
    from pipelines.types import snap_size

    assert snap_size(value) == snapped


def test_discovery_and_the_settings_text_read_a_controlnet_kind_by_one_rule():
    from pipelines import export, models
    from pipelines.types import guess_control_kind

    assert models.guess_control_kind is guess_control_kind
    for name, kind in (("control_v11p_sd15_openpose", ControlKind.POSE),
                       ("diffusers_xl_depth_full", ControlKind.DEPTH),
                       ("t2i-adapter_canny", ControlKind.CANNY), ("softedge_hed", None)):  # fmt: skip
        assert guess_control_kind(name) == kind
        assert export._kind_for(name) == (kind or ControlKind.CUSTOM)


def test_maps_and_settings_pngs_fail_to_open_with_the_same_messages(tmp_path):
    import os

    from pipelines.conditions import load_image
    from pipelines.errors import ImageReadError
    from pipelines.export import read_request

    (tmp_path / "folder.png").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    for name in ("missing.png", "folder.png", "text.png", "cut.png"):
        messages = []
        for read in (load_image, read_request):
            with pytest.raises(ImageReadError) as caught:
                read(tmp_path / name)
            messages.append(str(caught.value))
        assert messages[0] == messages[1] and str(tmp_path / name) in messages[0]
