"""Sampler comparison in the window: the compare view's slider, alignment, difference view, keys,
export, the sampler panel's compare mode, and end-to-end runs (finish, cancel) with tiny models.

The view tests feed it hand-made results (one solid colour per step, so every shown picture names
the step it came from) through a stand-in session; the window tests run the real worker.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication

from pipelines.compare import CompareColumn, CompareResult
from pipelines.export import read_metadata, read_request
from pipelines.types import GenerationRequest, StepPreview
from studio.jobs import EventKind, Job, JobEvent, JobKind
from studio.qt_image import qimage_to_array
from studio.widgets.compare_view import OWN_FINAL, CompareView
from tests.studio.events import wait_event

SIDE = 16  # preview side of the hand-made results


class FakeSession(QObject):
    """The session's event stream and comparison history, without a worker thread."""

    event = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.comparisons = []
        self.job = None

    def report(self, kind: EventKind, **fields) -> None:
        self.event.emit(JobEvent(kind, self.job, **fields))

    def start(self, request, samplers) -> None:
        self.job = Job(JobKind.COMPARE, request, samplers=tuple(samplers))
        self.report(EventKind.QUEUED)  # the view waits for the start: a queued job may wait
        self.report(EventKind.STARTED)


class FakeSettings:
    def __init__(self, folder) -> None:
        self.output_folder = str(folder)


def grey(value: int) -> np.ndarray:
    return np.full((SIDE, SIDE, 3), value, dtype=np.uint8)


def make_column(sampler, steps, evaluations, base, *, final=None, lockstep=False):
    """A column whose step k preview is grey level base + k; its final image grey level final."""
    request = GenerationRequest(
        prompt="a red circle", model="tiny", seed=5, steps=steps, sampler=sampler
    )
    completed = len(evaluations)
    image = None if final is None else Image.new("RGB", (64, 64), (final, final, final))
    return CompareColumn(
        sampler=sampler,
        steps=steps,
        request=request,
        previews=[grey(base + k) for k in range(completed)],
        evaluations=list(evaluations),
        elapsed=[0.1 * (k + 1) for k in range(completed)],
        image=image,
        cancelled=final is None,
        planned_evaluations=evaluations[-1] if final is not None else 0,
        lockstep=lockstep,
    )


def make_result(*columns) -> CompareResult:
    request = GenerationRequest(prompt="a red circle", model="tiny", seed=5, steps=4)
    return CompareResult(request=request, columns=list(columns), initial_noise=None)


def shown(view) -> list[int]:
    """The grey level each column shows (every hand-made picture is one solid grey)."""
    return [int(qimage_to_array(c.image)[0, 0, 0]) for c in view.columns]


@pytest.fixture
def view(qtbot, tmp_path):
    session = FakeSession()
    widget = CompareView(session, FakeSettings(tmp_path / "out"))
    qtbot.addWidget(widget)
    widget.resize(900, 500)
    return widget


@pytest.fixture
def euler_ddim():
    return make_result(
        make_column("Euler", 4, [1, 2, 3, 4], 10, final=200, lockstep=True),
        make_column("DDIM", 3, [1, 2, 3], 50, final=100, lockstep=True),
    )


# ---- the compare view on hand-made results ------------------------------------------------------


def test_slider_shows_the_right_step_in_every_column(view, euler_ddim):
    view.show_result(euler_ddim)

    assert view.slider.isEnabled() and view.slider.maximum() == 4
    assert view.slider.value() == 4 and shown(view) == [13, 52]  # opens on the last step
    for value, expected in ((1, [10, 50]), (2, [11, 51]), (3, [12, 52]), (4, [13, 52])):
        view.slider.setValue(value)
        assert shown(view) == expected, value  # a shorter run holds its last step
    view.slider.setValue(2)
    assert [c.title.text() for c in view.columns] == ["Euler", "DDIM"]
    assert view.columns[0].info.text() == "step 2/4 · 2 evals · 0.20 s"
    assert view.columns[1].info.text() == "step 2/3 · 2 evals · 0.20 s"
    assert view.position_label.text() == "step 2 / 4"


