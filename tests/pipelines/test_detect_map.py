"""detect_map: the one way a photo becomes a condition map, shared by runs and the editor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines import conditions
from pipelines.conditions import (
    PosePerson,
    detect_map,
    detection_resolution,
    prepare_condition,
    render_pose,
)
from pipelines.errors import ValidationError
from pipelines.types import ControlKind, ControlUnit, ResizeMode


def _photo(path=None, size=(120, 60)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 10, 70, 50), fill=(40, 40, 160))
    draw.ellipse((80, 5, 110, 55), fill=(200, 40, 40))
    if path is not None:
        image.save(path)
    return image


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_canny_is_found_on_the_scaled_picture_before_letterboxing(mode):
    detected = detect_map(ControlKind.CANNY, _photo(), 64, 64, mode, canny=(200, 100))
    edges = np.asarray(detected.image)
    assert detected.image.size == (64, 64) and detected.people == ()
    assert edges.any()
    if mode is ResizeMode.FIT:  # 2:1 into a square: bars of 16 rows, and no edge at their border
        assert not edges[:17].any() and not edges[-17:].any()


def test_prepare_condition_is_detect_map_plus_rendering(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    _photo(path)
    canny = ControlUnit(ControlKind.CANNY, "cn", str(path), preprocess=True, canny_low=50,
                        canny_high=150, resize_mode=ResizeMode.CROP)  # fmt: skip
    expected = detect_map(ControlKind.CANNY, _photo(), 96, 64, "crop", canny=(50, 150)).image
    np.testing.assert_array_equal(np.asarray(prepare_condition(canny, 96, 64)), expected)

    found = [PosePerson([(60.0, 30.0), (60.0, 40.0)] + [None] * 16)]
    calls = []

    def fake_pose(image, folders, *, resolution, device):
        calls.append((image.size, resolution, device))
        return found

    monkeypatch.setattr(conditions, "detect_pose", fake_pose)
    pose = ControlUnit(ControlKind.POSE, "cn", str(path), preprocess=True)
    detected = detect_map(ControlKind.POSE, _photo(), 240, 240, "fit", device="cuda")
    # The photo (120x60) is fitted into 240x240: twice as large, 60 pixels down.
    assert detected.image is None and detected.people[0].keypoints[0] == (120.0, 120.0)
    assert calls == [((120, 60), detection_resolution(240, 240), "cuda")]
    rendered = prepare_condition(pose, 240, 240)
    np.testing.assert_array_equal(np.asarray(rendered),
                                  np.asarray(render_pose(detected.people, 240, 240)))  # fmt: skip


def test_depth_is_fitted_to_the_size_and_the_resolution_follows_it(monkeypatch):
    calls = []

    def fake_depth(image, folders, *, resolution, device):
        calls.append((list(folders), resolution))
        return Image.new("RGB", image.size, (200, 200, 200))

    monkeypatch.setattr(conditions, "detect_depth", fake_depth)
    detected = detect_map("depth", _photo(), 200, 150, "fit", ["/weights"])
    assert calls == [(["/weights"], 150)]
    depth = np.asarray(detected.image)
    assert detected.image.size == (200, 150)
    assert not depth[:25].any() and depth[75, 100, 0] == 200  # letterboxed: far above and below
    assert detection_resolution(2048, 1024) == 512 and detection_resolution(32, 40) == 64


def test_custom_maps_have_no_detector():
    with pytest.raises(ValidationError, match="No preprocessor"):
        detect_map(ControlKind.CUSTOM, _photo(), 64, 64)
    with pytest.raises(ValidationError):
        detect_map(ControlKind.CANNY, _photo(), 0, 64)
