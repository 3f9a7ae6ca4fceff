"""A branched run beside the same run without its branches, step by step from the same noise: the
compare view shows the two, aligned by step, so that the effect of a branch can be watched from
the step it was made at.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from pipelines.branching import branch_titles
from pipelines.compare import (
    HISTORY_SIDE,
    CompareColumn,
    CompareResult,
    CompareStepCallback,
    downscale,
)
from pipelines.errors import ValidationError
from pipelines.samplers import get_sampler
from pipelines.types import GenerationRequest, PreviewMode, StepPreview

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipelines.engine import Engine


def compare_branches(
    engine: Engine,
    request: GenerationRequest,
    on_step: CompareStepCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    history_side: int = HISTORY_SIDE,
    on_progress: Callable[[float, str], None] | None = None,
) -> CompareResult:
    """Run ``request`` without its branches, then with them, from the same preparation; each
    column keeps a preview of every step (as :func:`pipelines.compare.compare` does)."""
    if not request.branches:
        raise ValidationError("This image has no branch to compare with its unbranched run.")
    cancel = cancel or threading.Event()
    with engine.exclusive():
        prepared = engine.prepare(request, on_progress)
        request = prepared.request
        # The comparison is about watching the steps: a request without previews still gets them.
        mode = PreviewMode.APPROXIMATE if request.preview is PreviewMode.NONE else request.preview
        branched = prepared.with_changes(preview=mode)
        runs = [replace(branched, request=replace(branched.request, branches=())), branched]
        planned = get_sampler(request.sampler).total_evaluations(
            request.steps, prepared.model.scheduler_config
        )
        columns = [
            CompareColumn(title, request.steps, run.request, planned_evaluations=planned)
            for title, run in zip(branch_titles(request), runs)
        ]
        started = time.perf_counter()
        for index, (run, column) in enumerate(zip(runs, columns)):
            if cancel.is_set():
                column.cancelled = True
                continue

            def record(preview: StepPreview, index: int = index, column: CompareColumn = column
                       ) -> None:  # fmt: skip
                column.previews.append(downscale(preview.image, history_side))
                column.evaluations.append(preview.evaluations)
                column.elapsed.append(preview.elapsed)
                if on_step is not None:
                    on_step(index, preview)

            result = engine.execute(run, record, cancel)
            column.image, column.cancelled, column.latents = (
                result.image, result.cancelled, result.latents
            )  # fmt: skip
    return CompareResult.of_run(request, columns, prepared, started)