def test_alignment_by_model_evaluations_lines_up_heun_with_euler(view):
    # Heun spends 2 evaluations per step (1 on the last): 3 steps cost 5, like 5 Euler steps.
    result = make_result(
        make_column("Euler", 5, [1, 2, 3, 4, 5], 10, final=200),
        make_column("Heun", 3, [2, 4, 5], 50, final=100),
    )
    view.show_result(result)
    view.slider.setValue(2)
    assert shown(view) == [11, 51]  # by step index: Heun's step 2 has cost twice Euler's

    view.set_align_mode("evaluations")

    assert view.slider.maximum() == 5
    view.slider.setValue(4)  # 4 evaluations: Euler step 4, Heun step 2
    assert view.shown_indices() == [3, 1] and shown(view) == [13, 51]
    assert view.columns[1].info.text().startswith("step 2/3 · 4 evals")
    view.slider.setValue(3)  # Heun has not finished step 2 after 3 evaluations: it shows step 1
    assert shown(view) == [12, 50]
    view.slider.setValue(5)
    assert shown(view) == [14, 52] and view.position_label.text() == "5 / 5 evaluations"

    view.set_align_mode("fraction")  # the same fraction of each run: the ends line up too
    assert view.slider.value() == view.slider.maximum() and shown(view) == [14, 52]


def test_difference_view_against_a_column_and_against_the_own_final_image(view, euler_ddim):
    view.show_result(euler_ddim)
    view.slider.setValue(1)  # Euler grey 10, DDIM grey 50
    assert not view.legend.isVisible() and not view.reference_combo.isEnabled()

    view.difference_check.setChecked(True)  # against each column's own final image first
    assert view.reference_combo.currentData() == OWN_FINAL and view.reference_combo.isEnabled()
    assert view.scale_max == 190  # |10 - 200| is the largest difference, top of the scale
    euler, ddim = (qimage_to_array(c.image) for c in view.columns)
    assert (euler == euler[0, 0]).all() and euler[0, 0].tolist() == [252, 255, 164]  # scale top
    assert ddim[0, 0].sum() < euler[0, 0].sum()  # |50 - 100| = 50 of 190: a darker colour
    assert view.legend.isVisibleTo(view) and view.legend.scale_max == 190

    view.reference_combo.setCurrentIndex(view.reference_combo.findData(1))  # against DDIM
    assert view.scale_max == 40  # |10 - 50|
    euler, ddim = (qimage_to_array(c.image) for c in view.columns)
    assert (ddim == [0, 0, 4]).all()  # the reference against itself: the scale's bottom
    assert euler[0, 0].tolist() == [252, 255, 164]
    assert view.columns[1].title.text() == "DDIM · reference"

    view.difference_check.setChecked(False)
    assert shown(view) == [10, 50] and not view.legend.isVisibleTo(view)


def test_final_images_toggle_shows_each_columns_final_image(view, euler_ddim):
    view.show_result(euler_ddim)
    view.final_check.setChecked(True)
    assert shown(view) == [200, 100]
    assert view.columns[0].info.text().startswith("final · 4/4 steps")


def test_keys_step_the_slider_and_space_plays_to_the_end(qtbot, view, euler_ddim):
    view.show()
    qtbot.waitExposed(view)
    view.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is view)  # shortcuts need it active
    view.show_result(euler_ddim)
    view.slider.setFocus()

    qtbot.keyClick(view.slider, Qt.Key.Key_Home)
    assert view.slider.value() == 1
    qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    qtbot.keyClick(view.slider, Qt.Key.Key_Right)
    assert view.slider.value() == 3 and shown(view) == [12, 52]
    qtbot.keyClick(view.slider, Qt.Key.Key_Left)
    assert view.slider.value() == 2

    view.play_timer.setInterval(5)
    qtbot.keyClick(view.slider, Qt.Key.Key_Space)
    assert view.playing and view.play_button.text() == "⏸ Pause"
    qtbot.waitUntil(lambda: not view.playing, timeout=5_000)  # stops on the last step
    assert view.slider.value() == 4 and shown(view) == [13, 52]

    qtbot.keyClick(view.slider, Qt.Key.Key_Space)  # from the end, play starts over
    assert view.playing and view.slider.value() == 1
    view.toggle_play()
    assert not view.playing and view.play_button.text() == "▶ Play"


