"""The Python API under wrong types and ranges: a ``StudioError`` whose message names the field,
and an engine that runs the next good request as if nothing happened."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from pipelines.errors import StudioError
from pipelines.types import ControlKind, ControlUnit, GenerationRequest, MemoryOptions
from tests.robustness.cases import case

REQUEST_CASES = [
    # seed
    case({"seed": 1.5}, "seed", id="seed-fraction"),
    case({"seed": "42"}, "seed", id="seed-text"),
    case({"seed": True}, "seed", id="seed-bool"),
    case({"seed": -1}, "seed", id="seed-negative"),
    case({"seed": 2**32}, "seed", id="seed-2-to-32"),
    case({"seed": math.nan}, "seed", id="seed-nan"),
    # cfg
    case({"cfg_scale": "7"}, "cfg", id="cfg-text"),
    case({"cfg_scale": None}, "cfg", id="cfg-none"),
    case({"cfg_scale": math.nan}, "cfg", id="cfg-nan"),
    case({"cfg_scale": math.inf}, "cfg", id="cfg-inf"),
    case({"cfg_scale": -math.inf}, "cfg", id="cfg-minus-inf"),
    case({"cfg_scale": -1.0}, "cfg", id="cfg-negative"),
    case({"cfg_scale": 31}, "cfg", id="cfg-31"),
    case({"cfg_scale": [7]}, "cfg", id="cfg-list"),
    # prompt
    case({"prompt": None}, "prompt", id="prompt-none"),
    case({"prompt": 12345}, "prompt", id="prompt-number"),
    case({"prompt": b"bytes"}, "prompt", id="prompt-bytes"),
    case({"prompt": ["a", "b"]}, "prompt", id="prompt-list"),
    case({"negative_prompt": None}, "negative", id="negative-none"),
    case({"negative_prompt": 5}, "negative", id="negative-number"),
    case({"prompt": "x" * 10_001}, "prompt", id="prompt-10001-characters"),
    case({"prompt": "x" * 10_000_000}, "prompt", id="prompt-10-mb"),
    case({"negative_prompt": "x" * 10_001}, "negative", id="negative-10001-characters"),
    # steps
    case({"steps": True}, "steps", id="steps-bool"),
    case({"steps": 1.5}, "steps", id="steps-fraction"),
    case({"steps": "20"}, "steps", id="steps-text"),
    case({"steps": 0}, "steps", id="steps-zero"),
    case({"steps": 201}, "steps", id="steps-201"),
    case({"steps": None}, "steps", id="steps-none"),
    case({"steps": math.nan}, "steps", id="steps-nan"),
    # sizes
    case({"width": 1e12}, "width", id="width-1e12"),
    case({"width": 64.5}, "width", id="width-fraction"),
    case({"width": 64.0}, "width", id="width-float"),
    case({"width": "64"}, "width", id="width-text"),
    case({"width": -64}, "width", id="width-negative"),
    case({"width": 0}, "width", id="width-zero"),
    case({"width": 100}, "width", id="width-not-multiple-of-8"),
    case({"width": True}, "width", id="width-bool"),
    case({"width": math.nan}, "width", id="width-nan"),
    case({"width": math.inf}, "width", id="width-inf"),
    case({"height": 1e12}, "height", id="height-1e12"),
    case({"height": "64"}, "height", id="height-text"),
    case({"height": -8}, "height", id="height-negative"),
    # sampler, model, options
    case({"sampler": 5}, "sampler", id="sampler-number"),
    case({"sampler": None}, "sampler", id="sampler-none"),
    case({"sampler": ""}, "sampler", id="sampler-empty"),
    case({"sampler": "Nope"}, "sampler", id="sampler-unknown"),
    case({"model": 5}, "model", id="model-number"),
    case({"model": "/nonexistent/model.safetensors"}, "model", id="model-missing"),
    case({"memory": None}, "memory", id="memory-none"),
    case({"preview": "hologram"}, "preview", id="preview-unknown"),
    case({"controls": "canny"}, "control", id="controls-text"),
    case({"controls": (5,)}, "control", id="controls-not-units"),
]

GOOD_UNIT = dict(kind=ControlKind.CANNY, model="{cn}", image="{map}")
UNIT_CASES = [
    case({"strength": math.nan}, "strength", id="unit-strength-nan"),
    case({"strength": "1"}, "strength", id="unit-strength-text"),
    case({"strength": -1.0}, "strength", id="unit-strength-negative"),
    case({"strength": 3.0}, "strength", id="unit-strength-3"),
    case({"start": 0.5, "end": 0.5}, "start", id="unit-start-equals-end"),
    case({"start": math.nan}, "start", id="unit-start-nan"),
    case({"end": 2.0}, "end", id="unit-end-2"),
    case({"canny_low": -1}, "canny", id="unit-canny-low-negative"),
    case({"canny_high": 300}, "canny", id="unit-canny-high-300"),
    case({"canny_low": 150, "canny_high": 100}, "canny", id="unit-canny-low-above-high"),
    case({"canny_low": "100"}, "canny", id="unit-canny-text"),
    case({"kind": "canny"}, "kind", id="unit-kind-text"),
    case({"model": ""}, "controlnet", id="unit-no-model"),
    case({"image": None}, "image", id="unit-no-image"),
    case({"image": 5}, "image", id="unit-image-number"),
    case({"image": "/nonexistent/map.png"}, "map.png", id="unit-image-missing"),
    case({"model": "/nonexistent/cn"}, "controlnet", id="unit-controlnet-missing"),
    case({"resize_mode": "squash"}, "resize", id="unit-resize-unknown"),
]

FROM_DICT_CASES = [
    case({}, "prompt", id="dict-empty"),
    case({"prompt": None}, "prompt", id="dict-prompt-none"),
    case({"prompt": "x", "controls": 5}, "control", id="dict-controls-number"),
    case({"prompt": "x", "controls": [5]}, "control", id="dict-controls-not-objects"),
    case({"prompt": "x", "controls": [{"kind": "laser"}]}, "laser", id="dict-control-kind"),
    case({"prompt": "x", "controls": [{"model": "m"}]}, "kind", id="dict-control-no-kind"),
    case({"prompt": "x", "memory": [1, 2]}, "memory", id="dict-memory-list"),
    case({"prompt": "x", "memory": {"cpu_offload": "yes"}}, "memory", id="dict-memory-text"),
    case({"prompt": "x", "preview": "hologram"}, "preview", id="dict-preview-unknown"),
    case({"prompt": "x", "steps": "abc"}, "steps", id="dict-steps-text"),
    case({"prompt": "x", "width": 1e12}, "width", id="dict-width-1e12"),
    case({"prompt": "x", "sampler": 5}, "sampler", id="dict-sampler-number"),
    case({"prompt": 12345}, "prompt", id="dict-prompt-number"),
]  # fmt: skip


@pytest.fixture
def good(sd1_folder):
    return GenerationRequest(prompt="a red circle", model=str(sd1_folder), steps=1, width=64,
                             height=64, seed=1)  # fmt: skip


def assert_still_usable(engine, good) -> None:
    result = engine.run(good)
    assert result.image is not None and result.image.size == (64, 64)
    assert not result.cancelled


def assert_names(error: Exception, word: str) -> None:
    assert isinstance(error, StudioError), f"{type(error).__name__}: {error}"
    assert word.lower() in str(error).lower(), str(error)


@pytest.mark.parametrize(("change", "word"), REQUEST_CASES)
def test_bad_request_field(engine, good, change, word):
    bad = replace(good, **change)
    with pytest.raises(Exception) as raised:
        bad.validate()
        engine.run(bad)  # what validate() let through must still fail cleanly in the run
    assert_names(raised.value, word)
    assert_still_usable(engine, good)


@pytest.mark.parametrize(("change", "word"), UNIT_CASES)
def test_bad_control_unit(engine, good, controlnet_sd1_folder, condition_image, change, word):
    names = {"cn": controlnet_sd1_folder, "map": condition_image}
    values = {k: v.format(**names) if isinstance(v, str) else v for k, v in GOOD_UNIT.items()}
    bad = replace(good, controls=(ControlUnit(**{**values, **change}),))
    with pytest.raises(Exception) as raised:
        bad.validate()
        engine.run(bad)
    assert_names(raised.value, word)
    assert_still_usable(engine, good)


def test_four_active_units_are_refused(engine, good, controlnet_sd1_folder, condition_image):
    unit = ControlUnit(ControlKind.CANNY, str(controlnet_sd1_folder), image=str(condition_image))
    with pytest.raises(StudioError, match="At most 3"):
        engine.run(replace(good, controls=(unit,) * 4))
    assert_still_usable(engine, good)


@pytest.mark.parametrize(("data", "word"), FROM_DICT_CASES)
def test_from_dict_bad_data(data, word):
    with pytest.raises(Exception) as raised:
        GenerationRequest.from_dict(data).validate()
    assert_names(raised.value, word)


@pytest.mark.parametrize(
    "data",
    [
        case(None, id="dict-none"),
        case([1, 2], id="dict-list"),
        case("prompt", id="dict-text"),
        case(42, id="dict-number"),
    ],
)
def test_from_dict_not_a_mapping(data):
    with pytest.raises(Exception) as raised:
        GenerationRequest.from_dict(data)
    assert isinstance(raised.value, StudioError), repr(raised.value)


def test_memory_options_survive_a_failed_run(engine, good):
    with pytest.raises(StudioError):
        engine.run(replace(good, steps=0, memory=MemoryOptions(attention_slicing=True)))
    assert_still_usable(engine, good)
