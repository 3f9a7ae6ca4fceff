"""The pose skeleton editor: controlnet-aux rendering, dragging, person edits, JSON, detection."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from pipelines.conditions import (
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    PosePerson,
    pose_to_openpose_json,
    preset_pose,
    render_pose,
)
from pipelines.errors import ValidationError
from pipelines.types import ControlKind, ControlUnit
from studio.widgets.condition_editor import ConditionEditor
from studio.widgets.map_store import pose_sidecar
from studio.widgets.pose_editor import mirrored, person_centre
from tests.studio.test_condition_editor import drag, open_editor, photo

W, H = 160, 120


pytestmark = pytest.mark.usefixtures("no_user_annotators", "pose_renderer_imported")


@pytest.fixture
def make_editor(qtbot, tmp_path):
    def make(width=W, height=H, **kwargs) -> ConditionEditor:
        return open_editor(qtbot, tmp_path / "maps", ControlKind.POSE, width, height, **kwargs)

    return make


def _aux(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return __import__(name, fromlist=["_"])


def person(seed: int, hidden=(), width=W, height=H) -> PosePerson:
    rng = np.random.default_rng(seed)
    points = rng.uniform([10, 10], [width - 10, height - 10], size=(NUM_KEYPOINTS, 2))
    return PosePerson([None if i in hidden else (float(x), float(y))
                       for i, (x, y) in enumerate(points)])  # fmt: skip


def flat(points) -> list[float]:
    return [v for p in points for v in (p if p is not None else (-1.0, -1.0))]


def keypoints(editor) -> list[list]:
    return [list(p.keypoints) for p in editor.pose.people]


def test_the_map_is_controlnet_aux_own_rendering_pixel_for_pixel(make_editor):
    open_pose = _aux("controlnet_aux.open_pose")
    editor = make_editor()
    people = [person(1, hidden=(3, 15)), person(2, hidden=(0,))]
    editor.pose.set_people(people, "test")

    poses = [
        open_pose.PoseResult(
            open_pose.BodyResult(
                keypoints=[
                    None if p is None else open_pose.Keypoint(x=p[0] / W, y=p[1] / H)
                    for p in body.keypoints
                ],  # fmt: skip
                total_score=1.0,
                total_parts=NUM_KEYPOINTS,
            ),
            None,
            None,
            None,
        )
        for body in people
    ]
    expected = open_pose.draw_poses(poses, H, W, draw_hand=False, draw_face=False)
    np.testing.assert_array_equal(editor.document.array(), expected)
    assert np.count_nonzero(expected) > 0


def test_dragging_a_joint_moves_it_and_undo_puts_it_back(qtbot, make_editor):
    editor = make_editor()
    editor.pose.apply_preset("standing")
    before = keypoints(editor)
    wrist = editor.pose.people[0].keypoints[4]
    target = (wrist[0] - 20, wrist[1] + 10)
    drag(qtbot, editor.view, (wrist[0] - 0.5, wrist[1] - 0.5), (target[0] - 0.5, target[1] - 0.5))

    moved = editor.pose.people[0].keypoints[4]
    tolerance = 1 / editor.view.zoom + 1e-6  # one screen pixel
    assert abs(moved[0] - target[0]) <= tolerance and abs(moved[1] - target[1]) <= tolerance
    assert keypoints(editor)[0][:4] == before[0][:4]  # only that joint moved
    assert editor.pose.selected == 0 and editor.pose.selected_joint == 4
    np.testing.assert_array_equal(editor.document.array(),
                                  np.asarray(render_pose(editor.pose.people, W, H)))  # fmt: skip
    assert editor.document.undo_stack.count() == 2  # preset, one drag

    editor.undo_action.trigger()
    assert keypoints(editor) == before
    np.testing.assert_array_equal(editor.document.array(),
                                  np.asarray(render_pose(editor.pose.people, W, H)))  # fmt: skip


def test_shift_drag_moves_the_person_and_right_click_hides_a_joint(qtbot, make_editor):
    editor = make_editor()
    editor.pose.apply_preset("standing")
    before = editor.pose.people[0]
    neck = before.keypoints[1]
    drag(qtbot, editor.view, (neck[0] - 0.5, neck[1] - 0.5), (neck[0] + 9.5, neck[1] - 0.5),
         modifier=Qt.KeyboardModifier.ShiftModifier)  # fmt: skip
    after = editor.pose.people[0]
    shifts = {round(a[0] - b[0], 3) for a, b in zip(after.keypoints, before.keypoints)}
    assert len(shifts) == 1 and abs(shifts.pop() - 10) <= 1 / editor.view.zoom + 1e-6

    elbow = after.keypoints[3]
    qtbot.mouseClick(editor.view, Qt.MouseButton.RightButton,
                     pos=editor.view.from_map(QPointF(*elbow)).toPoint())  # fmt: skip
    assert editor.pose.people[0].keypoints[3] is None
    item = editor.pose_panel.joints.item(3)
    assert item.text() == KEYPOINT_NAMES[3] and item.checkState() == Qt.CheckState.Unchecked
    item.setCheckState(Qt.CheckState.Checked)  # shown again from the list
    assert editor.pose.people[0].keypoints[3] is not None


def test_people_buttons_add_remove_duplicate_mirror_scale_and_presets(qtbot, make_editor):
    editor = make_editor()
    panel = editor.pose_panel
    click = lambda button: qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # noqa: E731
    assert not panel.remove.isEnabled()
    click(panel.add)
    click(panel.add)
    assert len(editor.pose.people) == 2 and editor.pose.selected == 1
    assert editor.pose.people[0].keypoints != editor.pose.people[1].keypoints  # side by side
    click(panel.duplicate)
    assert len(editor.pose.people) == 3
    dx = {round(a[0] - b[0], 6) for a, b in zip(editor.pose.people[2].keypoints,
                                                 editor.pose.people[1].keypoints)}  # fmt: skip
    assert dx == {round(W * 0.08, 6)}
    click(panel.remove)
    assert len(editor.pose.people) == 2

    editor.pose.select(0)
    original = editor.pose.people[0]
    click(panel.mirror)
    flipped = editor.pose.people[0]
    centre = person_centre(original)
    # The person's right wrist is now where the left one was, reflected about the centre.
    assert flipped.keypoints[4][0] == pytest.approx(2 * centre.x() - original.keypoints[7][0])
    assert flipped.keypoints[4][1] == pytest.approx(original.keypoints[7][1])
    assert flat(mirrored(flipped).keypoints) == pytest.approx(flat(original.keypoints))

    height = lambda p: max(y for _, y in p.visible) - min(y for _, y in p.visible)  # noqa: E731
    click(panel.bigger)
    assert height(editor.pose.people[0]) == pytest.approx(height(flipped) * 1.1)
    assert person_centre(editor.pose.people[0]) == person_centre(flipped)
    click(panel.smaller)
    assert height(editor.pose.people[0]) == pytest.approx(height(flipped))

    for name in ("walking", "sitting", "arms up", "standing"):
        panel.preset.setCurrentText(name)
        click(panel.apply_preset)
        assert [p.keypoints for p in editor.pose.people] == [
            p.keypoints for p in preset_pose(name, W, H)
        ]
    steps = editor.document.undo_stack.count()
    editor.clear_action.trigger()
    assert editor.pose.people == [] and not editor.document.array().any()
    for _ in range(steps + 1):
        editor.undo_action.trigger()
    assert editor.pose.people == [] and editor.document.undo_stack.index() == 0


def test_openpose_json_round_trips_through_the_editor(make_editor, tmp_path):
    editor = make_editor()
    people = [person(3, hidden=(14, 16)), person(4)]
    editor.pose.set_people(people, "test")
    path = tmp_path / "pose.json"
    editor.pose.save_json(path)
    data = json.loads(path.read_text())
    assert data == pose_to_openpose_json(people, W, H)
    assert data["canvas_width"] == W and len(data["people"][0]["pose_keypoints_2d"]) == 54

    other = make_editor()
    assert other.import_file(path)
    assert keypoints(other) == [list(p.keypoints) for p in people]
    np.testing.assert_array_equal(other.document.array(), editor.document.array())

    # A JSON of another canvas size is fitted like a photo of that size.
    half = pose_to_openpose_json([p.transformed(0.5, 0.5) for p in people], W // 2, H // 2)
    other.pose.load_json(half)
    assert flat(keypoints(other)[0]) == pytest.approx(flat(people[0].keypoints))

    bad = tmp_path / "bad.json"
    bad.write_text('{"people": [{"pose_keypoints_2d": [1, 2]}]}')
    before = other.document.array()
    assert not other.import_file(bad)
    assert "keypoint" in other.message.text()
    np.testing.assert_array_equal(other.document.array(), before)


def test_an_imported_pose_image_stays_until_people_replace_it(make_editor, tmp_path):
    editor = make_editor()
    picture = np.zeros((H, W, 3), np.uint8)
    picture[40:60, 50:90] = (255, 0, 0)
    Image.fromarray(picture).save(tmp_path / "pose.png")
    assert editor.import_file(tmp_path / "pose.png")
    np.testing.assert_array_equal(editor.document.array(), picture)
    editor.pose.add_person()
    np.testing.assert_array_equal(editor.document.array(),
                                  np.asarray(render_pose(editor.pose.people, W, H)))  # fmt: skip
    editor.undo_action.trigger()
    np.testing.assert_array_equal(editor.document.array(), picture)


def test_a_saved_pose_reopens_as_an_editable_skeleton(qtbot, make_editor, tmp_path):
    editor = make_editor()
    editor.pose.apply_preset("arms up")
    path = editor.use_map()
    assert pose_sidecar(path).is_file()
    unit = ControlUnit(ControlKind.POSE, "cn", str(path))
    again = ConditionEditor.for_unit(unit, W, H, tmp_path / "maps")
    qtbot.addWidget(again)
    assert keypoints(again) == [list(p.keypoints) for p in preset_pose("arms up", W, H)]
    np.testing.assert_array_equal(again.document.array(), np.asarray(Image.open(path)))
    assert again.document.undo_stack.count() == 0


# --- detection ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openpose_folder(tmp_path_factory):
    # Random weights under the standard file name run the real controlnet-aux detector code.
    import torch

    model_module = _aux("controlnet_aux.open_pose.model")
    torch.manual_seed(0)
    model = model_module.bodypose_model()
    folder = tmp_path_factory.mktemp("annotators") / "openpose"
    folder.mkdir()
    stripped = {k.split(".", 1)[1]: v.half() for k, v in model.state_dict().items()}
    torch.save(stripped, folder / "body_pose_model.pth")
    return folder


def test_detect_pose_runs_the_real_detector_and_opens_people_for_correction(
    qtbot, make_editor, tmp_path, openpose_folder, monkeypatch
):
    editor = make_editor(annotator_folders=[openpose_folder.parent])
    assert str(openpose_folder) in editor.detector_note.text()  # where it found the weights
    assert not editor.detect_button.isEnabled()  # no source yet
    assert editor.open_source(photo(tmp_path / "photo.png", size=(W * 2, H * 2)))
    with qtbot.waitSignal(editor.detection_finished, timeout=30_000) as blocker:
        assert editor.detect()
        assert not editor.detect_button.isEnabled()  # busy, the window stays responsive
    assert blocker.args == [True]  # random weights: nobody, or somebody; either way no error
    assert all(len(p.keypoints) == NUM_KEYPOINTS for p in editor.pose.people)

    # What the detector finds on the photo lands on the map scaled to the generation size.
    found = [person(7, width=W * 2, height=H * 2)]
    monkeypatch.setattr("pipelines.conditions.detect_pose", lambda *a, **k: found)
    with qtbot.waitSignal(editor.detection_finished, timeout=10_000):
        assert editor.detect()
    assert flat(keypoints(editor)[0]) == pytest.approx([v / 2 for v in flat(found[0].keypoints)])
    assert editor.pose.selected == 0


@pytest.mark.parametrize("value", [3e9, 1e300])
def test_loading_a_pose_json_with_huge_coordinates_says_so_and_keeps_the_pose(make_editor, value):
    editor = make_editor()
    editor.pose.apply_preset("standing")
    before = keypoints(editor)
    points = [value, value, 1.0] + [10.0, 10.0, 1.0] * (NUM_KEYPOINTS - 1)
    data = {"people": [{"pose_keypoints_2d": points}], "canvas_width": W, "canvas_height": H}
    with pytest.raises(ValidationError, match="keypoint at"):
        editor.pose.load_json(data)
    assert keypoints(editor) == before
    editor.document.undo_stack.undo()  # the undo step still draws (the crash happened there)
    assert keypoints(editor) == []


def test_scaling_a_person_out_of_the_drawable_range_is_not_taken(make_editor):
    editor = make_editor()
    editor.pose.apply_preset("standing")
    before = keypoints(editor)
    editor.pose.scale_person(1e9)
    assert keypoints(editor) == before
