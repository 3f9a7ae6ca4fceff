"""The weights' number format of a run is shown in the status bar and kept in the saved PNG."""

from __future__ import annotations

from PySide6.QtCore import Qt

from pipelines.export import read_metadata
from pipelines.history_store import StoredEntry
from studio.jobs import EventKind
from tests.studio.events import wait_event


def test_precision_in_the_status_bar_and_the_saved_png(qtbot, window):
    precision = window.session.loaded_model.precision
    assert precision in ("fp32", "bf16", "fp16")
    assert window.model_label.text().endswith(f" · {precision}")
    qtbot.keyClicks(window.prompt_panel.prompt, "a red cube")
    with wait_event(qtbot, window.session, EventKind.FINISHED) as blocker:
        qtbot.mouseClick(window.prompt_panel.generate_button, Qt.MouseButton.LeftButton)
    result = blocker.args[0].result
    assert result.precision == precision
    assert f", {precision})" in window.statusBar().currentMessage()
    saved = window.save_shown()
    assert read_metadata(saved).extra["precision"] == precision
    kept = StoredEntry(window.session.history[0].stored_id, window.history_store.folder)
    assert read_metadata(kept.image_path).extra["precision"] == precision
