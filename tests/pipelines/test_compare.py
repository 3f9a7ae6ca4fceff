"""Sampler comparison on tiny real models: lockstep equals separate runs, alignment, cancel, files."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.compare import (
    HISTORY_SIDE,
    CompareColumn,
    align_steps,
    compare,
    difference,
    downscale,
)
from pipelines.errors import ExportError, ValidationError
from pipelines.export import read_metadata, read_request
from pipelines.grids import save_animation, save_columns, save_grid
from pipelines.types import ControlKind, ControlUnit, GenerationRequest

LOCKSTEP = ["Euler", "DDIM", "Euler a", "DPM++ 2M Karras", "UniPC"]


@pytest.fixture
def base_request(sd1_folder) -> GenerationRequest:
    return GenerationRequest(prompt="a red circle", model=str(sd1_folder), seed=7, steps=4)


@pytest.fixture(scope="module")
def finished(engine, sd1_folder):
    """One comparison shared by the tests that only read its result."""
    request = GenerationRequest(prompt="a red circle", model=str(sd1_folder), seed=7, steps=4)
    return compare(engine, request, ["Euler", ("DDIM", 3), "Heun"])


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def assert_equals_single_run(engine, column: CompareColumn) -> None:
    single = engine.run(column.request)
    assert np.abs(pixels(column.image) - pixels(single.image)).max() <= 2, column.sampler
    assert torch.allclose(column.latents, single.latents, atol=1e-4), column.sampler


@pytest.mark.parametrize("controlled", [False, True], ids=["plain", "controlnet"])
def test_lockstep_columns_equal_their_single_runs(
    engine, base_request, controlnet_sd1_folder, condition_image, controlled
):
    request = base_request
    if controlled:
        # start=0.25: the ControlNet sits out step 1, so its window is exercised too.
        unit = ControlUnit(
            ControlKind.CANNY, str(controlnet_sd1_folder), image=str(condition_image), start=0.25
        )
        request = replace(request, controls=(unit,))
    result = compare(engine, request, [*LOCKSTEP, "Heun"])
    assert [c.sampler for c in result.columns] == [*LOCKSTEP, "Heun"]
    assert [c.lockstep for c in result.columns] == [True] * len(LOCKSTEP) + [False]
    for column in result.columns:
        assert not column.cancelled and column.image.size == (64, 64)
        assert len(column.previews) == 4
        assert_equals_single_run(engine, column)
    # Same start, different paths: every step's estimate and the result differ (not Euler's and
    # DDIM's: unclipped, DDIM is Euler's method on the other latent form).
    euler, karras = result.columns[0], result.columns[LOCKSTEP.index("DPM++ 2M Karras")]
    assert not np.array_equal(euler.previews[0], karras.previews[0])
    assert np.abs(pixels(euler.image) - pixels(karras.image)).mean() > 0.5
    assert len(result.condition_maps) == (1 if controlled else 0)


def test_all_columns_start_from_the_same_noise(engine, finished):
    request = finished.request
    assert torch.equal(finished.initial_noise, engine.initial_noise(request))
    for column in finished.columns:
        assert column.request == replace(request, sampler=column.sampler, steps=column.steps)
    # With no steps taken yet the columns would be identical: the first evaluation of each column
    # sees the same latents, so same-schedule samplers agree on step 1's x0 estimate.
    same = compare(engine, replace(request, steps=1), ["Euler", "Euler a"])
    assert np.array_equal(same.columns[0].previews[0], same.columns[1].previews[0])


def test_columns_with_their_own_step_counts(engine, finished):
    euler, ddim, heun = finished.columns
    assert (euler.steps, ddim.steps, heun.steps) == (4, 3, 4)
    assert euler.lockstep is ddim.lockstep is False  # different step counts: nothing to batch with
    assert [len(c.previews) for c in finished.columns] == [4, 3, 4]
    assert euler.evaluations == [1, 2, 3, 4]
    assert heun.evaluations == [2, 4, 6, 7]
    assert heun.planned_evaluations == 7
    assert_equals_single_run(engine, heun)
    assert finished.max_steps == 4


def test_on_step_reports_each_column_in_order(engine, base_request):
    seen: list[tuple[int, int]] = []
    compare(
        engine,
        base_request,
        ["Euler", "DDIM", "Heun"],
        on_step=lambda i, p: seen.append((i, p.step)),
    )
    lockstep = [pair for pair in seen if pair[0] < 2]
    # Lockstep columns advance together: step 1 of both before step 2 of either.
    assert lockstep == [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4)]
    assert [pair for pair in seen if pair[0] == 2] == [(2, 1), (2, 2), (2, 3), (2, 4)]


def test_align_steps_by_evaluations_lines_up_heun_with_euler():
    request = GenerationRequest(prompt="x", seed=1)
    euler = CompareColumn("Euler", 20, request, previews=[np.zeros((1, 1, 3), np.uint8)] * 20)
    euler.evaluations = list(range(1, 21))
    euler.planned_evaluations = 20
    heun = CompareColumn("Heun", 10, request, previews=[np.zeros((1, 1, 3), np.uint8)] * 10)
    heun.evaluations = [2 * k for k in range(1, 10)] + [19]
    heun.planned_evaluations = 19
    columns = [euler, heun]
    assert align_steps(columns, 19, "evaluations") == [18, 9]
    assert align_steps(columns, 10, "evaluations") == [9, 4]
    assert align_steps(columns, 1, "evaluations") == [0, 0]  # Heun has no finished step yet
    assert align_steps(columns, 1.0, "evaluations") == [19, 9]
    assert align_steps(columns, 0.5, "evaluations") == [9, 3]  # 9.5 evaluations: Heun at 8
    assert align_steps(columns, 12, "step") == [12, 9]
    assert align_steps(columns, 0.5, "step") == [9, 4]
    assert align_steps(columns, 0.0, "step") == [0, 0]
    empty = CompareColumn("DDIM", 20, request, cancelled=True)
    assert align_steps([empty], 3) == [-1]
    with pytest.raises(ValueError):
        align_steps(columns, 1.5, "step")
    with pytest.raises(ValueError):
        align_steps(columns, 3, "time")  # type: ignore[arg-type]


def test_align_steps_on_a_real_comparison(finished):
    euler, ddim, heun = finished.columns
    assert align_steps(finished.columns, 6, "evaluations") == [3, 2, 2]
    assert align_steps(finished.columns, 3, "step") == [3, 2, 3]


def test_cancel_stops_every_column_and_the_engine_runs_again(engine, base_request):
    cancel = threading.Event()
    request = replace(base_request, steps=10)

    def on_step(index, preview):
        if index == 0 and preview.step == 2:
            cancel.set()

    result = compare(engine, request, ["Euler", "DDIM", "Heun"], on_step=on_step, cancel=cancel)
    assert result.cancelled
    assert all(c.cancelled and c.image is None for c in result.columns)
    # Lockstep columns finish the step they are in; the column not yet started never starts.
    assert [len(c.previews) for c in result.columns] == [2, 2, 0]
    again = compare(engine, request, ["Euler", "DDIM"])
    assert not again.cancelled and all(c.image is not None for c in again.columns)
    assert_equals_single_run(engine, again.columns[0])


def test_cancel_during_a_separate_column_skips_the_rest(engine, base_request):
    cancel = threading.Event()

    def on_step(index, preview):
        if preview.step == 2:
            cancel.set()

    result = compare(
        engine, base_request, ["Heun", "Euler", "DDIM"], on_step=on_step, cancel=cancel
    )
    assert [len(c.previews) for c in result.columns] == [2, 0, 0]
    assert all(c.cancelled for c in result.columns)


def test_history_is_downscaled_and_bounded(engine, base_request):
    sizes = []
    result = compare(
        engine, base_request, ["Euler", "Heun"], on_step=lambda i, p: sizes.append(p.image.shape),
        history_side=32,
    )  # fmt: skip
    assert set(sizes) == {(64, 64, 3)}  # live previews keep their size
    for column in result.columns:
        assert all(p.shape == (32, 32, 3) and p.dtype == np.uint8 for p in column.previews)
    assert downscale(np.zeros((512, 384, 3), np.uint8)).shape == (256, 192, 3)
    small = np.zeros((64, 48, 3), np.uint8)
    assert downscale(small).shape == small.shape and downscale(small) is not small
    # The documented worst case stays within the budget.
    assert 8 * 50 * HISTORY_SIDE * HISTORY_SIDE * 3 < 200e6


def test_bad_sampler_lists_are_refused(engine, base_request):
    with pytest.raises(ValidationError, match="Unknown sampler 'Eulerr'"):
        compare(engine, base_request, ["Euler", "Eulerr"])
    with pytest.raises(ValidationError, match="Steps"):
        compare(engine, base_request, [("Euler", 0)])
    with pytest.raises(ValidationError, match="at least one"):
        compare(engine, base_request, [])


def test_sdxl_columns_run_separately_and_match(engine, sdxl_folder):
    request = GenerationRequest(prompt="a cat", model=str(sdxl_folder), seed=1, steps=3)
    result = compare(engine, request, ["Euler", "DDIM"])
    assert [c.lockstep for c in result.columns] == [False, False]
    for column in result.columns:
        assert_equals_single_run(engine, column)


def test_difference_maps_through_a_colour_scale():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 200
    b[1, 1] = 100
    coloured, top = difference(a, b)
    assert coloured.dtype == np.uint8 and coloured.shape == (4, 4, 3)
    assert top == 200.0
    assert tuple(coloured[2, 2]) == (0, 0, 4)  # no difference: the scale's bottom
    assert tuple(coloured[0, 0]) == (252, 255, 164)  # the largest difference: its top
    assert coloured[1, 1].sum() > coloured[2, 2].sum()
    same, top = difference(a, a)
    assert top == 1.0 and (same == same[0, 0]).all()
    fixed, top = difference(a, b, scale_max=400)
    assert top == 400 and fixed[0, 0].sum() < coloured[0, 0].sum()
    with pytest.raises(ValueError):
        difference(a, np.zeros((5, 4, 3), np.uint8))


# ---- files ------------------------------------------------------------------------------------


def test_grid_has_one_labelled_panel_per_sampler_and_the_request(finished, tmp_path):
    path = save_grid(finished, tmp_path / "grid.png")
    with Image.open(path) as opened:
        grid = np.asarray(opened.convert("RGB"), dtype=np.int16)
    height, width = grid.shape[:2]
    assert width % 3 == 0 and width >= 3 * 64 and height > 64
    cell = width // 3
    panels = []
    for index, column in enumerate(finished.columns):
        left = index * cell + (cell - 64) // 2
        panel = grid[4 : 4 + 64, left : left + 64]
        assert np.array_equal(panel, pixels(column.image)), column.sampler
        label = grid[4 + 64 :, index * cell : (index + 1) * cell]
        assert (label > 150).any(), "each panel has a label"
        panels.append(panel)
    assert not np.array_equal(panels[0], panels[1]) and not np.array_equal(panels[0], panels[2])
    assert read_request(path) == finished.request
    extra = read_metadata(path).extra["comparison"]
    assert [(c["sampler"], c["steps"]) for c in extra] == [("Euler", 4), ("DDIM", 3), ("Heun", 4)]
    assert [c["evaluations"] for c in extra] == [4, 3, 7]
    with pytest.raises(ExportError, match="already exists"):
        save_grid(finished, path)


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_animation_has_one_frame_per_step(finished, tmp_path, suffix):
    path = save_animation(finished, tmp_path / f"steps{suffix}", duration_ms=100)
    with Image.open(path) as opened:
        assert opened.n_frames == 4  # the longest column; DDIM's 3 steps hold their last frame
        opened.seek(3)
        last = np.asarray(opened.convert("RGB"))
    assert last.shape[1] % 3 == 0
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"
    with pytest.raises(ExportError, match="already exists"):
        save_animation(finished, path)
    with pytest.raises(ExportError, match=".webp or .gif"):
        save_animation(finished, tmp_path / "steps.mp4")


def test_columns_are_saved_with_their_own_requests(finished, tmp_path):
    paths = save_columns(finished, tmp_path / "columns")
    assert [p.name for p in paths] == ["01-Euler-4.png", "02-DDIM-3.png", "03-Heun-4.png"]
    for path, column in zip(paths, finished.columns):
        assert read_request(path) == column.request
        with Image.open(path) as opened:
            assert np.array_equal(pixels(opened.convert("RGB")), pixels(column.image))
