from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import conditions
from pipelines.annotators import annotator_search_folders, find_annotator
from pipelines.conditions import (
    NUM_KEYPOINTS,
    POSE_PRESETS,
    PosePerson,
    canny_map,
    detect_depth,
    detect_pose,
    fit_pose_to_size,
    fit_to_size,
    load_image,
    pose_from_openpose_json,
    pose_to_openpose_json,
    prepare_condition,
    preset_pose,
    render_pose,
)
from pipelines.errors import ImageReadError, ModelFormatError, ValidationError, WeightsNotFoundError
from pipelines.types import ControlKind, ControlUnit, ResizeMode

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_annotator_places(tmp_path_factory, monkeypatch):
    # The default search places (HF cache, ~/stable-diffusion-webui, ~/ComfyUI) must not leak a
    # developer's real weights into the tests.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def _aux(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return __import__(name, fromlist=["_"])


def _textured(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.zeros((height, width), np.float64)
    base[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 180
    noisy = base + rng.normal(0, 25, size=base.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).convert("RGB")


def _person(seed: int = 0, hidden: tuple[int, ...] = (), width: int = 200, height: int = 150):
    rng = np.random.default_rng(seed)
    points = rng.uniform([10, 10], [width - 10, height - 10], size=(NUM_KEYPOINTS, 2))
    return PosePerson(
        [None if i in hidden else (float(x), float(y)) for i, (x, y) in enumerate(points)]
    )


# --- load_image -------------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="nowhere.png.*does not exist"):
        load_image(tmp_path / "nowhere.png")


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(ImageReadError, match="broken.png"):
        load_image(path)


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    _textured().save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(cut)


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.txt", b"just some text\n"), ("drawing.svg", b"<svg xmlns='x'><rect/></svg>")],
)
def test_unsupported_format(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=f"{name}.*supported format"):
        load_image(path)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="folder"):
        load_image(tmp_path)


def test_16_bit_png_is_min_max_normalised(tmp_path):
    depth = np.linspace(1000, 3000, 32 * 48).reshape(32, 48).astype(np.uint16)
    path = tmp_path / "depth16.png"
    Image.fromarray(depth).save(path)
    assert Image.open(path).mode.startswith("I")

    image = load_image(path)
    assert image.mode == "RGB" and image.size == (48, 32)
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8
    assert pixels.min() == 0 and pixels.max() == 255
    assert (pixels[..., 0] == pixels[..., 1]).all()
    assert (np.diff(pixels[..., 0].ravel().astype(int)) >= 0).all()  # order is kept


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, 4:, 3] = 255
    path = tmp_path / "pose.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = np.asarray(load_image(path))
    assert (pixels[:, :4] == 0).all() and (pixels[:, 4:] == 255).all()


# --- fit_to_size ------------------------------------------------------------------------------


def _red(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), (255, 0, 0))


@pytest.mark.parametrize("mode", list(ResizeMode))
@pytest.mark.parametrize(("src", "dst"), [((200, 100), (128, 128)), ((90, 160), (256, 128))])
def test_fit_gives_the_exact_size(mode, src, dst):
    out = fit_to_size(Image.new("L", src, 128), *dst, mode)
    assert out.size == dst and out.mode == "RGB"


def test_fit_letterboxes_on_black():
    out = np.asarray(fit_to_size(_red(200, 100), 128, 128, ResizeMode.FIT))
    # 200x100 scales to 128x64, centred: 32 black rows above and below.
    assert (out[:32] == 0).all() and (out[96:] == 0).all()
    assert (out[34:94, :, 0] > 250).all()


def test_crop_fills_and_keeps_the_centre():
    source = np.zeros((100, 300, 3), np.uint8)
    source[:, 100:200] = (0, 255, 0)  # only the middle third is green
    out = np.asarray(fit_to_size(Image.fromarray(source), 64, 64, ResizeMode.CROP))
    assert out.shape == (64, 64, 3)
    assert (out[:, 2:-2, 1] > 200).all() and (out[..., 0] < 30).all()


