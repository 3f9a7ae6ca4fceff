"""The condition editor: strokes through the mouse, undo, canny, imports, detectors, saving."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import QPointF, Qt

from pipelines.conditions import detect_map, prepare_condition
from pipelines.types import ControlKind, ControlUnit, ResizeMode
from studio.jobs import EventKind
from studio.widgets.condition_editor import ConditionEditor
from studio.widgets.control_panel import ControlPanel, EditorContext
from tests.studio.events import wait_event

W, H = 64, 48


pytestmark = pytest.mark.usefixtures("no_user_annotators", "pose_renderer_imported")


def open_editor(qtbot, folder, kind, width: int, height: int, **kwargs) -> ConditionEditor:
    """A shown editor, fitted to its view, that qtbot closes after the test."""
    editor = ConditionEditor(kind, width, height, folder, **kwargs)
    qtbot.addWidget(editor)
    editor.show()
    qtbot.waitExposed(editor)
    editor.view.fit()
    return editor


@pytest.fixture
def make_editor(qtbot, tmp_path):
    def make(kind=ControlKind.CANNY, width=W, height=H, **kwargs) -> ConditionEditor:
        return open_editor(qtbot, tmp_path / "maps", kind, width, height, **kwargs)

    return make


def at(view, x: float, y: float):
    """The widget point over the centre of map pixel (x, y)."""
    return view.from_map(QPointF(x + 0.5, y + 0.5)).toPoint()


def drag(qtbot, view, start, end, modifier=Qt.KeyboardModifier.NoModifier, steps=4):
    left = Qt.MouseButton.LeftButton
    qtbot.mousePress(view, left, modifier, at(view, *start))
    for i in range(1, steps + 1):
        t = i / steps
        point = (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
        qtbot.mouseMove(view, at(view, *point))
    qtbot.mouseRelease(view, left, modifier, at(view, *end))


def photo(path, size=(96, 64)):
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 10, 70, 50), fill=(40, 40, 160))
    draw.ellipse((5, 30, 30, 60), fill=(200, 40, 40))
    draw.line((0, 0, size[0], size[1]), fill=(120, 120, 120), width=2)
    image.save(path)
    return path


# --- painting ----------------------------------------------------------------------------------


def test_a_brush_stroke_paints_the_expected_pixels_and_undo_redo_restore_them(qtbot, make_editor):
    editor = make_editor()
    editor.size_box.setValue(3)
    assert editor.options.size == 3 and editor.options.hardness == 1.0
    drag(qtbot, editor.view, (10, 20), (50, 20))

    pixels = editor.document.array()
    assert (pixels[20, 10:51] == 255).all()  # the whole stroke, pure white (hard brush)
    assert set(np.unique(pixels)) == {0, 255}  # no antialiasing grey in an edge map
    assert not pixels[:17].any() and not pixels[24:].any() and not pixels[:, :7].any()
    painted = pixels.copy()

    editor.undo_action.trigger()
    assert not editor.document.array().any()  # exactly the black map again
    editor.redo_action.trigger()
    np.testing.assert_array_equal(editor.document.array(), painted)
    assert editor.document.undo_stack.count() == 1  # one stroke, one undo step


def test_eraser_line_fill_gradient_picker_invert_and_clear(qtbot, make_editor):
    editor = make_editor(ControlKind.DEPTH)
    editor.value_box.setValue(128)
    editor.set_tool("fill")
    qtbot.mouseClick(editor.view, Qt.MouseButton.LeftButton, pos=at(editor.view, 5, 5))
    assert (editor.document.array() == 128).all()

    editor.value_box.setValue(255)
    editor.size_box.setValue(1)
    editor.set_tool("line")
    drag(qtbot, editor.view, (0, 24), (W - 1, 24))
    pixels = editor.document.array()
    assert (pixels[24] == 255).all() and (pixels[:24] == 128).all() and (pixels[25:] == 128).all()

    editor.value_box.setValue(60)
    editor.set_tool("fill")  # only the region above the line
    qtbot.mouseClick(editor.view, Qt.MouseButton.LeftButton, pos=at(editor.view, 5, 5))
    pixels = editor.document.array()
    assert (pixels[:24] == 60).all() and (pixels[25:] == 128).all()

    editor.set_tool("picker")
    qtbot.mouseClick(editor.view, Qt.MouseButton.LeftButton, pos=at(editor.view, 5, 40))
    assert editor.value_box.value() == 128 and editor.options.value == 128

    editor.size_box.setValue(5)
    editor.set_tool("eraser")
    drag(qtbot, editor.view, (30, 10), (30, 40))
    assert (editor.document.array()[10:41, 30] == 0).all()

    before_ramp = editor.document.array()
    editor.value_box.setValue(255)
    editor.value_to_box.setValue(0)
    editor.set_tool("gradient")
    drag(qtbot, editor.view, (0, 10), (W - 1, 10))
    ramp = editor.document.array()[:, :, 0].astype(int)
    assert ramp[:, 0].min() >= 250 and ramp[:, -1].max() <= 5  # near (bright) to far
    assert (np.diff(ramp[10]) <= 0).all() and (ramp == ramp[0]).all()  # horizontal ramp

    ramped = editor.document.array()
    editor.invert_action.trigger()
    np.testing.assert_array_equal(editor.document.array(), 255 - ramped)
    editor.clear_action.trigger()
    assert not editor.document.array().any()
    for _ in range(3):  # clear, invert, gradient
        editor.undo_action.trigger()
    np.testing.assert_array_equal(editor.document.array(), before_ramp)


def test_soft_brush_fades_and_shortcuts_pick_tools_and_sizes(qtbot, make_editor):
    editor = make_editor()
    editor.activateWindow()  # shortcuts act in the active window
    qtbot.waitUntil(editor.isActiveWindow)
    editor.view.setFocus()
    for key, name in ((Qt.Key.Key_E, "eraser"), (Qt.Key.Key_L, "line"), (Qt.Key.Key_G, "fill"),
                      (Qt.Key.Key_G, "gradient"), (Qt.Key.Key_I, "picker"),
                      (Qt.Key.Key_B, "brush")):  # fmt: skip
        qtbot.keyClick(editor.view, key)
        assert editor.tool_name() == name
    size = editor.size_box.value()
    qtbot.keyClick(editor.view, Qt.Key.Key_BracketRight)
    assert editor.size_box.value() > size
    qtbot.keyClick(editor.view, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(editor.view, Qt.Key.Key_BracketLeft)
    assert editor.size_box.value() < size

    editor.size_box.setValue(12)
    editor.hardness_box.setValue(20)
    drag(qtbot, editor.view, (20, 24), (21, 24), steps=1)
    row = editor.document.array()[24, :, 0]
    assert row[20] > 200 and 0 < row[25] < row[20] and row[28] == 0  # bright core, fading edge
    qtbot.keyClick(editor.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not editor.document.array().any()
    qtbot.keyClick(editor.view, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)  # fmt: skip
    assert editor.document.array()[24, 20, 0] > 200


# --- canny -------------------------------------------------------------------------------------


def test_canny_thresholds_change_the_edges_live_like_the_core(qtbot, make_editor, tmp_path):
    path = photo(tmp_path / "photo.png")
    unit = ControlUnit(ControlKind.CANNY, "cn", str(path), preprocess=True, canny_low=100,
                       canny_high=200, resize_mode=ResizeMode.FIT)  # fmt: skip
    editor = ConditionEditor.for_unit(unit, W, H, tmp_path / "maps")
    qtbot.addWidget(editor)
    core = np.asarray(prepare_condition(unit, W, H))
    np.testing.assert_array_equal(editor.document.array(), core)  # what the core would compute
    assert core.any()

    editor.canny_low.setValue(250)
    editor.canny_high.setValue(255)
    strict = editor.document.array()
    assert not np.array_equal(strict, core)
    expected = prepare_condition(replace(unit, canny_low=250, canny_high=255), W, H)
    np.testing.assert_array_equal(strict, np.asarray(expected))
    assert editor.document.undo_stack.count() == 1  # slider moves merge into one step
    editor.undo_action.trigger()
    np.testing.assert_array_equal(editor.document.array(), core)


def test_canny_without_a_source_keeps_the_sliders_off(make_editor):
    editor = make_editor()
    assert not editor.canny_low.isEnabled() and not editor.detect_button.isEnabled()
    assert not editor.detect()
    assert "source" in editor.message.text()


# --- imports -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("broken.png", b"\x89PNG\r\n\x1a\n" + os.urandom(300), "damaged"),
        ("notes.txt", b"just some text", "not an image"),
        ("missing.png", None, "does not exist"),
    ],
)
def test_a_bad_image_gives_a_message_and_leaves_the_map_untouched(
    qtbot, make_editor, tmp_path, name, content, words
):
    editor = make_editor()
    drag(qtbot, editor.view, (5, 5), (30, 30))
    painted, steps = editor.document.array(), editor.document.undo_stack.count()
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert not editor.import_file(path)
    assert words in editor.message.text() and str(path) in editor.message.text()
    np.testing.assert_array_equal(editor.document.array(), painted)
    assert editor.document.undo_stack.count() == steps


def test_depth_maps_import_normalised_from_16_and_8_bit(make_editor, tmp_path):
    editor = make_editor(ControlKind.DEPTH)
    ramp16 = np.tile(np.linspace(1000, 40000, W).astype(np.uint16), (H, 1))
    Image.fromarray(ramp16).save(tmp_path / "depth16.png")
    assert Image.open(tmp_path / "depth16.png").mode.startswith("I")
    assert editor.import_file(tmp_path / "depth16.png")
    pixels = editor.document.array()
    assert pixels.min() == 0 and pixels.max() == 255  # min-max scaled, not clipped to white
    assert (np.diff(pixels[0, :, 0].astype(int)) >= 0).all()

    Image.fromarray(np.full((H * 2, W * 2), 77, np.uint8)).save(tmp_path / "depth8.png")
    assert editor.import_file(tmp_path / "depth8.png")
    assert (editor.document.array() == 77).all()  # fitted to the map size
    editor.undo_action.trigger()
    np.testing.assert_array_equal(editor.document.array(), pixels)


def test_clipboard_and_dropped_files_import(qtbot, make_editor, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QGuiApplication

    from studio.qt_image import pil_to_qimage

    editor = make_editor(ControlKind.CUSTOM)
    QGuiApplication.clipboard().setImage(pil_to_qimage(Image.new("RGB", (W, H), (9, 99, 199))))
    editor.import_mime(QGuiApplication.clipboard().mimeData())
    assert (editor.document.array() == (9, 99, 199)).all()

    Image.new("RGB", (W, H), (200, 10, 10)).save(tmp_path / "dropped.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.png"))])
    assert editor.import_mime(mime)
    assert (editor.document.array() == (200, 10, 10)).all()


# --- detectors without weights -----------------------------------------------------------------


@pytest.mark.parametrize("kind, file", [(ControlKind.DEPTH, "dpt_hybrid-midas-501f0c75.pt"),
                                        (ControlKind.POSE, "body_pose_model.pth")])  # fmt: skip
def test_missing_annotator_weights_say_what_and_where(qtbot, make_editor, tmp_path, kind, file):
    mine = tmp_path / "my-annotators"
    mine.mkdir()
    editor = make_editor(kind, annotator_folders=[mine])
    assert file in editor.detector_note.text()
    assert file in editor.detect_button.toolTip() and str(mine) in editor.detect_button.toolTip()
    assert editor.open_source(photo(tmp_path / "photo.png"))
    before = editor.document.array()
    assert not editor.detect()
    assert file in editor.message.text() and str(mine) in editor.message.text()
    np.testing.assert_array_equal(editor.document.array(), before)
    assert editor.import_file(photo(tmp_path / "map.png"))  # importing still works


# --- saving into the unit ----------------------------------------------------------------------


def test_the_saved_map_is_what_the_core_receives(qtbot, tmp_path):
    data = tmp_path / "data"
    panel = ControlPanel(data)
    qtbot.addWidget(panel)
    panel.set_editor_context(EditorContext(size=lambda: (W, H)))
    unit = panel.units[0]
    unit.set_image(str(photo(tmp_path / "photo.png")))
    unit.preprocess.setChecked(True)
    assert unit.edit_button.isEnabled()

    qtbot.mouseClick(unit.edit_button, Qt.MouseButton.LeftButton)
    editor = unit.editor
    assert editor is not None and (editor.document.width, editor.document.height) == (W, H)
    editor.view.fit()
    drag(qtbot, editor.view, (2, 40), (60, 40))
    edited = editor.document.array()
    first = editor.use_map()

    assert first.parent == data / "condition-maps" and first.is_file()
    assert unit.image_path == str(first)
    control = unit.unit()
    assert control.kind is ControlKind.CANNY and not control.preprocess
    np.testing.assert_array_equal(np.asarray(prepare_condition(control, W, H)), edited)
    assert not editor.isVisible()

    second_editor = unit.open_editor()
    np.testing.assert_array_equal(second_editor.document.array(), edited)  # reopens on the map
    assert second_editor is editor and editor.undo_action.isEnabled()  # with its history
    second_editor.clear_action.trigger()
    second = second_editor.use_map()
    assert second != first and first.is_file()  # never overwrites an earlier map
    np.testing.assert_array_equal(np.asarray(Image.open(first)), edited)
    assert not list((data / "condition-maps").glob(".*"))  # no temp file left behind


# --- through the window ------------------------------------------------------------------------


def test_the_edited_map_reaches_the_pipeline_and_comes_back_from_history_and_png(
    qtbot, make_window, studio_settings, controlnet_sd1_folder
):
    window = make_window(studio_settings)
    unit = window.control_panel.units[0]
    qtbot.waitUntil(lambda: unit.model.count() > 1, timeout=30_000)
    unit.set_model(str(controlnet_sd1_folder))

    qtbot.mouseClick(unit.edit_button, Qt.MouseButton.LeftButton)
    editor = unit.editor
    assert (editor.document.width, editor.document.height) == (64, 64)  # the generation size
    editor.view.fit()
    editor.size_box.setValue(2)
    drag(qtbot, editor.view, (8, 8), (56, 50))
    editor.set_tool("line")
    drag(qtbot, editor.view, (8, 56), (56, 56))
    edited = editor.document.array()
    path = editor.use_map()
    assert path.parent == studio_settings.data_folder / "condition-maps"
    assert unit.enabled.isChecked()

    window.prompt_panel.prompt.setPlainText("edited map")
    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=60_000) as blocker:
        window.generate_action.trigger()
    result = blocker.args[0].result
    (used,) = result.request.active_controls
    assert used.image == str(path) and not used.preprocess and used.kind is ControlKind.CANNY
    np.testing.assert_array_equal(np.asarray(result.condition_maps[0]), edited)  # at the core

    unit.set_image(None)
    window.reuse_settings(0)  # from the history
    assert unit.image_path == str(path)
    reopened = unit.open_editor()
    np.testing.assert_array_equal(reopened.document.array(), edited)
    labels = [reopened.source_combo.itemText(i) for i in range(reopened.source_combo.count())]
    assert labels == ["(no source)", f"Result 1 · seed {result.request.seed}"]
    reopened.source_combo.setCurrentIndex(1)
    reopened.source_combo.activated.emit(1)  # a history image as the source
    assert reopened.source is not None and reopened.view.backdrop is not None
    assert reopened.detect()  # canny edges of the result
    edges = detect_map(ControlKind.CANNY, result.image, 64, 64, "fit", canny=(100, 200)).image
    np.testing.assert_array_equal(reopened.document.array(), np.asarray(edges))
    reopened.reject()

    unit.set_image(None)
    png = window.save_entry(0)
    assert window.restore_from_files([str(png)])  # from a PNG the app exported
    assert unit.image_path == str(path)


def test_damaged_weights_end_the_background_detection_with_a_message(qtbot, make_editor, tmp_path):
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "body_pose_model.pth").write_bytes(b"not a checkpoint")
    editor = make_editor(ControlKind.POSE, annotator_folders=[folder])
    assert editor.open_source(photo(tmp_path / "photo.png"))
    with qtbot.waitSignal(editor.detection_finished, timeout=30_000) as blocker:
        assert editor.detect()
    assert blocker.args == [False]
    assert "body_pose_model.pth" in editor.message.text() and "damaged" in editor.message.text()
    assert editor.pose.people == [] and editor.detect_button.isEnabled()


def test_a_cancelled_edit_is_kept_until_the_unit_changes(qtbot, tmp_path):
    panel = ControlPanel(tmp_path / "data")
    qtbot.addWidget(panel)
    size = [(W, H)]
    panel.set_editor_context(EditorContext(size=lambda: size[0]))
    unit = panel.units[0]
    editor = unit.open_editor()
    editor.view.fit()
    drag(qtbot, editor.view, (5, 5), (40, 5))
    drafted = editor.document.array()
    editor.reject()  # Cancel or Esc: nothing reaches the unit ...
    assert unit.image_path is None and not editor.isVisible()
    assert unit.open_editor() is editor  # ... and nothing drawn is lost
    np.testing.assert_array_equal(editor.document.array(), drafted)

    size[0] = (W * 2, H)  # another generation size: a fresh editor at that size
    wider = unit.open_editor()
    assert wider is not editor and wider.document.width == W * 2
    unit.set_image(str(photo(tmp_path / "photo.png")))  # another image: fresh again
    assert unit.open_editor() is not wider


def test_estimated_depth_is_fitted_into_the_map_as_one_undo_step(
    qtbot, make_editor, tmp_path, monkeypatch
):
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "dpt_hybrid-midas-501f0c75.pt").write_bytes(b"found by name; never loaded here")
    calls = []

    def fake_depth(image, folders, *, resolution, device):  # the real network: the core's test
        calls.append((image.size, list(folders), resolution))
        ramp = np.tile(np.linspace(0, 255, image.width).astype(np.uint8), (image.height, 1))
        return Image.fromarray(ramp).convert("RGB")

    monkeypatch.setattr("pipelines.conditions.detect_depth", fake_depth)
    editor = make_editor(ControlKind.DEPTH, annotator_folders=[folder])
    assert str(folder) in editor.detector_note.text()
    assert editor.open_source(photo(tmp_path / "photo.png", size=(96, 48)))  # 2:1 into 4:3
    with qtbot.waitSignal(editor.detection_finished, timeout=10_000) as blocker:
        assert editor.detect()
    assert blocker.args == [True]
    assert calls == [((96, 48), [str(folder)], max(64, min(512, W, H)))]  # as the core does
    pixels = editor.document.array()
    assert not pixels[:8].any() and not pixels[-8:].any()  # letterboxed: the bars are far
    assert pixels[24, -1, 0] > 240 and pixels[24, 0, 0] < 10
    editor.undo_action.trigger()
    assert not editor.document.array().any()
