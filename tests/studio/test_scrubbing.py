"""The comparison's step scrubber on its own: no window, no Qt."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipelines.compare import CompareColumn, CompareResult
from pipelines.types import GenerationRequest
from studio.scrubbing import OWN_FINAL, StepScrubber

SIDE = 8


def grey(value: int) -> np.ndarray:
    return np.full((SIDE, SIDE, 3), value, dtype=np.uint8)


def column(sampler, steps, evaluations, base, final=None):
    """Step k's preview is grey level base + k; the final image grey level ``final``."""
    request = GenerationRequest(prompt="p", model="tiny", seed=5, steps=steps, sampler=sampler)
    done = len(evaluations)
    return CompareColumn(
        sampler=sampler, steps=steps, request=request,
        previews=[grey(base + k) for k in range(done)], evaluations=list(evaluations),
        elapsed=[0.5 * (k + 1) for k in range(done)],
        image=None if final is None else Image.new("RGB", (32, 32), (final,) * 3),
        cancelled=final is None, planned_evaluations=evaluations[-1] if evaluations else 0,
    )  # fmt: skip


@pytest.fixture
def euler_heun():
    request = GenerationRequest(prompt="p", model="tiny", seed=5, steps=5)
    columns = [column("Euler", 5, [1, 2, 3, 4, 5], 10, 200), column("Heun", 3, [2, 4, 5], 50, 100)]
    return CompareResult(request=request, columns=columns, initial_noise=None)


def levels(scrubber) -> list[int | None]:
    return [None if c.picture is None else int(c.picture[0, 0, 0]) for c in scrubber.columns()]


def test_positions_pick_each_columns_step_in_every_alignment(euler_heun):
    scrubber = StepScrubber()
    heard = []
    scrubber.subscribe(heard.append)
    scrubber.show(euler_heun)
    assert heard == ["result"] and scrubber.position == scrubber.top == 5  # opens at the end

    scrubber.set_position(2)
    assert scrubber.shown_indices() == [1, 1] and levels(scrubber) == [11, 51]
    scrubber.set_position(99)  # clamped to the last step
    assert scrubber.position == 5 and levels(scrubber) == [14, 52]  # Heun holds its last step
    assert scrubber.columns()[1].info == "step 3/3 · 5 evals · 1.50 s"

    scrubber.set_alignment("evaluations")
    scrubber.set_position(4)  # 4 evaluations: Euler's step 4, Heun's step 2
    assert scrubber.shown_indices() == [3, 1] and scrubber.position_text() == "4 / 5 evaluations"
    scrubber.set_position(3)  # Heun has not finished its second step after 3 evaluations
    assert levels(scrubber) == [12, 50]
    assert heard == ["result", "position", "position", "range", "position", "position"]


def test_changing_the_alignment_keeps_the_moment_as_a_fraction(euler_heun):
    scrubber = StepScrubber()
    scrubber.show(euler_heun)
    scrubber.set_position(3)  # halfway along 1..5
    scrubber.set_alignment("fraction")
    assert scrubber.position == 3 and scrubber.position_text() == "60 % of each run"
    scrubber.set_position(scrubber.top)
    assert scrubber.at_end and levels(scrubber) == [14, 52]  # both runs' ends line up
    with pytest.raises(ValueError):
        scrubber.set_alignment("seconds")


def test_differences_share_one_scale_and_finals_are_sized_once(euler_heun):
    scrubber = StepScrubber()
    scrubber.show(euler_heun)
    scrubber.set_position(1)  # Euler grey 10, Heun grey 50
    scrubber.set_view(difference=True)  # against each column's own final image
    columns = scrubber.columns()
    assert scrubber.scale_max == 190  # |10 - 200|, the largest of both columns
    assert columns[0].picture[0, 0].tolist() == [252, 255, 164]  # the scale's top colour
    assert columns[1].picture[0, 0].sum() < columns[0].picture[0, 0].sum()  # |50 - 100| is less

    scrubber.set_view(reference=1)
    columns = scrubber.columns()
    assert scrubber.scale_max == 40 and columns[1].title == "Heun · reference"
    assert (columns[1].picture == [0, 0, 4]).all()  # the reference against itself

    scrubber.set_view(difference=False, final=True, reference=OWN_FINAL)
    assert levels(scrubber) == [200, 100] and scrubber.scale_max == 0.0
    first = scrubber.final_picture(0, (SIDE, SIDE))
    assert first.shape == (SIDE, SIDE, 3) and scrubber.final_picture(0, (SIDE, SIDE)) is first
    assert scrubber.position_text() == "final images"
    assert scrubber.columns()[0].info.startswith("final · 5/5 steps")


def test_nothing_shown_means_no_columns_and_a_cancelled_column_is_named(euler_heun):
    scrubber = StepScrubber()
    assert scrubber.columns() == [] and not scrubber.has_steps and scrubber.top == 1
    request = GenerationRequest(prompt="p", model="tiny", seed=5, steps=4)
    cancelled = CompareResult(request=request, columns=[column("Euler", 4, [1, 2], 10)],
                              initial_noise=None)  # fmt: skip
    scrubber.show(cancelled, reference=3)  # a reference that does not exist falls back
    assert scrubber.reference == OWN_FINAL and scrubber.top == 2
    (shown,) = scrubber.columns()
    assert shown.title == "Euler (cancelled)" and "Cancelled before the end." in shown.tip


def test_the_scrubber_imports_no_qt():
    code = (
        "import sys, studio.scrubbing\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)  # fmt: skip
    assert out.stdout.strip() == "[]"