def test_stretch_ignores_the_aspect():
    out = np.asarray(fit_to_size(_red(200, 100), 64, 128, ResizeMode.STRETCH))
    assert out.shape == (128, 64, 3) and (out[..., 0] > 250).all()


def test_fit_rejects_a_bad_size():
    with pytest.raises(ValidationError):
        fit_to_size(_red(8, 8), 0, 64, ResizeMode.FIT)


# --- canny ------------------------------------------------------------------------------------


def test_canny_is_white_edges_on_black():
    edges = np.asarray(canny_map(_textured(), 100, 200))
    assert edges.shape == (64, 96, 3)
    assert set(np.unique(edges)) <= {0, 255}
    assert (edges[..., 0] == edges[..., 2]).all()


def test_lower_canny_thresholds_find_more_edges():
    image = _textured(seed=3)
    low = np.count_nonzero(np.asarray(canny_map(image, 20, 60)))
    high = np.count_nonzero(np.asarray(canny_map(image, 150, 250)))
    assert low > high > 0


def test_canny_preprocess_runs_at_generation_size_without_letterbox_edges(tmp_path):
    source = np.full((100, 200, 3), 200, np.uint8)
    source[30:70, 80:120] = 20  # one dark square on a light picture
    path = tmp_path / "photo.png"
    Image.fromarray(source).save(path)
    unit = ControlUnit(
        kind=ControlKind.CANNY, model="cn", image=str(path), preprocess=True, canny_low=50
    )
    out = np.asarray(prepare_condition(unit, 128, 128))
    assert out.shape == (128, 128, 3)
    assert np.count_nonzero(out) > 0
    # The picture spans rows 32..95; the light/black border there must not become an edge.
    assert not out[28:36].any() and not out[92:100].any()


def test_custom_maps_are_only_resized(tmp_path):
    path = tmp_path / "map.png"
    _red(32, 32).save(path)
    unit = ControlUnit(kind=ControlKind.CUSTOM, model="cn", image=str(path), preprocess=True)
    out = prepare_condition(unit, 64, 64)
    assert out.size == (64, 64) and np.asarray(out)[..., 0].min() > 250


def test_prepare_condition_without_image():
    unit = ControlUnit(kind=ControlKind.CANNY, model="cn")
    with pytest.raises(ValidationError):
        prepare_condition(unit, 64, 64)


# --- pose -------------------------------------------------------------------------------------


def test_pose_json_round_trip_in_pixels():
    people = [_person(1, hidden=(3, 16)), _person(2)]
    data = json.loads(json.dumps(pose_to_openpose_json(people, 200, 150)))
    assert data["canvas_width"] == 200 and len(data["people"][0]["pose_keypoints_2d"]) == 54
    assert data["people"][0]["pose_keypoints_2d"][3 * 3 + 2] == 0  # hidden joint: confidence 0

    back, width, height = pose_from_openpose_json(data)
    assert (width, height) == (200, 150)
    assert back == people


def test_pose_json_accepts_normalised_coordinates_and_text():
    person = _person(4, hidden=(0,))
    flat: list[float] = []
    for p in person.keypoints:
        flat.extend((0, 0, 0) if p is None else (p[0] / 200, p[1] / 150, 0.9))
    text = json.dumps(
        {"people": [{"pose_keypoints_2d": flat}], "canvas_width": 200, "canvas_height": 150}
    )

    (back,), _, _ = pose_from_openpose_json(text)
    assert back.keypoints[0] is None
    for got, want in zip(back.keypoints[1:], person.keypoints[1:], strict=True):
        assert got == pytest.approx(want)


