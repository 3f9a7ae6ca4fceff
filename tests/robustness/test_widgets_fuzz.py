"""The window under bad input: a message in the window's message bar, the window alive and able to
generate afterwards, and nothing the user had in the panels lost.

The window is driven through its public surface only (``generate()``, ``current_request()``,
``apply_request()``, ``restore_from_files()``, the panels' widgets, ``message_bar.text()``,
``session.history``), so these tests hold however the worker behind it is wired. One window serves
the whole module: opening one per case would cost a model load each.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from pipelines.types import ControlKind, ControlUnit, GenerationRequest
from tests.robustness.cases import case

GOOD = dict(prompt="a red circle", steps=2, width=64, height=64, seed=5, cfg_scale=5.0)
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def studio(qapp, tmp_path_factory, sd1_folder, controlnet_sd1_folder):
    from PySide6.QtTest import QTest

    from studio.settings import StudioSettings
    from studio.widgets.main_window import MainWindow

    root = tmp_path_factory.mktemp("window")
    # Built before any test's own folders are set up, so it gets folders of its own.
    env = pytest.MonkeyPatch()
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
                 "DIFFUSION_STUDIO_LOG_DIR"):  # fmt: skip
        (root / name).mkdir()
        env.setenv(name, str(root / name))
    settings = StudioSettings(root / "settings" / "studio.ini")
    settings.model_folders = [str(sd1_folder.parent), str(controlnet_sd1_folder.parent)]
    settings.output_folder = str(root / "out")
    settings.last_request = GenerationRequest(model=str(sd1_folder), **GOOD).to_dict()
    settings.random_seed = False
    window = MainWindow(settings)
    window.show()
    for _ in range(TIMEOUT // 10):
        if window.session.loaded_model is not None and window.sampler_panel.samplers.count():
            break
        QTest.qWait(10)
    yield window
    window.close()
    env.undo()
    assert not window.session.thread.isRunning()
    window.deleteLater()


@pytest.fixture
def window(studio, qtbot, sd1_folder):
    """The shared window, back on good settings with no message shown."""
    qtbot.waitUntil(lambda: not studio.session.busy, timeout=TIMEOUT)
    studio.apply_request(GenerationRequest(model=str(sd1_folder), **GOOD))
    studio.message_bar.hide()
    return studio


def panel_values(window) -> dict:
    return {
        "prompt": window.prompt_panel.values(),
        "sampler": window.sampler_panel.sampler(),
        "controls": window.control_panel.controls(),
    }


def generates(qtbot, window, sd1_folder) -> None:
    """A good request, put back in the panels, runs to the end and lands in the history."""
    window.apply_request(GenerationRequest(model=str(sd1_folder), **GOOD))
    done = len(window.session.history)
    window.generate()
    qtbot.waitUntil(lambda: len(window.session.history) > done, timeout=TIMEOUT)
    assert window.session.history[-1].request.prompt == GOOD["prompt"]


# ---- bad values in the panels, then Generate -----------------------------------------------


def long_prompt(window, _paths):
    window.prompt_panel.prompt.setPlainText("a red circle " * 1000)


def long_negative(window, _paths):
    window.prompt_panel.negative.setPlainText("blurry " * 2000)


def model(name: str):
    def choose(window, paths):
        window.prompt_panel.set_model(str(paths["in"] / name))

    return choose


def control(**values):
    def put(window, paths):
        unit = dict(kind=ControlKind.CANNY, model=str(paths["cn"]), image=str(paths["map"]))
        unit.update({k: v.format(**paths) if isinstance(v, str) else v for k, v in values.items()})
        window.control_panel.apply((ControlUnit(**unit),))

    return put


def image_gone_after_choosing(window, paths):
    doomed = paths["tmp"] / "soon-gone.png"
    doomed.write_bytes(paths["map"].read_bytes())
    control(image=str(doomed))(window, paths)
    doomed.unlink()


PANEL_CASES = [
    case(long_prompt, "characters", id="prompt-13000-characters"),
    case(long_negative, "characters", id="negative-14000-characters"),
    case(model("missing.safetensors"), "missing.safetensors", id="model-missing"),
    case(model("truncated.safetensors"), "truncated.safetensors", id="model-truncated"),
    case(model("huge-header.safetensors"), "huge-header", id="model-1tb-header"),
    case(model("payload.ckpt"), "pickle", id="model-pickle"),
    case(model("notes.txt"), "notes.txt", id="model-text-file"),
    case(model("empty-folder"), "empty-folder", id="model-empty-folder"),
    case(control(image=None), "condition image", id="control-without-image"),
    case(control(model=""), "controlnet", id="control-without-controlnet"),
    case(control(model="{in}/missing-cn"), "missing-cn", id="control-controlnet-missing"),
    case(control(model="{in}/payload.ckpt"), "payload.ckpt", id="control-controlnet-pickle"),
    case(control(image="{in}/corrupt.png"), "corrupt.png", id="control-image-corrupt"),
    case(control(image="{in}/notes.txt"), "notes.txt", id="control-image-text-file"),
    case(control(image="{in}/bomb.png"), "bomb.png", id="control-image-60000px-bomb"),
    case(image_gone_after_choosing, "soon-gone.png", id="control-image-deleted"),
]


@pytest.mark.parametrize(("put_bad_value", "word"), PANEL_CASES)
def test_bad_panel_value_then_generate(
    qtbot, window, sd1_folder, controlnet_sd1_folder, bad_folder, tmp_path, put_bad_value, word
):
    paths = {"in": bad_folder, "cn": controlnet_sd1_folder, "map": bad_folder / "map.png",
             "tmp": tmp_path}  # fmt: skip
    put_bad_value(window, paths)
    # A file that cannot be read is reported as it is chosen; Generate then says what is missing.
    at_input = window.message_bar.text()
    before = panel_values(window)
    done = len(window.session.history)
    window.generate()
    qtbot.waitUntil(
        lambda: bool(window.message_bar.text()) and not window.session.busy, timeout=TIMEOUT
    )
    assert word.lower() in (at_input + window.message_bar.text()).lower()
    assert len(window.session.history) == done
    assert panel_values(window) == before  # what the user typed is still there to correct
    assert window.isVisible() and window.session.thread.isRunning()
    generates(qtbot, window, sd1_folder)
    assert not window.message_bar.text()  # the next good run clears the old message


def test_compare_with_one_sampler_ticked_says_so(qtbot, window, sd1_folder):
    window.sampler_panel.set_compare_entries(["Euler"])
    window.compare()
    assert "tick at least 2" in window.message_bar.text().lower()
    assert not window.session.busy
    generates(qtbot, window, sd1_folder)


# ---- restoring settings from bad PNGs -------------------------------------------------------

RESTORE_CASES = [
    case("meta-steps-text.png", "steps", id="restore-json-steps-text"),
    case("meta-width-huge.png", "width", id="restore-json-width-1e12"),
    case("meta-sampler-number.png", "sampler", id="restore-json-sampler-number"),
    case("meta-prompt-number.png", "prompt", id="restore-json-prompt-number"),
    case("meta-controls-unknown-kind.png", "laser", id="restore-json-control-kind"),
    case("meta-memory-list.png", "memory", id="restore-json-memory-list"),
    case("meta-nested.png", "meta-nested.png", id="restore-json-deeply-nested"),
    case("meta-huge.png", "meta-huge.png", id="restore-json-3mb-prompt"),
    case("meta-params-bad-steps.png", "steps", id="restore-parameters-steps-word"),
    case("nometa.png", "no generation settings", id="restore-png-without-settings"),
    case("truncated.png", "truncated.png", id="restore-truncated"),
    case("corrupt.png", "corrupt.png", id="restore-corrupt"),
    case("bomb.png", "bomb.png", id="restore-60000px-bomb"),
    case("photo.jpg", "PNG", id="restore-jpeg"),
    case("notes.txt", "notes.txt", id="restore-text-file"),
    case("folder.png", "folder", id="restore-folder"),
    case("missing.png", "missing.png", id="restore-missing-file"),
]


@pytest.mark.parametrize(("name", "word"), RESTORE_CASES)
def test_restoring_a_bad_png_changes_nothing(qtbot, window, sd1_folder, bad_folder, name, word):
    window.prompt_panel.prompt.setPlainText("what I was writing")
    before = panel_values(window)
    assert window.restore_from_files([str(bad_folder / name)]) is False
    assert word.lower() in window.message_bar.text().lower()
    assert panel_values(window) == before  # all or nothing: not half applied
    generates(qtbot, window, sd1_folder)


def drop(widget, paths) -> QDropEvent:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    # Offscreen Qt has no drag manager to deliver a synthetic drop; call the handler as Qt would.
    widget.dropEvent(event)
    return event


@pytest.mark.parametrize(
    ("names", "word"),
    [
        case(["corrupt.png"], "corrupt.png", id="drop-corrupt"),
        case(["meta-steps-text.png"], "steps", id="drop-json-steps-text"),
        case(["notes.txt", "truncated.png"], "truncated.png", id="drop-two-bad-files"),
    ],
)
def test_dropping_bad_files_on_the_window(qtbot, window, sd1_folder, bad_folder, names, word):
    before = panel_values(window)
    drop(window, [bad_folder / name for name in names])
    assert word.lower() in window.message_bar.text().lower()
    assert panel_values(window) == before
    generates(qtbot, window, sd1_folder)


def test_dropping_a_bad_then_a_good_png_restores_the_good_one(
    qtbot, window, sd1_folder, bad_folder, tmp_path
):
    from PIL import Image

    from pipelines.export import write_png

    wanted = GenerationRequest(model=str(sd1_folder), **{**GOOD, "prompt": "a blue square"})
    good = write_png(Image.new("RGB", (64, 64)), wanted, tmp_path / "good.png")
    drop(window, [bad_folder / "corrupt.png", good])
    assert window.current_request().prompt == "a blue square"
    generates(qtbot, window, sd1_folder)


def test_load_settings_menu_with_a_bad_png(qtbot, window, sd1_folder, bad_folder, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    chosen = str(bad_folder / "meta-width-huge.png")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen, "PNG (*.png)"))
    before = panel_values(window)
    window.open_png_action.trigger()
    assert "width" in window.message_bar.text().lower()
    assert panel_values(window) == before
    generates(qtbot, window, sd1_folder)


# ---- the file-name pattern ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        case("a\0b.png", id="pattern-nul"),
        case("{index:0>4000}.png", id="pattern-4000-wide"),
        case("{nope}.png", id="pattern-unknown-field"),
        case("../{seed}.png", id="pattern-path-escape"),
        case("{", id="pattern-malformed"),
    ],
)
def test_settings_dialog_refuses_a_bad_pattern_and_saving_still_works(
    qtbot, window, sd1_folder, pattern
):
    old = window.settings.file_pattern
    dialog = window.open_settings()
    dialog.file_pattern.setText(pattern)
    dialog.accept()
    assert window.settings.file_pattern == old
    assert dialog.pattern_problem.text()  # the dialog says what is wrong
    dialog.reject()
    generates(qtbot, window, sd1_folder)
    saved = window.save_shown()
    assert (
        saved is not None and saved.exists() and saved.parent == Path(window.settings.output_folder)
    )


# ---- bad pose JSON in the pose editor -------------------------------------------------------


def body(x: float = 30.0, y: float = 30.0) -> list[float]:
    return [v for _ in range(18) for v in (x, y, 1.0)]


def pose_text(people, width=64, height=64) -> str:
    return json.dumps({"people": people, "canvas_width": width, "canvas_height": height})


POSE_FILE_CASES = [
    case(pose_text([{"pose_keypoints_2d": body(3e9)}]), "keypoint", id="pose-x-3e9"),
    case(pose_text([{"pose_keypoints_2d": body(1e300)}]), "keypoint", id="pose-x-1e300"),
    case(pose_text([{"pose_keypoints_2d": body(30, -2.0**31)}]), "keypoint", id="pose-y-minus-2-31"),
    case(pose_text([{"pose_keypoints_2d": body()}] * 500), "people", id="pose-500-people"),
    case("[" * 100_000 + "]" * 100_000, "nested", id="pose-deeply-nested"),
    case('{"people": 5}', "people", id="pose-people-number"),
    case(pose_text([{"pose_keypoints_2d": ["a"] * 54}]), "number", id="pose-keypoints-text"),
    case(pose_text([{"pose_keypoints_2d": body()}], width=1e12), "canvas", id="pose-canvas-1e12"),
    case("\x00\x01 not json", "JSON", id="pose-garbage"),
]  # fmt: skip


@pytest.mark.usefixtures("pose_renderer_ready")
@pytest.mark.parametrize(("text", "word"), POSE_FILE_CASES)
def test_pose_editor_refuses_a_bad_pose_file(qtbot, tmp_path, text, word):
    from studio.widgets.condition_editor import ConditionEditor

    editor = ConditionEditor(ControlKind.POSE, 64, 64, tmp_path / "maps")
    qtbot.addWidget(editor)
    editor.show()
    editor.pose.add_person()
    people = [list(p.keypoints) for p in editor.pose.people]
    before = editor.document.array().copy()
    path = tmp_path / "pose.json"
    path.write_text(text)
    assert editor.import_file(path) is False
    assert word.lower() in editor.message.text().lower(), editor.message.text()
    np.testing.assert_array_equal(editor.document.array(), before)
    assert [list(p.keypoints) for p in editor.pose.people] == people
    editor.pose.add_person()  # still usable
    assert len(editor.pose.people) == len(people) + 1


@pytest.fixture(scope="module")
def pose_renderer_ready():
    # controlnet-aux's pose renderer imports once, here, rather than inside the first case.
    from pipelines.conditions import render_pose

    render_pose([], 8, 8)


# ---- settings files that once stopped the window from opening ------------------------------

BROKEN_SETTINGS = [
    case({"session": {"last_request": '"{\\"prompt\\": \\"x\\", \\"controls\\": 5}"'}},
         id="window-last-request-controls-number"),
    case({"engine": {"memory": '"[1, 2]"'}}, id="window-memory-list"),
    case({"engine": {"model_folders": "/"}}, id="window-model-folders-string"),
    case({"session": {"random_seed": "a, b"}, "window": {"geometry": "garbage"}},
         id="window-seed-list-and-geometry-text"),
    case({"output": {"pattern": "{index:0>4000}"}}, id="window-pattern-4000-wide"),
]  # fmt: skip


@pytest.mark.parametrize("sections", BROKEN_SETTINGS)
def test_window_opens_and_generates_on_a_broken_settings_file(
    qtbot, tmp_path, sd1_folder, sections
):
    from studio.settings import StudioSettings
    from studio.widgets.main_window import MainWindow

    path = tmp_path / "studio.ini"
    text = "".join(
        f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in values.items())
        for name, values in sections.items()
    )
    path.write_text(text)
    settings = StudioSettings(path)
    settings.output_folder = str(tmp_path / "out")
    window = MainWindow(settings)
    try:
        window.show()
        qtbot.waitUntil(lambda: window.session.loaded_model is not None, timeout=TIMEOUT)
        read = [settings.file_pattern, settings.memory, settings.random_seed, settings.last_request]
        assert settings.notes, read  # each replaced value is noted (and logged)
        request = replace(window.current_request(), **GOOD, model=str(sd1_folder), controls=())
        window.apply_request(request)
        window.generate()
        qtbot.waitUntil(lambda: len(window.session.history) == 1, timeout=TIMEOUT)
    finally:
        window.close()
    assert not window.session.thread.isRunning()
    window.deleteLater()


# ---- cancelling ---------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["at-once", "after-first-preview"])
def test_cancel_keeps_history_and_panels(qtbot, window, sd1_folder, when):
    window.apply_request(GenerationRequest(model=str(sd1_folder), **{**GOOD, "steps": 50}))
    before = panel_values(window)
    done = len(window.session.history)
    window.generate()
    assert window.session.busy
    if when == "after-first-preview":
        qtbot.waitUntil(lambda: window.progress.value() >= 1, timeout=TIMEOUT)
    window.cancel()
    qtbot.waitUntil(lambda: not window.session.busy, timeout=TIMEOUT)
    assert len(window.session.history) == done
    assert panel_values(window) == before
    generates(qtbot, window, sd1_folder)
