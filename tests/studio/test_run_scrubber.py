"""Looking back through the running generation's previews: the step scrubber on the canvas bar."""

from __future__ import annotations

from dataclasses import replace

from studio.jobs import EventKind
from studio.scrubbing import RunFrames
from tests.studio.events import wait_event
from tests.studio.test_pause_and_branch import finish, generate_paused


def test_frames_follow_the_run_until_moved_back_and_stay_bounded():
    frames: RunFrames[str] = RunFrames(limit=4)
    heard = []
    frames.subscribe(heard.append)
    assert frames.shown is None and frames.position_text() == ""
    for step in (1, 3, 4):  # previews are throttled: step 2 never came
        frames.add(step, f"frame {step}")
    assert frames.steps() == [1, 3, 4] and frames.shown == (4, "frame 4")
    assert heard == ["position"] * 3  # one notice per preview: the bar redraws once
    frames.set_position(1)
    frames.add(5, "frame 5")
    assert frames.shown == (1, "frame 1")  # moved back: a new frame does not pull it forward
    frames.add(6, "frame 6")  # past the limit: every second older frame goes, the newest stays
    assert len(frames.frames) <= 4 and frames.steps()[0] == 1 and frames.steps()[-1] == 6
    assert frames.shown == (1, "frame 1") and frames.position_text().startswith("step 1 ")
    frames.set_position(frames.top)
    frames.add(7, "frame 7")
    assert frames.shown == (7, "frame 7")  # at the end: it follows the run again
    frames.clear()
    assert frames.shown is None and frames.top == 1


def test_scrubbing_back_while_paused_shows_an_earlier_step(qtbot, window):
    window.prompt_panel.prompt.setPlainText("a red circle")
    window.apply_request(replace(window.current_request(), steps=6))
    held = generate_paused(qtbot, window)
    bar = window.run_scrub
    qtbot.waitUntil(lambda: bar.frames.steps()[-1:] == [held], timeout=10_000)
    with wait_event(qtbot, window.session, EventKind.PAUSED):
        window.step_action.trigger()
    qtbot.waitUntil(lambda: bar.frames.steps()[-1:] == [held + 1], timeout=10_000)
    assert bar.isEnabled() and bar.slider.maximum() == len(bar.frames.frames) >= 2
    assert window.canvas.image is bar.frames.frames[-1][1]  # the held step's frame is the newest

    bar.slider.setValue(1)  # back to the first frame delivered
    first_step, first_frame = bar.frames.frames[0]
    assert first_step < held + 1
    assert window.canvas.image is first_frame
    assert bar.label.text().startswith(f"step {first_step} ")
    with wait_event(qtbot, window.session, EventKind.PAUSED):
        window.step_action.trigger()
    qtbot.waitUntil(lambda: bar.frames.steps()[-1:] == [held + 2], timeout=10_000)
    assert window.canvas.image is first_frame  # a new step does not pull the view forward
    assert bar.slider.value() == 1

    window.pause_action.trigger()  # resume
    finish(qtbot, window, 1)
    assert window.canvas.image is window.session.history[0].image  # the final image at the end
    assert not bar.isEnabled() and bar.frames.shown is None