def test_pose_json_reads_body25_and_needs_a_canvas_size():
    body25 = [[float(i), float(i) + 0.5, 1.0] for i in range(25)]
    data = {"people": [{"pose_keypoints_2d": [v for point in body25 for v in point]}]}
    with pytest.raises(ValidationError, match="canvas"):
        pose_from_openpose_json(data)
    (person,), width, height = pose_from_openpose_json(data, default_size=(512, 512))
    assert (width, height) == (512, 512)
    assert person.keypoints[7] == (7.0, 7.5)  # left wrist
    assert person.keypoints[8] == (9.0, 9.5)  # BODY_25's mid-hip (8) is skipped


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        b"\xff\xfe",
        [],
        {"persons": []},
        {"people": "nobody", "canvas_width": 64, "canvas_height": 64},
        {"people": [{"pose_keypoints_2d": [1, 2, 3]}], "canvas_width": 64, "canvas_height": 64},
        {"people": [{"pose_keypoints_2d": ["a"] * 54}], "canvas_width": 64, "canvas_height": 64},
        {"people": [{"face": []}], "canvas_width": 64, "canvas_height": 64},
        {"people": [], "canvas_width": -5, "canvas_height": 64},
        {"people": [], "canvas_width": "wide", "canvas_height": 64},
    ],
)
def test_malformed_pose_json_is_rejected(data):
    with pytest.raises(ValidationError):
        pose_from_openpose_json(data)


def _pose_with_first_point_at(value: float, people: int = 1) -> dict:
    points = [value, value, 1.0] + [10.0, 10.0, 1.0] * (NUM_KEYPOINTS - 1)
    person = {"pose_keypoints_2d": points}
    return {"people": [person] * people, "canvas_width": 64, "canvas_height": 64}


@pytest.mark.parametrize("value", [3e9, -3e9, 1e300, 2.0**31, 100_001.0])
def test_pose_json_coordinates_beyond_the_drawable_range_are_refused(value):
    with pytest.raises(ValidationError, match="keypoint at"):
        pose_from_openpose_json(_pose_with_first_point_at(value))
    with pytest.raises(ValidationError, match="keypoint at"):
        pose_from_openpose_json(json.dumps(_pose_with_first_point_at(value)))


def test_render_pose_refuses_keypoints_changed_to_wild_values_after_parsing():
    (person,), width, height = pose_from_openpose_json(_pose_with_first_point_at(5.0))
    person.keypoints[0] = (3e9, 3e9)  # the list stays mutable; OpenCV would abort the process
    with pytest.raises(ValidationError, match="Person 1 has a keypoint"):
        render_pose([person], width, height)
    with pytest.raises(ValidationError, match="keypoint at"):
        PosePerson([(1e300, 0.0)] * NUM_KEYPOINTS)


def test_pose_json_limits_people_canvas_size_depth_and_bytes(tmp_path):
    people, _, _ = pose_from_openpose_json(_pose_with_first_point_at(5.0, people=100))
    assert len(people) == 100
    with pytest.raises(ValidationError, match="101 people; at most 100"):
        pose_from_openpose_json(_pose_with_first_point_at(5.0, people=101))
    with pytest.raises(ValidationError, match="at most 100"):
        render_pose(people * 2, 64, 64)
    huge_canvas = {"people": [], "canvas_width": 10**12, "canvas_height": 64}
    with pytest.raises(ValidationError, match="at most 16384 pixels"):
        pose_from_openpose_json(huge_canvas)
    with pytest.raises(ValidationError, match="nested too deeply"):
        pose_from_openpose_json("[" * 100_000 + "]" * 100_000)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 10_000_001)
    with pytest.raises(ValidationError, match="larger than 10 MB"):
        pose_from_openpose_json(big)


def test_pose_person_needs_18_points():
    with pytest.raises(ValidationError, match="18"):
        PosePerson([(0.0, 0.0)] * 17)


def test_render_pose_matches_controlnet_aux_pixel_for_pixel():
    open_pose = _aux("controlnet_aux.open_pose")
    width, height = 200, 150
    people = [_person(5, hidden=(4, 10, 17)), _person(6, hidden=(0,))]

    # What OpenposeDetector.__call__ draws for detected bodies (relative coordinates).
    poses = [
        open_pose.PoseResult(
            open_pose.BodyResult(
                keypoints=[
                    None if p is None else open_pose.Keypoint(x=p[0] / width, y=p[1] / height)
                    for p in person.keypoints
                ],
                total_score=1.0,
                total_parts=NUM_KEYPOINTS,
            ),
            None,
            None,
            None,
        )
        for person in people
    ]
    expected = open_pose.draw_poses(poses, height, width, draw_hand=False, draw_face=False)

    rendered = render_pose(people, width, height)
    assert rendered.mode == "RGB" and rendered.size == (width, height)
    np.testing.assert_array_equal(np.asarray(rendered), expected)
    assert np.count_nonzero(expected) > 0