def test_live_frames_fill_the_columns_and_stale_frames_are_dropped(qtbot, view):
    from studio.worker import GenerationWorker

    worker = GenerationWorker()  # not started: its step callback runs in this thread here
    signals = []
    worker.compare_step.connect(lambda: signals.append(1))

    def step(column, number, value):
        preview = StepPreview(number, 4, "Euler", grey(value), 0.5 * number, number)
        worker._on_compare_step(column, preview)

    step(0, 1, 10)
    step(0, 2, 11)  # replaces column 0's frame the GUI has not fetched yet
    step(1, 1, 50)
    frames = worker.take_compare_frames()
    assert len(signals) == 1  # one pending signal fetches the newest frame of each column
    assert sorted(frames) == [0, 1] and frames[0].step == 2
    assert worker.take_compare_frames() == {}

    request = GenerationRequest(prompt="x", model="tiny", seed=5, steps=4)
    view.session.start(request, [("Euler", 4), ("DDIM", 3)])
    assert view.live and [c.title.text() for c in view.columns] == ["Euler", "DDIM"]
    assert all(c.image is None for c in view.columns) and not view.slider.isEnabled()
    assert not view.save_grid_button.isEnabled()

    view.session.report(EventKind.PREVIEW, frames=tuple(frames[c] for c in sorted(frames)))

    assert shown(view) == [11, 50]
    assert view.columns[0].info.text() == "step 2/4 · 2 evals · 1.00 s"
    assert view.progress.value() == 3 and view.progress.maximum() == 7


def test_export_writes_grid_animation_and_columns_without_overwriting(view, euler_ddim, tmp_path):
    problems = []
    view.problem.connect(problems.append)
    view.show_result(euler_ddim)

    grid = view.save_grid(tmp_path / "grid.png")
    assert grid == tmp_path / "grid.png"
    assert read_request(grid) == euler_ddim.request  # the shared request in the metadata
    extra = read_metadata(grid).extra["comparison"]
    assert [c["sampler"] for c in extra] == ["Euler", "DDIM"]
    with Image.open(grid) as image:
        assert image.width > 2 * 64  # two labelled panels side by side

    assert view.save_grid(grid) is None and "already exists" in problems[-1]  # never replaced

    for suffix in (".webp", ".gif"):
        animation = view.save_animation(tmp_path / f"steps{suffix}")
        with Image.open(animation) as image:
            assert image.n_frames == 4  # one frame per step of the longest column

    first = view.save_columns(tmp_path)
    second = view.save_columns(tmp_path)
    assert [p.name for p in first] == ["01-Euler-4.png", "02-DDIM-3.png"]
    assert first[0].parent != second[0].parent  # each export gets its own new folder
    assert read_request(first[1]).sampler == "DDIM" and read_request(first[1]).steps == 3

    default = view._default_path(".webp")  # what the file dialog proposes
    assert default.parent == tmp_path / "out" and default.suffix == ".webp"
    assert not default.exists()


def test_export_buttons_follow_what_there_is_to_save(view):
    assert not view.save_grid_button.isEnabled() and not view.slider.isEnabled()
    assert view.save_grid() is None  # nothing yet: a message, no dialog
    cancelled = make_result(
        make_column("Euler", 4, [1, 2], 10),  # cancelled after 2 steps: no final image
        make_column("Heun", 4, [], 50),  # never started
    )
    view.session.job = Job(JobKind.COMPARE, cancelled.request, samplers=(("Euler", 4),))
    view.session.report(EventKind.CANCELLED, result=cancelled)

    assert view.result is cancelled and qimage_to_array(view.columns[0].image)[0, 0, 0] == 11
    assert view.columns[1].image is None and view.columns[1].info.text() == "no steps"
    assert view.columns[0].title.text() == "Euler (cancelled)"
    assert view.save_grid_button.isEnabled() and view.save_animation_button.isEnabled()
    assert not view.save_columns_button.isEnabled()  # no column reached its final image
    assert "Cancelled" in view.status.text()


