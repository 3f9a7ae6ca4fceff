"""A batch size in the window: one job, one model call per step for all its images, each image its
own history entry (and file) with its own seed, and the canvas shows the batch as a grid."""

from __future__ import annotations

import numpy as np

from pipelines.export import read_request
from studio.jobs import EventKind
from tests.studio.events import wait_event


def test_a_batch_is_one_job_with_one_history_entry_per_image(qtbot, window):
    window.prompt_panel.prompt.setPlainText("a batch")
    window.sampler_panel.batch_size.setValue(3)
    previews = []
    window.session.event.connect(
        lambda event: event.kind is EventKind.PREVIEW and previews.append(event.frames[-1])
    )
    with wait_event(qtbot, window.session, EventKind.FINISHED) as blocker:
        jobs = window.generate()
    assert len(jobs) == 1
    assert len(blocker.args[0].result.images) == 3

    history = window.session.history
    assert [entry.request.seed for entry in history] == [1, 2, 3]
    assert all(entry.request.batch_size == 3 for entry in history)
    assert window.gallery.count() == 3
    for entry in history:
        stored = window.history_store.find(entry.stored_id)
        assert read_request(stored.image_path).seed == entry.request.seed
    images = [np.asarray(entry.result.image) for entry in history]
    assert not np.array_equal(images[0], images[1])
    # The grid: two columns, two rows, the last cell empty; the previews were grids too.
    assert (window.canvas.image.width(), window.canvas.image.height()) == (128, 128)
    assert any(frame.image.width() == 128 for frame in previews)