@pytest.mark.parametrize("name", ["standing", "walking", "sitting", "arms up"])
@pytest.mark.parametrize("size", [(512, 768), (768, 512)])
def test_presets_fill_the_canvas(name, size):
    width, height = size
    people = preset_pose(name, width, height)
    assert people and all(isinstance(p, PosePerson) for p in people)
    points = np.array([p for person in people for p in person.visible])
    assert (points >= 0).all() and (points[:, 0] <= width).all() and (points[:, 1] <= height).all()
    rendered = np.asarray(render_pose(people, width, height))
    assert rendered.shape == (height, width, 3)
    assert np.count_nonzero(rendered.any(axis=2)) > 0.01 * width * height


def test_presets_are_not_changed_by_use():
    before = [list(p.keypoints) for p in POSE_PRESETS["standing"]]
    preset_pose("standing", 64, 64)[0].keypoints[0] = None
    assert [list(p.keypoints) for p in POSE_PRESETS["standing"]] == before


def test_unknown_preset():
    with pytest.raises(ValidationError, match="standing"):
        preset_pose("cartwheel", 64, 64)


@pytest.mark.parametrize(
    ("mode", "corners"),
    [
        (ResizeMode.FIT, [(0, 32), (128, 96)]),
        (ResizeMode.CROP, [(-64, 0), (192, 128)]),
        (ResizeMode.STRETCH, [(0, 0), (128, 128)]),
    ],
)
def test_pose_keypoints_follow_the_resize_mode(mode, corners):
    person = PosePerson([(0.0, 0.0), (200.0, 100.0)] + [None] * (NUM_KEYPOINTS - 2))
    (moved,) = fit_pose_to_size([person], 200, 100, 128, 128, mode)
    assert moved.keypoints[:2] == [pytest.approx(c) for c in corners]


def test_importing_conditions_does_not_import_controlnet_aux():
    code = (
        "import sys, pipelines.conditions, pipelines.annotators; "
        "loaded = [m for m in ('controlnet_aux', 'torch', 'timm') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


# --- annotator folders ------------------------------------------------------------------------


def test_search_finds_hf_cache_webui_and_comfyui(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snapshot = cache / "models--lllyasviel--Annotators" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    webui = tmp_path / "stable-diffusion-webui"
    downloads = webui / "extensions/sd-webui-controlnet/annotator/downloads"
    (downloads / "openpose").mkdir(parents=True)
    (downloads / "midas").mkdir()
    comfy = tmp_path / "ComfyUI"
    comfy_ckpts = comfy / "custom_nodes/comfyui_controlnet_aux/ckpts/lllyasviel/Annotators"
    comfy_ckpts.mkdir(parents=True)
    direct = tmp_path / "my-weights"
    direct.mkdir()

    folders = annotator_search_folders([direct, webui, comfy, tmp_path / "missing"])
    assert folders[0] == direct
    for expected in (downloads / "openpose", downloads / "midas", comfy_ckpts, snapshot):
        assert expected in folders
    assert tmp_path / "missing" not in folders

    # HF_HOME alone (no HF_HUB_CACHE) points at <HF_HOME>/hub.
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert snapshot in annotator_search_folders()


def test_default_app_folders_in_home_are_searched(isolated_annotator_places):
    ckpts = isolated_annotator_places / "ComfyUI/custom_nodes/comfyui_controlnet_aux/ckpts"
    (ckpts / "lllyasviel/Annotators").mkdir(parents=True)
    assert ckpts / "lllyasviel/Annotators" in annotator_search_folders()


def test_find_annotator_looks_into_detector_subfolders(tmp_path):
    (tmp_path / "midas").mkdir()
    (tmp_path / "midas" / "dpt_hybrid-midas-501f0c75.pt").write_bytes(b"x")
    (tmp_path / "body_pose_model.pth").write_bytes(b"x")
    assert find_annotator("depth", [tmp_path]) == tmp_path / "midas"
    assert find_annotator("openpose", [tmp_path]) == tmp_path


def test_missing_weights_name_the_files_and_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(WeightsNotFoundError) as caught:
        find_annotator("openpose", [tmp_path / "a", tmp_path / "b"])
    message = str(caught.value)
    assert "body_pose_model.pth" in message
    assert str(tmp_path / "a") in message and str(tmp_path / "b") in message

    with pytest.raises(WeightsNotFoundError, match="dpt_hybrid-midas-501f0c75.pt"):
        detect_depth(_red(32, 32), [tmp_path / "a"])


# --- detectors with random weights -------------------------------------------------------------


def _save_half(state_dict, path: Path) -> None:
    import torch

    # Half precision halves the bytes written; load_state_dict copies into float32 parameters.
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}, path)


