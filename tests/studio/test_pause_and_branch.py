"""Pause, step, resume and branch a generation from the window: the result is the image an
uninterrupted run (or the command line with the same --branch) makes, bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from pipelines.types import Branch
from studio.jobs import EventKind
from tests.studio.events import wait_event


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def generate_paused(qtbot, window) -> int:
    """Press Generate and Pause (F8) at once; returns the step the run holds at."""
    with wait_event(qtbot, window.session, EventKind.PAUSED) as blocker:
        window.generate_action.trigger()
        window.pause_action.trigger()
    return blocker.args[0].result


def finish(qtbot, window, count: int) -> None:
    qtbot.waitUntil(lambda: len(window.session.history) == count and not window.session.busy,
                    timeout=60_000)  # fmt: skip


def test_pause_step_resume_gives_the_uninterrupted_image(qtbot, window):
    window.prompt_panel.prompt.setPlainText("a red circle")
    window.generate_action.trigger()
    finish(qtbot, window, 1)

    held = generate_paused(qtbot, window)
    assert window.session.held_at == held < 4
    assert window.pause_action.text() == "Resume" and window.branch_action.isEnabled()
    assert window.progress.value() == held  # the preview of the held step is shown
    assert "Paused at step" in window.queue_panel.list.item(0).text()
    assert window.queue_panel._buttons["pause"].text() == "Resume"
    with wait_event(qtbot, window.session, EventKind.PAUSED) as blocker:
        window.step_action.trigger()  # F10: exactly one more step
    assert blocker.args[0].result == held + 1
    assert window.progress.value() == held + 1
    window.pause_action.trigger()  # F8 again: resume
    finish(qtbot, window, 2)

    first, second = window.session.history
    assert np.array_equal(pixels(first.result.image), pixels(second.result.image))
    assert second.request.branches == ()
    assert not window.pause_action.isEnabled()


def test_a_cancel_stops_a_paused_generation(qtbot, window):
    generate_paused(qtbot, window)
    with wait_event(qtbot, window.session, EventKind.CANCELLED):
        window.cancel_action.trigger()
    assert window.session.held_at is None and not window.session.busy


def test_closing_the_window_stops_a_paused_generation(qtbot, window):
    generate_paused(qtbot, window)
    window.close()  # cancels, and waits for the worker thread
    assert not window.session.thread.isRunning()


def test_a_branch_from_the_panels_is_recorded_reused_and_repeated_by_the_command_line(
    qtbot, window, sd1_folder, tmp_path
):
    from pipelines import cli
    from pipelines.export import read_request

    window.prompt_panel.prompt.setPlainText("a red circle")
    held = generate_paused(qtbot, window)
    window.prompt_panel.prompt.setPlainText("a blue square")
    window.prompt_panel.cfg.setValue(3.0)
    with wait_event(qtbot, window.session, EventKind.BRANCHED):
        assert window.branch()  # F9
    window.pause_action.trigger()
    finish(qtbot, window, 1)

    entry = window.session.history[0]
    assert entry.request.branches == (Branch(held, prompt="a blue square", cfg=3.0),)
    assert entry.request.prompt == "a red circle"  # the run's own settings stay as they began
    stored = window.history_store.find(entry.stored_id)
    assert read_request(stored.image_path).branches == entry.request.branches

    out = tmp_path / "cli.png"
    request = entry.request
    code = cli.main([
        "generate", "--prompt", request.prompt, "--model", str(sd1_folder),
        "--seed", str(request.seed), "--steps", str(request.steps), "--cfg", str(request.cfg_scale),
        "--size", f"{request.width}x{request.height}", "--sampler", request.sampler,
        "--branch", f"{held}:prompt=a blue square", "--branch", f"{held}:cfg=3", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    with Image.open(out) as image:
        assert np.array_equal(pixels(image), pixels(entry.result.image))

    # "Reuse settings" brings the branch back with the rest of the recipe; Generate repeats it.
    assert window.reuse_settings(0)
    assert window.current_request().branches == entry.request.branches
    assert "change part way" in window.message_bar.text()
    window.generate_action.trigger()
    finish(qtbot, window, 2)
    again = window.session.history[1]
    assert again.request.branches == entry.request.branches
    assert np.array_equal(pixels(again.result.image), pixels(entry.result.image))


def test_branching_needs_a_paused_run_and_a_change(qtbot, window):
    assert not window.branch()
    assert "Pause the generation first" in window.last_error
    generate_paused(qtbot, window)
    assert not window.branch()  # the panels are the run's settings: nothing to branch
    window.pause_action.trigger()
    finish(qtbot, window, 1)


def test_a_branched_image_is_compared_with_its_unbranched_run(qtbot, window):
    from studio.jobs import JobKind

    window.prompt_panel.prompt.setPlainText("a red circle")
    window.apply_request(replace(window.current_request(),
                                 branches=(Branch(2, prompt="a blue square"),)))  # fmt: skip
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()
    with wait_event(qtbot, window.session, EventKind.FINISHED, JobKind.COMPARE) as blocker:
        window.compare_branch_action.trigger()
    plain, branched = blocker.args[0].result.columns
    assert branched.sampler.endswith("branched at step 2") and plain.completed == 4
    assert np.array_equal(pixels(branched.image), pixels(window.session.history[0].result.image))
    assert window.centre_tabs.currentWidget() is window.compare_view
    assert len(window.compare_view.columns) == 2
