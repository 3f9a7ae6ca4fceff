"""The session is the window's only door to the worker: one stream of job events, in the GUI
thread, with the session's own state already updated when each event arrives."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from studio.jobs import EventKind, JobKind
from tests.studio.events import wait_event


def test_a_generation_reports_queued_started_previews_and_finished_for_one_job(qtbot, window):
    seen = []

    def record(event) -> None:
        seen.append((event.kind, event.job_id, window.session.busy, len(window.session.history),
                     QThread.currentThread() is QApplication.instance().thread()))  # fmt: skip

    window.session.event.connect(record)
    window.prompt_panel.prompt.setPlainText("events")
    with wait_event(qtbot, window.session, EventKind.FINISHED) as blocker:
        window.generate_action.trigger()
    job = blocker.args[0].job

    kinds = [kind for kind, job_id, *_ in seen if job_id == job.id]
    assert kinds[:2] == [EventKind.QUEUED, EventKind.STARTED] and kinds[-1] is EventKind.FINISHED
    assert EventKind.PREVIEW in kinds and set(kinds[2:-1]) == {EventKind.PREVIEW}
    assert all(in_gui_thread for *_, in_gui_thread in seen)
    queued, finished = seen[0], seen[-1]
    assert queued[2] is True  # busy already when the queued event arrives
    assert finished[2] is False and finished[3] == 1  # idle, and the result is in the history
    assert blocker.args[0].result is window.session.history[-1].result
    assert job.kind is JobKind.GENERATE and job.request.prompt == "events"


def test_a_failing_model_folder_scan_shows_its_message_in_the_gui_thread(
    qtbot, make_window, studio_settings, monkeypatch
):
    import pipelines.models

    def refused(folders):
        raise PermissionError(13, "Permission denied", str(folders[-1]))

    window = make_window(studio_settings)
    monkeypatch.setattr(pipelines.models, "discover_models", refused)
    shown_in = []
    real_show_error = window.show_error

    def show_error(message, actions=()):
        shown_in.append(QThread.currentThread() is QApplication.instance().thread())
        real_show_error(message, actions)

    window.show_error = show_error
    window.session.discover()  # as after File → Settings
    qtbot.waitUntil(lambda: bool(shown_in), timeout=30_000)

    assert shown_in == [True]  # never from the worker thread
    assert window.message_bar.isVisible() and "Permission denied" in window.message_bar.text()
    assert window.session.thread.isRunning()
    with wait_event(qtbot, window.session, EventKind.FINISHED):  # and the studio still works
        window.generate_action.trigger()
    assert len(window.session.history) == 1


def test_a_late_preview_of_a_job_that_has_ended_is_dropped(qtbot):
    import numpy as np

    from pipelines.types import StepPreview
    from studio.session import Session

    session = Session()
    try:
        seen = []
        session.event.connect(seen.append)
        worker = session.worker
        worker._job_id = 12345  # a job this session is not running (any more)
        worker._on_step(StepPreview(3, 4, "Euler", np.zeros((8, 8, 3), np.uint8), 0.3, 3))
        assert worker._latest is not None
        qtbot.waitUntil(lambda: worker._latest is None, timeout=5_000)  # the session fetched it …
        qtbot.wait(50)
        assert seen == []  # … and not passed on
    finally:
        session.shutdown()


def test_the_worker_decodes_a_step_only_once_the_window_took_the_previous_one(qtbot, sd1_folder):
    from pipelines.types import EngineSettings, GenerationRequest, PreviewMode
    from studio.jobs import Job, JobKind
    from studio.worker import GenerationWorker

    worker = GenerationWorker()
    worker.configure(EngineSettings(precision="fp32"))
    request = GenerationRequest(prompt="a red circle", model=str(sd1_folder), seed=3, steps=6,
                                width=64, height=64, preview=PreviewMode.FULL)  # fmt: skip
    decoded: list[int] = []
    original = worker._on_step

    def count(preview) -> None:
        decoded.append(preview.step)
        original(preview)

    worker._on_step = count  # the step callback the worker hands the engine
    worker.run(Job(JobKind.GENERATE, request), threading.Event())
    # Nobody took the first frame: the steps after it are not decoded, but the last one is.
    assert decoded == [1, 6]

    decoded.clear()

    def count_and_take(preview) -> None:
        count(preview)
        assert worker.take_preview() is not None  # the window takes each frame at once

    worker._on_step = count_and_take
    worker.run(Job(JobKind.GENERATE, request), threading.Event())
    assert decoded == [1, 2, 3, 4, 5, 6]