@pytest.fixture(scope="session")
def openpose_folder(tmp_path_factory) -> Path:
    import torch

    model_module = _aux("controlnet_aux.open_pose.model")
    torch.manual_seed(0)
    model = model_module.bodypose_model()
    folder = tmp_path_factory.mktemp("annotators") / "openpose"
    folder.mkdir()
    # The original checkpoint names its tensors without the top-level block prefix
    # ("conv1_1.weight" for "model0.conv1_1.weight"); controlnet-aux adds it back when loading.
    stripped = {key.split(".", 1)[1]: value for key, value in model.state_dict().items()}
    _save_half(stripped, folder / "body_pose_model.pth")
    return folder


@pytest.fixture(scope="session")
def midas_folder(tmp_path_factory) -> Path:
    import torch

    dpt = _aux("controlnet_aux.midas.midas.dpt_depth")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's notice about the backbone's renamed model id
        model = dpt.DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True)
    folder = tmp_path_factory.mktemp("annotators") / "midas"
    folder.mkdir()
    _save_half(model.state_dict(), folder / "dpt_hybrid-midas-501f0c75.pt")
    return folder


def test_detect_pose_runs_the_real_detector(openpose_folder):
    people = detect_pose(_textured(128, 96), [openpose_folder.parent])
    assert isinstance(people, list)
    for person in people:  # random weights: usually nobody, but any find must be well formed
        assert isinstance(person, PosePerson) and len(person.keypoints) == NUM_KEYPOINTS


def test_pose_preprocess_renders_at_the_generation_size(openpose_folder, tmp_path):
    path = tmp_path / "photo.png"
    _textured(120, 80).save(path)
    unit = ControlUnit(kind=ControlKind.POSE, model="cn", image=str(path), preprocess=True)
    out = prepare_condition(unit, 96, 64, [openpose_folder])
    assert out.size == (96, 64) and out.mode == "RGB"


def test_damaged_weights_are_a_format_error(tmp_path):
    (tmp_path / "body_pose_model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFormatError, match="body_pose_model.pth"):
        detect_pose(_red(32, 32), [tmp_path])


@pytest.mark.slow
def test_detect_depth_runs_the_real_detector(midas_folder, tmp_path):
    depth = detect_depth(_textured(100, 70), [midas_folder], resolution=128)
    assert depth.mode == "RGB" and depth.size == (100, 70)
    pixels = np.asarray(depth)
    assert (pixels[..., 0] == pixels[..., 1]).all()

    path = tmp_path / "photo.png"
    _textured(100, 70).save(path)
    unit = ControlUnit(kind=ControlKind.DEPTH, model="cn", image=str(path), preprocess=True)
    out = prepare_condition(unit, 64, 64, [midas_folder])
    assert out.size == (64, 64)
    assert not np.asarray(out)[:8].any()  # letterbox bars are black (far)


def test_detectors_are_cached_per_folder(openpose_folder):
    first = conditions._detector("openpose", [openpose_folder], "cpu")
    assert conditions._detector("openpose", [openpose_folder], "cpu") is first
    conditions.unload_detectors()
    assert conditions._detector("openpose", [openpose_folder], "cpu") is not first
