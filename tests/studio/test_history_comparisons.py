"""A finished comparison is kept on disk with its step history and reopens after a restart."""

from __future__ import annotations

import numpy as np

from studio.jobs import EventKind, JobKind
from tests.studio.events import wait_event


def test_a_comparison_reopens_after_the_window_restarts(qtbot, make_window, studio_settings):
    first = make_window(studio_settings)
    first.sampler_panel.set_compare_mode(True)
    first.sampler_panel.set_compare_entries(["Euler", ("DDIM", 2)])
    with wait_event(qtbot, first.session, EventKind.FINISHED, JobKind.COMPARE, 60_000) as blocker:
        first.compare_action.trigger()
    original = blocker.args[0].result
    first.close()

    window = make_window(studio_settings)
    qtbot.waitUntil(lambda: window.compare_view.history_combo.count() == 1, timeout=10_000)
    assert window.session.comparisons[0].title.endswith(
        f"Euler, DDIM · seed {original.request.seed}"
    )
    window.compare_view.show_comparison(0)
    shown = window.compare_view.result
    assert [(c.sampler, c.completed) for c in shown.columns] == [("Euler", 4), ("DDIM", 2)]
    for column, before in zip(shown.columns, original.columns):
        assert all(np.array_equal(a, b) for a, b in zip(column.previews, before.previews))
    assert len(window.compare_view.columns) == 2


def test_the_history_limit_is_a_setting_the_window_applies(qtbot, make_window, studio_settings):
    assert (studio_settings.history_limit, studio_settings.comparison_limit) == (0, 10)
    studio_settings.history_limit = 2
    window = make_window(studio_settings)
    assert (window.history_store.limit, window.history_store.comparison_limit) == (2, 10)
    for _ in range(3):
        with wait_event(qtbot, window.session, EventKind.FINISHED):
            window.generate_action.trigger()
    kept = [entry.id for entry in window.history_store.entries()]
    assert kept == [entry.stored_id for entry in window.session.history[:0:-1]]  # the newest two

    dialog = window.open_settings()
    assert dialog.history_limit.value() == 2
    dialog.history_limit.setValue(1)
    dialog.comparison_limit.setValue(3)
    dialog.accept()
    assert (studio_settings.history_limit, studio_settings.comparison_limit) == (1, 3)
    assert window.history_store.limit == 1
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()  # the worker's store prunes with the new limit
    assert [e.id for e in window.history_store.entries()] == [window.session.history[-1].stored_id]
