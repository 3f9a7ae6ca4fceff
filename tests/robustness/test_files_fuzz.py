"""Files the studio reads, damaged or hostile: the settings file, settings stored in PNGs, and pose
JSON. The promise: a clear message (or, for settings, the key's default with a note), never a
crash, and the good values around a bad one kept."""

from __future__ import annotations

import json

import pytest

from pipelines.conditions import pose_from_openpose_json, render_pose
from pipelines.errors import StudioError, ValidationError
from pipelines.export import read_request
from pipelines.types import MemoryOptions
from tests.robustness.cases import case

# ---- the settings file ---------------------------------------------------------------------

DEFAULTS = {
    "model_folders": [],
    "annotator_folders": [],
    "device": "auto",
    "precision": "auto",
    "allow_pickle": False,
    "memory": MemoryOptions(),
    "file_pattern": "{date}-{index:05d}-{seed}-{prompt}.png",
    "last_request": None,
    "random_seed": None,
    "comparison": (False, []),
}
DEEP = '"' + "[" * 100_000 + "]" * 100_000 + '"'

# (INI section, key, the value as written in the file, the property that reads it)
SETTINGS_CASES = [
    case("engine", "model_folders", "abc", "model_folders", id="model-folders-not-json"),
    case("engine", "model_folders", '"\\"/models\\""', "model_folders",
         id="model-folders-json-string"),
    case("engine", "model_folders", "5", "model_folders", id="model-folders-number"),
    case("engine", "model_folders", "/a, /b", "model_folders", id="model-folders-ini-list"),
    case("engine", "model_folders", '"[1, 2]"', "model_folders", id="model-folders-numbers"),
    case("engine", "model_folders", '"{}"', "model_folders", id="model-folders-object"),
    case("engine", "model_folders", DEEP, "model_folders", id="model-folders-deeply-nested"),
    case("engine", "annotator_folders", "abc", "annotator_folders", id="annotator-folders-text"),
    case("engine", "annotator_folders", '"[null]"', "annotator_folders",
         id="annotator-folders-null"),
    case("engine", "device", "gpu", "device", id="device-unknown"),
    case("engine", "device", "cpu, cuda", "device", id="device-ini-list"),
    case("engine", "device", "5", "device", id="device-number"),
    case("engine", "precision", "fp8", "precision", id="precision-unknown"),
    case("engine", "precision", "a, b", "precision", id="precision-ini-list"),
    case("engine", "allow_pickle", "maybe", "allow_pickle", id="allow-pickle-word"),
    case("engine", "allow_pickle", "true, false", "allow_pickle", id="allow-pickle-ini-list"),
    case("engine", "allow_pickle", "2", "allow_pickle", id="allow-pickle-number"),
    case("engine", "memory", '"[1, 2]"', "memory", id="memory-list"),
    case("engine", "memory", '"{\\"cpu_offload\\": \\"yes\\"}"', "memory", id="memory-text-flag"),
    case("engine", "memory", "5", "memory", id="memory-number"),
    case("engine", "memory", "{{{", "memory", id="memory-not-json"),
    case("engine", "memory", DEEP, "memory", id="memory-deeply-nested"),
    case("output", "pattern", "{nope}.png", "file_pattern", id="pattern-unknown-field"),
    case("output", "pattern", "{index:0>4000}.png", "file_pattern", id="pattern-4000-wide"),
    case("output", "pattern", "../{seed}.png", "file_pattern", id="pattern-path-escape"),
    case("output", "pattern", "{", "file_pattern", id="pattern-malformed"),
    case("output", "pattern", "a, b", "file_pattern", id="pattern-ini-list"),
    case("output", "pattern", "{index:{seed}}.png", "file_pattern", id="pattern-nested-field"),
    case("session", "last_request", "5", "last_request", id="last-request-number"),
    case("session", "last_request", '"[1, 2]"', "last_request", id="last-request-list"),
    case("session", "last_request", '"{\\"prompt\\": \\"x\\", \\"controls\\": 5}"',
         "last_request", id="last-request-controls-number"),
    case("session", "last_request", '"{\\"prompt\\": 12345}"', "last_request",
         id="last-request-prompt-number"),
    case("session", "last_request", '"{\\"prompt\\": \\"x\\", \\"steps\\": \\"abc\\"}"',
         "last_request", id="last-request-steps-text"),
    case("session", "last_request", DEEP, "last_request", id="last-request-deeply-nested"),
    case("session", "random_seed", "a, b", "random_seed", id="random-seed-ini-list"),
    case("session", "random_seed", "maybe", "random_seed", id="random-seed-word"),
    case("session", "comparison", '"[1]"', "comparison", id="comparison-list"),
    case("session", "comparison", '"{\\"mode\\": \\"yes\\", \\"samplers\\": []}"', "comparison",
         id="comparison-mode-text"),
    case("session", "comparison", '"{\\"samplers\\": 5}"', "comparison",
         id="comparison-samplers-number"),
]  # fmt: skip


