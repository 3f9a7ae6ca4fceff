"""The history's size limit (oldest first out) and the comparisons it keeps with their step
histories, read back whole after a restart."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.compare import compare
from pipelines.history_store import HistoryStore
from pipelines.types import GenerationRequest


@pytest.fixture(scope="module")
def comparison(engine, sd1_folder):
    request = GenerationRequest(prompt="a red circle", model=str(sd1_folder), seed=3, steps=3)
    return compare(engine, request, ["Euler", ("DDIM", 2)])


def add_images(store: HistoryStore, count: int) -> list[str]:
    return [store.add(Image.new("RGB", (16, 16), (n, 0, 0)), GenerationRequest(f"image {n}")).id
            for n in range(count)]  # fmt: skip


def test_past_the_limit_the_oldest_images_go_first(tmp_path):
    store = HistoryStore(tmp_path, limit=3)
    ids = add_images(store, 5)
    assert [entry.id for entry in store.entries()] == ids[:1:-1]  # the newest three
    assert not any(tmp_path.glob(f"{ids[0]}*")) and not any(tmp_path.glob(f"{ids[1]}*"))
    unlimited = HistoryStore(tmp_path)
    add_images(unlimited, 2)
    assert len(unlimited.entries()) == 5
    unlimited.limit = 1  # lowered in the settings: the next prune keeps only the newest
    assert unlimited.prune() == 4 and len(unlimited.entries()) == 1


def test_a_comparison_is_read_back_whole_after_a_restart(tmp_path, comparison):
    stored = HistoryStore(tmp_path).add_comparison(comparison)
    reopened = HistoryStore(tmp_path)  # as the next start makes it
    (listed,) = reopened.comparisons()
    assert listed.id == stored.id and listed.request == comparison.request
    assert listed.samplers == ("Euler", "DDIM")
    result = reopened.load_comparison(listed)
    assert result.request == comparison.request
    for column, original in zip(result.columns, comparison.columns, strict=True):
        assert (column.sampler, column.steps, column.completed) == (
            original.sampler, original.steps, original.completed)  # fmt: skip
        assert column.evaluations == original.evaluations and column.request == original.request
        assert all(np.array_equal(a, b) for a, b in zip(column.previews, original.previews))
        assert np.array_equal(np.asarray(column.image), np.asarray(original.image))
    assert reopened.entries() == []  # comparisons are not images of the strip


def test_past_the_comparison_limit_the_oldest_go_and_broken_ones_are_skipped(tmp_path, comparison):
    store = HistoryStore(tmp_path, comparison_limit=2)
    first, second, third = (store.add_comparison(comparison).id for _ in range(3))
    assert [c.id for c in store.comparisons()] == [third, second]
    assert not (store.comparisons_folder / first).exists()
    # A folder cut short before its record is not listed; a damaged record is noted, not fatal.
    (store.comparisons_folder / "20000101-000000-000000-abcdef").mkdir()
    (store.comparisons_folder / second / "comparison.json").write_text("{broken")
    assert [c.id for c in store.comparisons()] == [third]
    assert any(second in note for note in store.notes)
