"""Batches: seeds seed, seed+1, … (or drawn), one file per image, every name checked up front."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from pipelines import cli
from pipelines.batches import batch_paths, batch_requests, batch_seeds
from pipelines.errors import ValidationError
from pipelines.export import read_request
from pipelines.types import MAX_SEED, GenerationRequest


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def generate(sd1_folder, out, *options: str) -> int:
    return cli.main(["generate", "--prompt", "a batch", "--model", str(sd1_folder), "--steps", "2",
                     "--size", "64x64", "--out", str(out), *options])  # fmt: skip


def test_a_batch_of_four_equals_four_single_runs_with_consecutive_seeds(
    sd1_folder, tmp_path, capsys
):
    assert generate(sd1_folder, tmp_path / "batch.png", "--seed", "11", "--batch-count", "4") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for seed in range(11, 15):
        assert generate(sd1_folder, tmp_path / f"single-{seed}.png", "--seed", str(seed)) == 0

    batch = [tmp_path / f"batch-{n:04d}.png" for n in range(1, 5)]
    assert lines == [f"wrote {path} (seed {seed})" for path, seed in zip(batch, range(11, 15))]
    assert not (tmp_path / "batch.png").exists()
    for path, seed in zip(batch, range(11, 15)):
        assert read_request(path).seed == seed
        assert np.array_equal(pixels(path), pixels(tmp_path / f"single-{seed}.png"))  # bit for bit
    assert not np.array_equal(pixels(batch[0]), pixels(batch[1]))


def test_a_batch_refuses_before_any_work_when_one_of_its_names_is_taken(
    sd1_folder, tmp_path, capsys, monkeypatch
):
    from pipelines.engine import Engine

    def must_not_run(*args, **kwargs):
        raise RuntimeError("the run started before the outputs were checked")

    monkeypatch.setattr(Engine, "__init__", must_not_run)
    (tmp_path / "b-0003.png").write_bytes(b"keep")

    code = generate(sd1_folder, tmp_path / "b.png", "--batch-count", "3")

    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "b-0003.png" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-0003.png"]
    assert (tmp_path / "b-0003.png").read_bytes() == b"keep"


@pytest.mark.parametrize("count", ["0", "1001"])
def test_a_batch_count_out_of_range_exits_2_writing_nothing(sd1_folder, tmp_path, capsys, count):
    code = generate(sd1_folder, tmp_path / "b.png", "--batch-count", count)
    assert code == cli.EXIT_USAGE and "Batch count" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_seeds_follow_on_wrap_past_the_largest_and_are_drawn_when_none_is_given():
    assert batch_seeds(7, 3) == [7, 8, 9]
    assert batch_seeds(MAX_SEED, 2) == [MAX_SEED, 0]
    drawn = batch_seeds(None, 5, random.Random(3))
    assert drawn == batch_seeds(None, 5, random.Random(3)) and len(set(drawn)) == 5
    requests = batch_requests(GenerationRequest(prompt="p", seed=None), 3, random.Random(1))
    assert [r.prompt for r in requests] == ["p"] * 3 and None not in [r.seed for r in requests]
    with pytest.raises(ValidationError, match="Batch count"):
        batch_seeds(1, 0)


def test_one_image_keeps_its_name_and_a_batch_numbers_them(tmp_path):
    assert batch_paths(tmp_path / "a.png", 1) == [tmp_path / "a.png"]
    assert batch_paths(tmp_path / "a.png", 2) == [tmp_path / "a-0001.png", tmp_path / "a-0002.png"]