def test_a_failed_comparison_leaves_the_view_empty_and_usable(view, euler_ddim):
    request = GenerationRequest(prompt="x", model="tiny", seed=5, steps=4)
    view.session.start(request, [("Euler", 4), ("Heun", 4)])
    view.session.report(EventKind.FAILED, error="The model file was not found.")

    assert not view.live and view.columns == [] and "failed" in view.status.text()
    view.show_result(euler_ddim)  # and the next result shows normally
    assert shown(view) == [13, 52]


def test_session_keeps_the_last_comparisons_and_normalises_entries(qtbot):
    from studio.session import MAX_COMPARISONS, Session, compare_entries

    assert compare_entries(["Euler", ("Heun", 3), ("DDIM", 0)], 20) == [
        ("Euler", 20),
        ("Heun", 3),
        ("DDIM", 20),
    ]
    session = Session()
    try:
        seen = []
        session.event.connect(lambda event: seen.append(list(session.comparisons)))
        for _ in range(MAX_COMPARISONS + 2):
            result = make_result(make_column("Euler", 4, [1], 10, final=1))
            job = Job(JobKind.COMPARE, result.request, samplers=(("Euler", 4),))
            session._on_worker_event(JobEvent(EventKind.FINISHED, job, result=result))
        assert len(session.comparisons) == MAX_COMPARISONS  # the oldest are dropped
        assert [e.number for e in session.comparisons][0] == 3
        # Listeners see the history already holding the comparison their event is about.
        assert seen[-1][-1].number == 12 and seen[-1][-1].result is result
        assert seen[-1][-1].title == "#12: Euler · seed 5"
    finally:
        session.shutdown()


# ---- the sampler panel's compare mode -----------------------------------------------------------


def test_sampler_panel_compare_mode_chooses_two_to_eight_samplers(qtbot):
    from pipelines.compare import MAX_COLUMNS
    from studio.widgets.sampler_panel import COMPARE_MAX, SamplerPanel
    from studio.worker import SamplerInfo

    names = ["Euler", "Euler a", "Heun", "DDIM", "DPM++ 2M Karras", "UniPC", "LMS", "DDPM", "PNDM"]
    panel = SamplerPanel()
    qtbot.addWidget(panel)
    panel.set_samplers([SamplerInfo(n, f"{n} sampler", 1) for n in names], "Euler")
    panel.show()

    assert COMPARE_MAX == MAX_COLUMNS
    assert not panel.compare_table.isVisible() and panel.samplers.isVisible()
    panel.compare_mode.setChecked(True)
    assert panel.compare_table.isVisible() and not panel.samplers.isVisible()
    assert panel.compare_entries() == ["Euler", "DPM++ 2M Karras"]  # the default pair

    panel.set_compare_entries(["Euler"])
    assert not panel.compare_button.isEnabled() and "at least 2" in panel.compare_count.text()
    panel.compare_table.item(2, 0).setCheckState(Qt.CheckState.Checked)  # tick Heun by hand
    panel.compare_table.cellWidget(2, 1).setValue(3)  # with its own 3 steps
    assert panel.compare_entries() == ["Euler", ("Heun", 3)]
    assert panel.compare_button.isEnabled()

    panel.set_compare_entries(names)
    assert not panel.compare_button.isEnabled() and "at most 8" in panel.compare_count.text()
    panel.set_compare_entries(names[:8])
    assert panel.compare_button.isEnabled()
    panel.set_busy(True)
    assert not panel.compare_button.isEnabled()
    with qtbot.waitSignal(panel.compare_clicked, timeout=1000, raising=False) as blocker:
        panel.set_busy(False)
        qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    assert blocker.signal_triggered


