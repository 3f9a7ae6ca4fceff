"""End to end through the real window: type, Generate, previews, result, history, export."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pipelines.export import read_request
from studio.jobs import EventKind
from studio.qt_image import qimage_to_array
from tests.studio.events import wait_event


def generate_and_wait(qtbot, window, timeout=30_000):
    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=timeout) as blocker:
        qtbot.mouseClick(window.prompt_panel.generate_button, Qt.MouseButton.LeftButton)
    return blocker.args[0].result


def test_type_prompt_generate_shows_previews_and_result(qtbot, window):
    previews = []
    window.session.event.connect(
        lambda event: event.kind is EventKind.PREVIEW and previews.append(event.frames)
    )
    qtbot.keyClicks(window.prompt_panel.prompt, "a red cube on a table")

    result = generate_and_wait(qtbot, window)

    assert result.request.prompt == "a red cube on a table"
    assert result.request.steps == 4 and result.request.seed == 1
    assert previews, "no step previews reached the window"
    assert len(window.session.history) == 1 and window.gallery.count() == 1
    # The canvas shows the final image, pixel for pixel.
    expected = qimage_to_array(window.session.history[0].image)
    assert (qimage_to_array(window.canvas.image) == expected).all()
    assert expected.shape == (64, 64, 3)
    assert "Done" in window.canvas.status_text
    assert window.prompt_panel.generate_button.isEnabled()
    assert not window.prompt_panel.cancel_button.isEnabled()


def test_export_writes_png_whose_metadata_reproduces_the_request(qtbot, window, tmp_path):
    qtbot.keyClicks(window.prompt_panel.prompt, "export me")
    result = generate_and_wait(qtbot, window)

    first = window.save_shown()
    second = window.save_shown()

    assert first.parent == tmp_path / "out" and first.suffix == ".png"
    assert second != first and first.exists()  # never overwritten silently
    assert read_request(first) == result.request
    assert window.save_all() == []  # everything in the history is already saved


def test_ctrl_enter_generates_and_reuse_settings_restores_panels(qtbot, window):
    window.prompt_panel.prompt.setPlainText("keyboard run")
    window.prompt_panel.prompt.setFocus()
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()  # what Ctrl+Enter does
    window.prompt_panel.prompt.setPlainText("something else")
    window.prompt_panel.steps.setValue(9)

    window.reuse_settings(0)

    assert window.prompt_panel.prompt.toPlainText() == "keyboard run"
    assert window.prompt_panel.steps.value() == 4
    assert window.sampler_panel.steps.value() == 4
