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
