"""The history strip keeps every finished image on disk and reads it back on the next start."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipelines.export import read_metadata, read_request
from pipelines.history_store import HistoryStore, history_folder
from pipelines.types import GenerationRequest
from studio.jobs import EventKind
from studio.qt_image import qimage_to_array
from tests.studio.events import wait_event


def generate(qtbot, window, prompt: str):
    window.prompt_panel.prompt.setPlainText(prompt)
    with wait_event(qtbot, window.session, EventKind.FINISHED) as blocker:
        window.generate_action.trigger()
    return blocker.args[0]


def wait_loaded(qtbot, window, count: int) -> None:
    qtbot.waitUntil(lambda: not window.gallery.loading and window.gallery.count() == count,
                    timeout=30_000)  # fmt: skip


def test_each_finished_image_is_written_to_the_history_folder_as_it_is_made(qtbot, window):
    event = generate(qtbot, window, "kept on disk")

    store = HistoryStore(history_folder(window.settings.data_folder))
    (entry,) = store.entries()
    assert entry.id == event.saved_as == window.session.history[0].stored_id
    assert read_request(entry.image_path) == event.result.request
    assert np.array_equal(np.asarray(store.image(entry)), np.asarray(event.result.image))


def test_the_history_survives_closing_and_reopening_the_window(qtbot, make_window, studio_settings):
    first = make_window(studio_settings)
    one = generate(qtbot, first, "one").result
    two = generate(qtbot, first, "two").result
    first.close()

    window = make_window(studio_settings)
    wait_loaded(qtbot, window, 2)

    keys = window.gallery.shown_keys()
    assert [window.gallery.stored_request(key).prompt for key in keys] == ["two", "one"]
    window.gallery.select(keys[1])
    assert np.array_equal(qimage_to_array(window.canvas.image), np.asarray(one.image))
    window.prompt_panel.prompt.setPlainText("something else")
    assert window.reuse_settings(keys[0])
    assert window.current_request().prompt == "two" and two.request.prompt == "two"
    saved = window.save_entry(keys[0])
    assert read_request(saved) == two.request
    # The run details kept with the image (its precision) are saved too, as Export copies them.
    assert read_metadata(saved).extra == {"precision": two.precision}

    window.gallery.filter.setText("ON")  # case does not matter
    assert window.gallery.shown_keys() == [keys[1]]
    window.gallery.filter.clear()
    assert window.gallery.shown_keys() == keys

    three = generate(qtbot, window, "three")  # a new image goes first
    assert window.gallery.shown_keys() == [0, *keys]
    assert three.saved_as not in keys


def test_a_damaged_entry_is_skipped_with_a_note_and_the_window_opens(
    qtbot, make_window, studio_settings
):
    store = HistoryStore(history_folder(studio_settings.data_folder))
    good = store.add(Image.new("RGB", (64, 64), "red"), GenerationRequest(prompt="good", seed=1))
    bad = store.add(Image.new("RGB", (64, 64), "blue"), GenerationRequest(prompt="bad", seed=2))
    bad.image_path.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    bad.request_path.write_bytes(b"\0\0")

    window = make_window(studio_settings)
    wait_loaded(qtbot, window, 1)

    assert window.gallery.shown_keys() == [good.id]
    assert any(bad.image_path.name in note for note in window.history_store.notes)


def test_delete_takes_an_image_out_with_undo_and_for_good_on_the_next_start(
    qtbot, make_window, studio_settings
):
    first = make_window(studio_settings)
    generate(qtbot, first, "keep")
    gone = generate(qtbot, first, "delete me").saved_as
    assert first.delete_entry(1)  # this session's image, by its index
    assert [e.id for e in first.history_store.entries()] != [] and first.gallery.count() == 1
    assert gone not in [e.id for e in first.history_store.entries()]
    assert "Undo" in [b.text() for b in first.message_bar._actions]
    first.message_bar._actions[0].click()
    assert first.gallery.count() == 2 and gone in [e.id for e in first.history_store.entries()]
    assert first.delete_entry(1)
    first.close()

    window = make_window(studio_settings)
    wait_loaded(qtbot, window, 1)
    assert [window.gallery.stored_request(k).prompt for k in window.gallery.shown_keys()] == [
        "keep"
    ]
    assert not any(window.history_store.folder.joinpath("deleted").iterdir())
    (key,) = window.gallery.shown_keys()
    opened = []
    window.open_url = opened.append
    window.open_entry_folder(key)
    assert opened[0].toLocalFile() == str(window.history_store.folder)
    assert window.delete_entry(key) and window.history_store.entries() == []


def test_the_strip_loads_thumbnails_only_for_the_images_in_view(qtbot, tmp_path):
    from studio.widgets.gallery import Gallery

    store = HistoryStore(tmp_path / "history")
    for number in range(60):
        sampler = "DDIM" if number % 10 == 0 else "Euler"
        store.add(Image.new("RGB", (32, 32), (number * 4, 0, 0)),
                  GenerationRequest(prompt=f"picture {number}", seed=number, sampler=sampler,
                                    model=f"/models/model-{number % 2}.safetensors"))  # fmt: skip
    gallery = Gallery()
    qtbot.addWidget(gallery)
    gallery.resize(700, 140)
    gallery.show()
    with qtbot.waitSignal(gallery.listed, timeout=30_000):  # what the worker's start waits for
        gallery.show_store(store)
    assert gallery.count() == 60 and all(row.prompt for row in gallery.model.rows)
    qtbot.waitUntil(lambda: not gallery.loading and gallery.count() == 60, timeout=30_000)
    # The view asks for the icons of the rows it paints; they load in the next turns.
    qtbot.waitUntil(lambda: gallery.model.rows[0].icon is not None and not gallery.loading,
                    timeout=10_000)  # fmt: skip
    qtbot.wait(100)

    with_icons = [row.key for row in gallery.model.rows if row.icon is not None]
    assert 0 < len(with_icons) < 20  # those in view, not all sixty
    assert with_icons == [row.key for row in gallery.model.rows[: len(with_icons)]]  # newest
    gallery.filter.setText("ddim")  # the sampler and the model's name are searched too
    assert len(gallery.shown_keys()) == 6
    gallery.filter.setText("model-1.safe")
    assert len(gallery.shown_keys()) == 30
    gallery.filter.setText("models/")  # not the folders
    assert gallery.shown_keys() == []
    gallery.filter.setText("picture 1")  # 1, 10…19: their prompts were read in the background
    assert len(gallery.shown_keys()) == 11
    last = gallery.model.shown[-1]
    assert last.icon is None  # the oldest picture has not been in view
    gallery.strip.scrollTo(gallery.model.index(len(gallery.model.shown) - 1))
    qtbot.waitUntil(lambda: last.icon is not None, timeout=10_000)  # asked for once in view


def test_an_image_that_cannot_be_kept_is_still_shown_and_the_window_says_why(
    qtbot, make_window, studio_settings
):
    folder = history_folder(studio_settings.data_folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the history folder should be")
    window = make_window(studio_settings)

    notices = []
    window.session.event.connect(lambda e: e.kind is EventKind.NOTICE and notices.append(e.error))
    event = generate(qtbot, window, "not kept")

    assert event.saved_as == "" and len(window.session.history) == 1
    assert notices and "not kept in the history folder" in notices[0]
    assert "not kept in the history folder" in window.message_bar.text()


def test_the_history_is_listed_before_the_worker_starts_its_imports(
    qtbot, make_window, studio_settings, monkeypatch
):
    # The worker's start-up holds the interpreter lock for long stretches (the tokenizer, torch);
    # reading the history in the same moments froze the window (BENCHMARKS.md).
    from studio.session import Session

    store = HistoryStore(history_folder(studio_settings.data_folder))
    for n in range(30):
        store.add(Image.new("RGB", (64, 64), "red"), GenerationRequest(prompt=f"p{n}", seed=n))
    windows, listed_at_start = [], []
    start_up = Session.start_up

    def recording(session: Session) -> None:
        listed_at_start.append(windows[0].gallery.count())
        start_up(session)

    monkeypatch.setattr(Session, "start_up", recording)
    windows.append(make_window(studio_settings, wait_for_model=False))
    qtbot.waitUntil(lambda: windows[0].session.loaded_model is not None, timeout=60_000)
    assert listed_at_start == [30]