# ---- through the real window with tiny models ---------------------------------------------------


def test_comparison_in_the_window_fills_columns_and_lands_in_history(qtbot, window, tmp_path):
    from pipelines.compare import CompareResult as Result

    steps = []
    window.session.event.connect(
        lambda e: e.kind is EventKind.PREVIEW and steps.append(window.progress.format())
    )
    window.prompt_panel.prompt.setPlainText("a red cube")
    window.sampler_panel.set_compare_mode(True)
    window.sampler_panel.set_compare_entries(["Euler", ("Heun", 2)])

    with wait_event(qtbot, window.session, EventKind.FINISHED, JobKind.COMPARE, 90_000) as blocker:
        window.compare_action.trigger()  # what Ctrl+Shift+Enter does
    result = blocker.args[0].result

    assert isinstance(result, Result) and not result.cancelled
    assert steps, "no live column previews reached the window"
    assert set(steps) == {"comparing"}
    assert [(c.sampler, c.steps, c.completed) for c in result.columns] == [
        ("Euler", 4, 4),
        ("Heun", 2, 2),
    ]
    assert result.columns[1].evaluations == [2, 3]
    view = window.compare_view
    assert window.centre_tabs.currentWidget() is view
    assert view.result is result and len(view.columns) == 2
    assert all(c.image is not None for c in view.columns)
    assert len(window.session.comparisons) == 1 and view.history_combo.count() == 1
    assert window.sampler_panel.compare_button.isEnabled() and not window.session.busy
    # The status bar's bar tells of the comparison, not of the model loaded before it.
    assert window.progress.format() == "comparison done"
    assert window.progress.value() == window.progress.maximum()

    # A single generation afterwards shows on the image tab; the comparison can be reopened.
    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=60_000):
        window.generate_action.trigger()
    assert window.centre_tabs.currentWidget() is window.canvas
    view.show_result(make_result(make_column("Euler", 4, [1], 10, final=1)))
    view.show_comparison(0)
    assert view.result is result
    grid = view.save_grid(tmp_path / "grid.png")
    assert read_request(grid) == result.request


def test_cancel_stops_every_column(qtbot, window):
    window.prompt_panel.steps.setValue(150)
    window.sampler_panel.set_compare_entries(["Euler", "DDIM", "Heun"])

    # Esc's action on the first column preview: the comparison is certainly under way.
    def cancel_on_preview(event) -> None:
        if event.kind is EventKind.PREVIEW:
            window.cancel_action.trigger()

    window.session.event.connect(cancel_on_preview)
    with wait_event(qtbot, window.session, EventKind.CANCELLED, JobKind.COMPARE, 60_000) as blocker:
        window.compare()
    window.session.event.disconnect(cancel_on_preview)
    result = blocker.args[0].result

    assert result.cancelled and all(c.cancelled for c in result.columns)
    assert all(c.image is None and c.completed < 150 for c in result.columns)
    assert window.session.comparisons == [] and not window.session.busy
    assert "Cancelled" in window.compare_view.status.text()
    assert window.progress.format() == "cancelled" and window.progress.maximum() > 0
    assert not window.compare_view.live

    window.prompt_panel.steps.setValue(2)
    window.sampler_panel.set_compare_entries(["Euler", "DDIM"])
    with wait_event(qtbot, window.session, EventKind.FINISHED, JobKind.COMPARE, 60_000) as blocker:
        window.compare()
    assert [c.completed for c in blocker.args[0].result.columns] == [2, 2]
    assert len(window.session.comparisons) == 1


def test_closing_the_window_during_a_comparison_stops_the_thread(qtbot, window):
    window.prompt_panel.steps.setValue(150)
    window.sampler_panel.set_compare_entries(["Euler", "Heun"])
    with wait_event(qtbot, window.session, EventKind.PREVIEW, JobKind.COMPARE, 60_000):
        window.compare()
    assert window.session.comparing

    window.close()  # cancels, and returns once the worker thread has stopped

    assert not window.session.thread.isRunning()
    assert window.session.comparisons == []
