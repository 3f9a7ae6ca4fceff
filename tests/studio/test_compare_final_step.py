"""The compare view's last step shows each column's final image, lockstep columns included."""

from __future__ import annotations

import numpy as np

from pipelines.compare import downscale
from pipelines.previews import final_preview
from studio.jobs import EventKind, JobKind
from studio.qt_image import qimage_to_array
from tests.studio.events import wait_event


def test_the_last_step_of_every_column_is_its_final_image(qtbot, window):
    window.prompt_panel.prompt.setPlainText("a red cube")
    window.sampler_panel.set_compare_mode(True)
    window.sampler_panel.set_compare_entries(["Euler", "DDIM", ("Heun", 4)])
    with wait_event(qtbot, window.session, EventKind.FINISHED, JobKind.COMPARE, 90_000) as blocker:
        window.compare_action.trigger()
    result = blocker.args[0].result
    lockstep = {c.sampler: c.lockstep for c in result.columns}
    assert lockstep == {"Euler": True, "DDIM": True, "Heun": False}
    view = window.compare_view
    view.final_check.setChecked(False)  # the step previews, not the "Final images" toggle
    view.slider.setValue(view.slider.maximum())
    for panel, column in zip(view.columns, result.columns, strict=True):
        final = downscale(final_preview(column.image), 256)
        assert np.array_equal(qimage_to_array(panel.image), final), column.sampler
    view.slider.setValue(1)
    first = view.columns[0]
    assert not np.array_equal(qimage_to_array(first.image), result.columns[0].previews[-1])
