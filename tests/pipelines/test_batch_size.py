"""Batch size: B images in one model call per step, each the image its single run makes; the
command line writes one file per image and combines --batch-count with compare."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from pipelines import cli
from pipelines.batches import batch_requests, split_batch, tile_grid
from pipelines.errors import ValidationError
from pipelines.export import format_parameters, parse_parameters, read_request
from pipelines.types import GenerationRequest

# Batched kernels sum in another order than single ones: measured on the CPU (fp32, toy world),
# a batch image differs from its single run by at most 1 level of 255 in a few pixels.
BATCH_TOLERANCE = 2


@pytest.fixture(scope="module")
def toy_engine():
    from pipelines.engine import Engine, EngineSettings

    return Engine(EngineSettings(precision="fp32", threads=1))


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("sampler", ["Euler", "Euler a"])
def test_a_batch_of_four_equals_four_single_runs(toy_engine, sampler):
    request = GenerationRequest(prompt="a small red circle at the top left on a blue background",
                                seed=40, steps=3, cfg_scale=5.0, sampler=sampler)  # fmt: skip
    batch = toy_engine.run(replace(request, batch_size=4))
    members = split_batch(batch)
    assert [m.request.seed for m in members] == [40, 41, 42, 43]
    assert all(m.request.batch_size == 4 and m.images == () for m in members)
    singles = [toy_engine.run(replace(request, seed=seed)) for seed in range(40, 44)]
    for member, single in zip(members, singles):
        difference = np.abs(pixels(member.image) - pixels(single.image))
        assert difference.max() <= BATCH_TOLERANCE and difference.mean() < 0.05
    # Images of a batch are not copies of one another.
    assert not np.array_equal(pixels(members[0].image), pixels(members[1].image))


def test_the_batch_size_is_in_the_metadata_and_seeds_of_a_batch_count_do_not_overlap():
    request = GenerationRequest(prompt="p", seed=10, batch_size=3, width=64, height=64)
    text = format_parameters(request)
    assert "Batch size: 3" in text and "Seed: 10" in text
    assert parse_parameters(text).batch_size == 3
    assert [r.seed for r in batch_requests(request, 3)] == [10, 13, 16]


@pytest.mark.parametrize(
    ("changes", "message"),
    [(dict(batch_size=0), "from 1 to 16"), (dict(batch_size=17), "from 1 to 16"),
     (dict(batch_size=2, sampler="DPM++ SDE"), "batch count")],
)  # fmt: skip
def test_bad_batch_sizes_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        GenerationRequest(prompt="p", **changes).validate()


def test_the_grid_tiles_row_by_row():
    tiles = [np.full((2, 3, 3), value, dtype=np.uint8) for value in (10, 20, 30)]
    grid = tile_grid(tiles)
    assert grid.shape == (4, 6, 3)
    assert (grid[0, 0, 0], grid[0, 3, 0], grid[2, 0, 0], grid[2, 3, 0]) == (10, 20, 30, 0)


def test_the_command_line_writes_each_image_of_batches_under_its_own_name(tmp_path, capsys):
    out = tmp_path / "out.png"
    args = ["generate", "--prompt", "a blue square", "--steps", "2", "--seed", "7",
            "--batch-size", "2", "--batch-count", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    paths = [tmp_path / f"out-{n:04d}.png" for n in range(1, 5)]
    assert lines == [f"wrote {p} (seed {s})" for p, s in zip(paths, range(7, 11))]
    for path, seed in zip(paths, range(7, 11)):
        stored = read_request(path)
        assert (stored.seed, stored.batch_size) == (seed, 2)
    before = [pixels(Image.open(p)) for p in paths]
    assert cli.main(args) == 2  # never overwrites
    assert "exist" in capsys.readouterr().err
    assert all(np.array_equal(pixels(Image.open(p)), b) for p, b in zip(paths, before))
    assert cli.main([*args[:-4], "--batch-size", "0", "--out", str(tmp_path / "x.png")]) == 2


def test_compare_takes_a_batch_count(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = cli.main(["compare", "--prompt", "a red circle", "--steps", "2", "--seed", "3",
                     "--samplers", "Euler,DDIM", "--batch-count", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    grids = [tmp_path / "grid-0001.png", tmp_path / "grid-0002.png"]
    assert [read_request(g).seed for g in grids] == [3, 4]
    assert not out.exists()
