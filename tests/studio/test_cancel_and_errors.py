"""Cancelling mid-run and failing runs leave the window usable, with the panels' values intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from studio.jobs import EventKind, JobKind
from tests.studio.events import wait_event


def click_generate(qtbot, window):
    qtbot.mouseClick(window.prompt_panel.generate_button, Qt.MouseButton.LeftButton)


def test_cancel_mid_run_ends_cancelled_and_a_new_run_works(qtbot, window):
    window.prompt_panel.prompt.setPlainText("long run")
    window.prompt_panel.steps.setValue(150)

    # Press Esc's action as soon as the first preview arrives: the run is certainly under way.
    def cancel_on_preview(event) -> None:
        if event.kind is EventKind.PREVIEW:
            window.cancel_action.trigger()

    window.session.event.connect(cancel_on_preview)
    with wait_event(qtbot, window.session, EventKind.CANCELLED) as blocker:
        click_generate(qtbot, window)
    window.session.event.disconnect(cancel_on_preview)

    assert blocker.args[0].result.cancelled and blocker.args[0].result.image is None
    assert "Cancelled" in window.canvas.status_text
    assert window.session.history == []
    assert window.prompt_panel.generate_button.isEnabled()

    window.prompt_panel.steps.setValue(3)
    with wait_event(qtbot, window.session, EventKind.FINISHED) as blocker:
        click_generate(qtbot, window)
    assert blocker.args[0].result.request.steps == 3
    assert len(window.session.history) == 1


def test_missing_model_shows_message_and_the_app_keeps_working(qtbot, window, sd1_folder, tmp_path):
    window.prompt_panel.prompt.setPlainText("keep me")
    window.prompt_panel.set_model(str(tmp_path / "no-such-model.safetensors"))
    with wait_event(qtbot, window.session, EventKind.FAILED):
        click_generate(qtbot, window)

    assert window.message_bar.isVisible()
    assert "not found" in window.message_bar.text()
    assert window.prompt_panel.prompt.toPlainText() == "keep me"  # panels keep their values
    assert window.prompt_panel.steps.value() == 4

    window.prompt_panel.set_model(str(sd1_folder))
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        click_generate(qtbot, window)
    assert len(window.session.history) == 1
    assert not window.message_bar.isVisible()  # the next run clears the old message


def test_bad_condition_image_is_reported(qtbot, window, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    unit = window.control_panel.units[0]

    unit.set_image(str(bad))

    assert window.message_bar.isVisible() and "broken.png" in window.message_bar.text()
    assert unit.image_path is None and not unit.enabled.isChecked()


def test_fresh_window_opens_on_the_bundled_model(qtbot, make_window, settings_path):
    from pipelines.engine import default_model_path
    from studio.settings import StudioSettings

    if not default_model_path().exists():
        pytest.skip("the bundled model is not installed")
    window = make_window(StudioSettings(settings_path))  # fresh: no model, no folders
    assert window.session.loaded_model.path == default_model_path()
    assert "toy-world" in window.model_label.text()


def test_no_model_configured_says_how_to_choose_one(
    qtbot, make_window, settings_path, tmp_path, monkeypatch
):
    import pipelines.engine
    from studio.settings import StudioSettings

    # As on an install without the bundled model.
    monkeypatch.setattr(pipelines.engine, "default_model_path", lambda: tmp_path / "no-model")
    settings = StudioSettings(settings_path)  # fresh: no model, no folders
    window = make_window(settings, wait_for_model=False)
    qtbot.waitUntil(lambda: window.message_bar.isVisible(), timeout=60_000)

    text = window.message_bar.text()
    assert "Model folders" in text and ".safetensors" in text
    assert window.model_label.text() == "No model loaded"
    assert Path(settings.path).parent == settings_path.parent  # the user's settings untouched


def test_closing_during_a_run_cancels_and_stops_the_thread(qtbot, window):
    window.prompt_panel.steps.setValue(150)
    with wait_event(qtbot, window.session, EventKind.PREVIEW, JobKind.GENERATE):
        click_generate(qtbot, window)
    assert window.session.busy

    window.close()  # returns only once the worker thread has stopped

    assert not window.session.thread.isRunning()
    assert window.session.history == []
