"""Closing never fails and restoring settings is all or nothing."""

from __future__ import annotations

from dataclasses import replace

from studio.settings import StudioSettings


def test_a_failing_save_step_still_saves_the_rest_and_stops_the_worker(
    qtbot, window, studio_settings, monkeypatch
):
    window.prompt_panel.prompt.setPlainText("kept across a bad close")

    def broken(*_args):
        raise RuntimeError("disk said no")

    monkeypatch.setattr(studio_settings, "set_comparison", broken)
    window.close()  # must not raise

    assert not window.session.thread.isRunning()
    reread = StudioSettings(studio_settings.path)
    assert reread.last_request["prompt"] == "kept across a bad close"
    assert reread.window_state("geometry") is not None  # steps after the failing one ran too


def test_a_request_the_panels_refuse_leaves_every_panel_as_it_was(qtbot, window, monkeypatch):
    window.prompt_panel.prompt.setPlainText("keep me")
    window.prompt_panel.steps.setValue(7)
    before = window.current_request()
    other = replace(before, prompt="replace me", steps=9, sampler="DDIM")

    real_apply, calls = window.control_panel.apply, []

    def refuse_once(controls):  # the last step of applying fails; putting things back works
        calls.append(controls)
        if len(calls) == 1:
            raise RuntimeError("a unit could not be shown")
        real_apply(controls)

    monkeypatch.setattr(window.control_panel, "apply", refuse_once)

    window.session.history.append(type("Entry", (), {"request": other})())
    assert not window.reuse_settings(len(window.session.history) - 1)

    assert len(calls) == 2  # refused, then put back
    assert window.current_request() == before  # the prompt panel went back as well
    assert "cannot be restored" in window.message_bar.text()


def test_a_request_with_a_wrong_typed_field_is_refused_before_any_panel_changes(qtbot, window):
    window.prompt_panel.prompt.setPlainText("keep me")
    before = window.current_request()
    bad = replace(before, prompt="from a damaged file")
    object.__setattr__(bad, "steps", "abc")  # what an unchecked reader could hand over

    window.session.history.append(type("Entry", (), {"request": bad})())
    assert not window.reuse_settings(len(window.session.history) - 1)

    assert window.current_request() == before
    assert window.message_bar.isVisible() and "cannot be restored" in window.message_bar.text()