def write_ini(path, sections: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ""
    for section, values in sections.items():
        text += f"[{section}]\n" + "".join(f"{k}={v}\n" for k, v in values.items()) + "\n"
    path.write_text(text)


def read_all(settings) -> dict:
    return {name: getattr(settings, name) for name in DEFAULTS}


@pytest.mark.parametrize(("section", "key", "raw", "name"), SETTINGS_CASES)
def test_settings_value_of_the_wrong_kind_falls_back_to_its_default(
    tmp_path, section, key, raw, name
):
    from studio.settings import StudioSettings

    # A good value beside the bad one must survive: the fallback is per key.
    neighbour = ("engine", "precision", "fp32") if name != "precision" else ("engine", "device",
                                                                            "cpu")  # fmt: skip
    sections = {section: {key: raw}}
    sections.setdefault(neighbour[0], {})[neighbour[1]] = neighbour[2]
    path = tmp_path / "studio.ini"
    write_ini(path, sections)
    settings = StudioSettings(path)
    values = read_all(settings)  # no getter raises
    settings.engine_config()
    assert values[name] == DEFAULTS[name]
    assert getattr(settings, neighbour[1]) == neighbour[2]
    assert any(f"{section}/{key}" in note for note in settings.notes), settings.notes


@pytest.mark.parametrize(
    ("pattern", "word"),
    [
        case("", "empty", id="set-pattern-empty"),
        case("a\0b.png", "control character", id="set-pattern-nul"),
        case("{index:0>4000}.png", "wider", id="set-pattern-4000-wide"),
        case("{nope}.png", "nope", id="set-pattern-unknown-field"),
        case("x/{seed}.png", "/", id="set-pattern-slash"),
        case("{" * 3, "malformed", id="set-pattern-braces"),
        case("w" * 300 + ".png", "bytes", id="set-pattern-too-long-a-name"),
    ],
)
def test_setting_a_bad_file_name_pattern_is_refused_and_the_old_one_kept(tmp_path, pattern, word):
    from studio.settings import StudioSettings

    settings = StudioSettings(tmp_path / "studio.ini")
    settings.file_pattern = "{seed}-{index}.png"
    with pytest.raises(StudioError) as raised:
        settings.file_pattern = pattern
    assert word.lower() in str(raised.value).lower(), str(raised.value)
    assert settings.file_pattern == "{seed}-{index}.png"


def test_output_folder_with_a_nul_falls_back(tmp_path):
    from PySide6.QtCore import QSettings

    from studio.settings import StudioSettings

    path = tmp_path / "studio.ini"
    raw = QSettings(str(path), QSettings.Format.IniFormat)
    raw.setValue("output/folder", "/tmp/a\0b")
    raw.sync()
    settings = StudioSettings(path)
    assert "\0" not in settings.output_folder
    assert any("output/folder" in note for note in settings.notes)


# ---- settings stored in PNGs ---------------------------------------------------------------

PNG_CASES = [
    case("meta-steps-text.png", "steps", id="png-json-steps-text"),
    case("meta-width-huge.png", "width", id="png-json-width-1e12"),
    case("meta-sampler-number.png", "sampler", id="png-json-sampler-number"),
    case("meta-prompt-number.png", "prompt", id="png-json-prompt-number"),
    case("meta-cfg-text.png", "cfg", id="png-json-cfg-text"),
    case("meta-seed-negative.png", "seed", id="png-json-seed-negative"),
    case("meta-seed-fraction.png", "seed", id="png-json-seed-fraction"),
    case("meta-steps-bool.png", "steps", id="png-json-steps-bool"),
    case("meta-controls-number.png", "control", id="png-json-controls-number"),
    case("meta-controls-unknown-kind.png", "laser", id="png-json-control-kind-unknown"),
    case("meta-controls-not-objects.png", "control", id="png-json-controls-not-objects"),
    case("meta-memory-list.png", "memory", id="png-json-memory-list"),
    case("meta-preview-unknown.png", "preview", id="png-json-preview-unknown"),
    case("meta-height-nan.png", "height", id="png-json-height-nan"),
    case("meta-nested.png", "meta-nested.png", id="png-json-deeply-nested"),
    case("meta-huge.png", "meta-huge.png", id="png-json-3mb-prompt"),
    case("meta-request-list.png", "meta-request-list.png", id="png-json-request-is-a-list"),
    case("meta-not-json.png", "meta-not-json.png", id="png-json-garbage"),
    case("meta-json-array.png", "meta-json-array.png", id="png-json-array"),
    case("meta-params-bad-steps.png", "Steps", id="png-parameters-steps-word"),
    case("meta-params-bad-size.png", "Size", id="png-parameters-size-word"),
    case("meta-params-empty.png", "meta-params-empty.png", id="png-parameters-blank"),
    case("nometa.png", "no generation settings", id="png-without-settings"),
    case("truncated.png", "truncated.png", id="png-truncated"),
    case("corrupt.png", "corrupt.png", id="png-corrupt"),
    case("bomb.png", "bomb.png", id="png-60000px-bomb"),
    case("photo.jpg", "PNG", id="jpeg-not-png"),
    case("folder.png", "folder", id="png-is-a-folder"),
]


@pytest.mark.parametrize(("name", "word"), PNG_CASES)
def test_reading_damaged_png_settings_says_what_is_wrong(bad_folder, name, word):
    with pytest.raises(StudioError) as raised:
        read_request(bad_folder / name).validate()
    assert word.lower() in str(raised.value).lower(), str(raised.value)


# ---- pose JSON -----------------------------------------------------------------------------


def body(x: float = 50.0, y: float = 50.0) -> list[float]:
    return [v for _ in range(18) for v in (x, y, 1.0)]


def pose(people, width=128, height=128) -> dict:
    return {"people": people, "canvas_width": width, "canvas_height": height}


POSE_CASES = [
    case(pose([{"pose_keypoints_2d": body(3e9)}]), "keypoint", id="pose-x-3e9"),
    case(pose([{"pose_keypoints_2d": body(1e300)}]), "keypoint", id="pose-x-1e300"),
    case(pose([{"pose_keypoints_2d": body(-3e9)}]), "keypoint", id="pose-x-minus-3e9"),
    case(pose([{"pose_keypoints_2d": body(50, 2.0**31)}]), "keypoint", id="pose-y-2-to-31"),
    case('{"people": [{"pose_keypoints_2d": [' + ", ".join(["NaN"] * 54) + "]}]}", "finite",
         id="pose-nan"),
    case('{"people": [{"pose_keypoints_2d": [' + ", ".join(["Infinity"] * 54) + "]}]}",
         "finite", id="pose-infinity"),
    case(pose([{"pose_keypoints_2d": body()}] * 101), "people", id="pose-101-people"),
    case(pose([{"pose_keypoints_2d": body()}] * 5_000), "people", id="pose-5000-people"),
    case("[" * 100_000 + "]" * 100_000, "nested", id="pose-deeply-nested"),
    case('{"people": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested",
         id="pose-people-deeply-nested"),
    case(pose("abc"), "people", id="pose-people-text"),
    case(pose([5]), "person 1", id="pose-person-number"),
    case(pose([{"pose_keypoints_2d": ["1"] * 54}]), "number", id="pose-keypoints-text"),
    case(pose([{"pose_keypoints_2d": [True] * 54}]), "number", id="pose-keypoints-bool"),
    case(pose([{"pose_keypoints_2d": [1, 2]}]), "keypoint values", id="pose-keypoints-2"),
    case(pose([{"pose_keypoints_2d": "1, 2, 3"}]), "pose_keypoints_2d", id="pose-keypoints-text-list"),
    case(pose([{"pose_keypoints_2d": body()}], width="abc"), "canvas", id="pose-canvas-text"),
    case(pose([{"pose_keypoints_2d": body()}], width=-5), "canvas", id="pose-canvas-negative"),
    case(pose([{"pose_keypoints_2d": body()}], width=1e12), "canvas", id="pose-canvas-1e12"),
    case(pose([{"pose_keypoints_2d": body()}], width=0), "canvas", id="pose-canvas-zero"),
    case("", "JSON", id="pose-empty-text"),
    case(b"\xff\xfe\x00garbage", "JSON", id="pose-binary"),
    case("5", "people", id="pose-number"),
    case("[]", "empty", id="pose-empty-list"),
    case({"people": None}, "people", id="pose-people-null"),
]  # fmt: skip


def as_input(data):
    return json.dumps(data) if isinstance(data, dict) else data


@pytest.mark.parametrize(("data", "word"), POSE_CASES)
def test_bad_pose_json_is_refused_with_a_message(data, word):
    with pytest.raises(ValidationError) as raised:
        people, width, height = pose_from_openpose_json(as_input(data), default_size=(64, 64))
        render_pose(people, width, height)  # anything accepted must also draw
    assert word.lower() in str(raised.value).lower(), str(raised.value)


def test_pose_file_larger_than_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(pose([{"pose_keypoints_2d": body()}] * 20)) + " " * 11_000_000)
    with pytest.raises(ValidationError, match="larger than"):
        pose_from_openpose_json(path)


@pytest.mark.parametrize(
    "people",
    [
        case([{"pose_keypoints_2d": body(-50, -50)}], id="pose-outside-canvas"),
        case([{"pose_keypoints_2d": body(99_999, 99_999)}], id="pose-far-but-within-limit"),
        case([{"pose_keypoints_2d": []}], id="pose-person-without-points"),
        case([{"pose_keypoints_2d": body()}] * 100, id="pose-100-people"),
    ],
)
def test_unusual_but_valid_pose_draws(people):
    found, width, height = pose_from_openpose_json(pose(people))
    image = render_pose(found, width, height)
    assert image.size == (128, 128)
