"""Generate and Compare always queue; the queue panel reorders, duplicates and removes waiting jobs,
and each job keeps the settings it was queued with."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.jobs import EventKind
from tests.studio.events import wait_event

LONG_STEPS = 200  # long enough on the tiny model for the queue to be edited while it runs


def press_generate(qtbot, window) -> None:
    qtbot.mouseClick(window.prompt_panel.generate_button, Qt.MouseButton.LeftButton)


def start_long_job(qtbot, window):
    """Queue a long run and wait until it is under way; returns its job."""
    window.prompt_panel.prompt.setPlainText("long")
    window.prompt_panel.steps.setValue(LONG_STEPS)
    with wait_event(qtbot, window.session, EventKind.PREVIEW) as blocker:
        press_generate(qtbot, window)
    window.prompt_panel.steps.setValue(2)
    return blocker.args[0].job


def queue_prompts(qtbot, window, *prompts: str) -> dict[str, int]:
    for prompt in prompts:
        window.prompt_panel.prompt.setPlainText(prompt)
        press_generate(qtbot, window)
    return {job.request.prompt: job.id for job in window.session.waiting}


def waiting_prompts(window) -> list[str]:
    return [job.request.prompt for job in window.session.waiting]


def finish_all(qtbot, window, count: int) -> None:
    qtbot.waitUntil(lambda: len(window.session.history) == count and not window.session.busy,
                    timeout=120_000)  # fmt: skip


def test_ten_quick_presses_give_ten_jobs_and_ten_history_entries_with_their_seeds(qtbot, window):
    window.prompt_panel.random_seed.setChecked(True)
    window.prompt_panel.prompt.setPlainText("ten")
    window.prompt_panel.steps.setValue(2)
    queued = []
    window.session.event.connect(
        lambda event: event.kind is EventKind.QUEUED and queued.append(event.job)
    )

    for _ in range(10):
        press_generate(qtbot, window)
    assert len(queued) == 10  # none refused while the first runs
    assert window.prompt_panel.generate_button.isEnabled()
    finish_all(qtbot, window, 10)

    seeds = [job.request.seed for job in queued]
    assert all(seed is not None for seed in seeds)
    assert len(set(seeds)) == 10  # each job drew its own seed when it was queued
    assert [entry.request.seed for entry in window.session.history] == seeds
    assert window.gallery.count() == 10
    assert window.queue_panel.list.count() == 0


def test_a_fixed_seed_is_kept_by_every_queued_job(qtbot, window):
    window.prompt_panel.steps.setValue(2)
    window.prompt_panel.seed.setText("77")
    for _ in range(3):
        press_generate(qtbot, window)
    finish_all(qtbot, window, 3)
    assert [entry.request.seed for entry in window.session.history] == [77, 77, 77]


def test_waiting_jobs_are_reordered_duplicated_and_removed_in_the_panel(qtbot, window):
    long_job = start_long_job(qtbot, window)
    ids = queue_prompts(qtbot, window, "b", "c", "d")
    panel = window.queue_panel
    assert panel.list.count() == 4 and panel.list.item(0).text().startswith("Running")
    assert waiting_prompts(window) == ["b", "c", "d"]

    panel.select_job(ids["d"])
    panel.move_to_front()
    assert waiting_prompts(window) == ["d", "b", "c"]
    panel.select_job(ids["b"])
    panel.remove()
    assert waiting_prompts(window) == ["d", "c"]
    panel.select_job(ids["c"])
    panel.move_up()
    assert waiting_prompts(window) == ["c", "d"]
    panel.duplicate()
    assert waiting_prompts(window) == ["c", "c", "d"]
    panel.select_job(ids["d"])
    panel.move_down()  # already last: nothing moves
    assert waiting_prompts(window) == ["c", "c", "d"]
    assert [panel.list.item(row).text().split("  ")[1].split("\n")[0]
            for row in range(1, 4)] == ["c", "c", "d"]  # fmt: skip

    with wait_event(qtbot, window.session, EventKind.CANCELLED) as blocker:
        window.cancel_action.trigger()  # Esc: the running job only
    assert blocker.args[0].job.id == long_job.id
    finish_all(qtbot, window, 3)
    assert [entry.request.prompt for entry in window.session.history] == ["c", "c", "d"]
    duplicate, original = window.session.history[1], window.session.history[0]
    assert duplicate.request.seed == original.request.seed


def test_a_queued_job_keeps_its_settings_when_the_panels_change(qtbot, window):
    start_long_job(qtbot, window)
    window.prompt_panel.prompt.setPlainText("first")
    window.prompt_panel.cfg.setValue(3.0)
    press_generate(qtbot, window)
    window.prompt_panel.prompt.setPlainText("second")  # the panels stay editable
    window.prompt_panel.steps.setValue(3)
    window.prompt_panel.cfg.setValue(6.5)
    window.prompt_panel.seed.setText("5")
    press_generate(qtbot, window)

    window.cancel_action.trigger()
    finish_all(qtbot, window, 2)

    first, second = (entry.request for entry in window.session.history)
    assert (first.prompt, first.steps, first.cfg_scale, first.seed) == ("first", 2, 3.0, 1)
    assert (second.prompt, second.steps, second.cfg_scale, second.seed) == ("second", 3, 6.5, 5)


def test_clear_queue_removes_the_waiting_jobs_and_the_running_one_goes_on(qtbot, window):
    long_job = start_long_job(qtbot, window)
    queue_prompts(qtbot, window, "x", "y")
    removed = []
    window.session.event.connect(
        lambda event: event.kind is EventKind.REMOVED and removed.append(event.job.request.prompt)
    )

    window.clear_queue_action.trigger()

    assert removed == ["x", "y"] and window.session.waiting == ()
    assert window.session.running_job.id == long_job.id
    assert window.queue_panel.list.count() == 1
    with wait_event(qtbot, window.session, EventKind.CANCELLED):
        window.cancel_action.trigger()
    qtbot.waitUntil(lambda: not window.session.busy, timeout=30_000)
    assert window.session.history == []
    assert window.bottom_tabs.tabText(1) == "Queue"


def test_a_batch_count_queues_one_job_per_image_with_consecutive_seeds(qtbot, window):
    window.prompt_panel.steps.setValue(2)
    window.prompt_panel.seed.setText("40")
    window.prompt_panel.batch_count.setValue(3)
    press_generate(qtbot, window)
    finish_all(qtbot, window, 3)
    assert [entry.request.seed for entry in window.session.history] == [40, 41, 42]

    window.prompt_panel.random_seed.setChecked(True)
    jobs = window.generate()
    assert len(jobs) == 3 and len({job.request.seed for job in jobs}) == 3
    finish_all(qtbot, window, 6)
    assert [e.request.seed for e in window.session.history[3:]] == [j.request.seed for j in jobs]


def test_a_comparison_queues_behind_a_running_generation_and_runs_after_it(qtbot, window):
    from studio.jobs import JobKind

    long_job = start_long_job(qtbot, window)
    window.sampler_panel.set_compare_mode(True)
    window.sampler_panel.set_compare_entries(["Euler", "DDIM"])
    window.prompt_panel.prompt.setPlainText("compared")
    window.compare_action.trigger()
    assert window.sampler_panel.compare_button.isEnabled()  # not refused while busy
    (waiting,) = window.session.waiting
    assert waiting.kind is JobKind.COMPARE and waiting.samplers == (("Euler", 2), ("DDIM", 2))
    assert window.compare_view.live is False  # the view waits for the comparison to start

    with wait_event(qtbot, window.session, EventKind.FINISHED, JobKind.COMPARE, 90_000) as blocker:
        window.session.cancel(long_job)
    assert blocker.args[0].job.id == waiting.id
    assert blocker.args[0].result.request.prompt == "compared"
    assert len(window.session.comparisons) == 1 and window.session.history == []
