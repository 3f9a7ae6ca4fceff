"""Exporting a selection of the history strip to a folder: PNGs with their settings, never over
an existing file, one message with the count."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from pipelines.export import read_request
from studio.jobs import EventKind
from tests.studio.events import wait_event
from tests.studio.test_pause_and_branch import finish


def test_three_selected_entries_are_exported_with_their_settings_and_never_overwritten(
    qtbot, window, tmp_path, monkeypatch
):
    for prompt in ("a red circle", "a blue square", "a green triangle"):
        window.prompt_panel.prompt.setPlainText(prompt)
        window.generate_action.trigger()
    finish(qtbot, window, 3)
    gallery = window.gallery
    gallery.strip.selectAll()
    keys = gallery.selected_keys()
    assert keys == [2, 1, 0]  # newest first, as shown

    out = tmp_path / "exported"
    out.mkdir()
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda *args: asked.append(args) or str(out))  # fmt: skip
    with qtbot.waitSignal(gallery.export_requested) as blocker:
        gallery.export_action.trigger()  # Ctrl+Shift+E in the strip
    assert blocker.args[0] == keys and len(asked) == 1
    written = list(out.iterdir())
    assert len(written) == 3
    assert "Exported 3 image(s)" in window.statusBar().currentMessage()
    history = [window.session.history[key] for key in keys]
    entries = {entry.request.prompt: entry for entry in history}
    assert sorted(read_request(p).prompt for p in written) == sorted(entries)  # three images
    for path in written:
        entry = entries[read_request(path).prompt]
        stored = window.history_store.find(entry.stored_id)
        assert path.read_bytes() == stored.image_path.read_bytes()  # as the history keeps it

    again = window.export_entries(keys[:2], out)  # the same images again: new names
    assert len(again) == 2 and not set(again) & set(written)
    assert len(list(out.iterdir())) == 5
    originals = {read_request(p).prompt: p.read_bytes() for p in written}
    assert [p.read_bytes() for p in again] == [originals[read_request(p).prompt] for p in again]
    assert "Exported 2 image(s)" in window.statusBar().currentMessage()


def test_an_export_to_a_missing_folder_says_so_and_writes_nothing(qtbot, window, tmp_path):
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()
    written = window.export_entries([0], tmp_path / "gone")
    assert written == [] and "does not exist" in window.last_error
    assert not (tmp_path / "gone").exists()


def test_an_entry_gone_from_the_history_is_named_not_skipped_in_silence(qtbot, window, tmp_path):
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()
    out = tmp_path / "exported"
    out.mkdir()
    written = window.export_entries([0, "no-such-entry"], out)
    assert len(written) == 1 and list(out.iterdir()) == written
    assert "Exported 1 of 2 image(s)" in window.last_error
    assert "1 could no longer be read from the history" in window.last_error
