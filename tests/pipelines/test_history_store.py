"""The history kept on disk: entries written whole or not listed, read lazily, damaged ones skipped
with a note, deleted with a way back, and nothing lost but the running image when a process dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.export import read_request
from pipelines.history_store import THUMBNAIL_SIZE, HistoryStore
from pipelines.types import GenerationRequest

ROOT = Path(__file__).resolve().parents[2]


def picture(value: int, size=(64, 48)) -> Image.Image:
    array = np.full((size[1], size[0], 3), value, np.uint8)
    array[:, : size[0] // 2, 0] = 255 - value
    return Image.fromarray(array)


def add(store: HistoryStore, prompt: str, value: int = 10, size=(64, 48)):
    return store.add(picture(value, size), GenerationRequest(prompt=prompt, seed=value))


def test_entries_are_listed_newest_first_and_read_back_whole(tmp_path):
    store = HistoryStore(tmp_path / "history")
    assert store.entries() == []  # no folder yet: an empty history, not an error
    first = add(store, "first", 10)
    second = add(store, "second", 200, size=(512, 256))

    fresh = HistoryStore(tmp_path / "history")
    assert fresh.entries() == [second, first]
    assert fresh.request(first) == GenerationRequest(prompt="first", seed=10)
    assert read_request(first.image_path) == fresh.request(first)  # as exported PNGs carry it
    assert fresh.details(first) == {}
    bf16 = store.add(picture(30, (64, 48)), GenerationRequest(prompt="bf16"), {"precision": "bf16"})
    assert HistoryStore(tmp_path / "history").details(bf16) == {"precision": "bf16"}
    assert np.array_equal(np.asarray(fresh.image(second)), np.asarray(picture(200, (512, 256))))
    thumb = fresh.thumbnail(second)
    assert thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE // 2)
    assert fresh.notes == []


def test_a_damaged_entry_is_skipped_with_a_note_and_the_others_still_read(tmp_path):
    store = HistoryStore(tmp_path)
    good = add(store, "good")
    broken = add(store, "broken")
    broken.image_path.write_bytes(b"\x89PNG\r\n\x1a\n half a file")
    broken.request_path.write_text("{not json")
    no_json = add(store, "no json")
    no_json.request_path.unlink()  # the PNG carries the request too
    no_thumb = add(store, "no thumbnail")
    no_thumb.thumbnail_path.write_bytes(b"garbage")

    assert store.request(broken) is None and store.image(broken) is None
    assert store.details(broken) == {}
    assert len(store.notes) == 1 and broken.image_path.name in store.notes[0]
    assert store.request(good).prompt == "good"
    assert store.request(no_json).prompt == "no json"
    assert store.thumbnail(no_thumb) is not None  # made again from the image
    assert Image.open(no_thumb.thumbnail_path).size[0] <= THUMBNAIL_SIZE


def test_only_entries_whose_image_was_written_are_listed(tmp_path):
    store = HistoryStore(tmp_path)
    entry = add(store, "whole")
    # What a process killed before its last write leaves: parts without the image, a temp file.
    (tmp_path / "20260101-000000-000000-abcdef.json").write_text("{}")
    (tmp_path / "20260101-000000-000000-abcdef.thumb.png").write_bytes(b"x")
    (tmp_path / ".diffusion-studio-0123abcd-20260101-000000-000000-abcdef.tmp").write_bytes(b"x")
    (tmp_path / "holiday.png").write_bytes(b"someone else's file")
    assert store.entries() == [entry]


def test_delete_hides_an_entry_restore_brings_it_back_and_purge_removes_it(tmp_path):
    store = HistoryStore(tmp_path)
    keep, gone = add(store, "keep"), add(store, "gone")

    store.delete(gone)
    assert store.entries() == [keep] and not gone.image_path.exists()
    assert store.restore(gone.id) == gone and store.entries() == [gone, keep]
    assert store.request(gone).prompt == "gone"

    store.delete(gone)
    assert store.purge_deleted() == 3
    assert store.restore(gone.id) is None and store.entries() == [keep]


WRITER = textwrap.dedent(
    """
    import sys
    from pipelines.engine import Engine
    from pipelines.history_store import HistoryStore
    from pipelines.types import GenerationRequest

    engine, store = Engine(), HistoryStore(sys.argv[2])
    for seed in range(1000):
        request = GenerationRequest(prompt="kept", model=sys.argv[1], steps=2, width=64,
                                    height=64, seed=seed)
        result = engine.run(request)
        store.add(result.image, result.request)
        print(seed, flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_process_killed_mid_run_loses_at_most_the_running_image(sd1_folder, tmp_path):
    folder = tmp_path / "history"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(sd1_folder), str(folder)],
                               stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        written = process.stdout.readline()  # the first image is kept
        time.sleep(0.05)  # into the next run, maybe into its writes
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        process.stdout.close()
    assert written.strip() == "0", "the writer failed before its first image"

    store = HistoryStore(folder)
    entries = store.entries()
    assert len(entries) >= 1
    for entry in entries:  # every listed entry is whole
        assert store.request(entry).prompt == "kept"
        assert store.image(entry).size == (64, 64)
    assert store.notes == []
