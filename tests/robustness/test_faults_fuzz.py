"""Faults during a run or a save, injected without mocking the pipeline: cancels at every point,
a step callback that raises, the GPU running out of memory mid-run, a full disk, places that cannot
be written. The promise: the caller is told (a ``StudioError`` where the user can act), nothing
half-written is left, and the engine runs the next request as if nothing happened."""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from PIL import Image

from pipelines.errors import ExportError, OutOfMemoryError
from pipelines.export import write_png
from pipelines.types import GenerationRequest
from tests.robustness.cases import case

STEPS = 4


@pytest.fixture
def good(sd1_folder):
    return GenerationRequest(prompt="a red circle", model=str(sd1_folder), steps=STEPS, width=64,
                             height=64, seed=7)  # fmt: skip


@pytest.fixture(scope="module")
def reference(engine, sd1_folder):
    """The image an undisturbed run gives, to compare the run after each fault with."""
    request = GenerationRequest(prompt="a red circle", model=str(sd1_folder), steps=STEPS,
                                width=64, height=64, seed=7)  # fmt: skip
    return engine.run(request).image.tobytes()


def assert_unharmed(engine, good, reference) -> None:
    result = engine.run(good)
    assert not result.cancelled and result.image.tobytes() == reference


@pytest.mark.parametrize(
    "at_step",
    [case(0, id="cancel-before-start"), *(case(s, id=f"cancel-at-step-{s}") for s in (1, 2, 3)),
     case(STEPS, id="cancel-at-last-step")],
)  # fmt: skip
@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DPM++ 2M Karras", "PNDM"])
def test_cancel_anywhere_then_run_again(engine, good, reference, at_step, sampler):
    cancel = threading.Event()
    if at_step == 0:
        cancel.set()
    steps: list[int] = []

    def on_step(preview):
        steps.append(preview.step)
        if preview.step == at_step:
            cancel.set()

    result = engine.run(replace(good, sampler=sampler), on_step=on_step, cancel=cancel)
    if at_step < STEPS:
        assert result.cancelled and result.image is None
        assert max(steps, default=0) == at_step  # stopped within the step that saw the cancel
    assert_unharmed(engine, good, reference)


class CallbackBug(Exception):
    pass


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        case(CallbackBug("the caller's own bug"), CallbackBug, id="step-callback-raises"),
        case(torch.cuda.OutOfMemoryError("CUDA out of memory"), OutOfMemoryError,
             id="out-of-memory-mid-run"),
        case(KeyboardInterrupt(), KeyboardInterrupt, id="ctrl-c-mid-run"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("at_step", [1, STEPS - 1])
def test_a_fault_inside_the_run_leaves_the_engine_usable(
    engine, good, reference, fault, expected, at_step
):
    def on_step(preview):
        if preview.step == at_step:
            raise fault

    with pytest.raises(expected) as raised:
        engine.run(good, on_step=on_step)
    if expected is OutOfMemoryError:
        assert "Lower the size" in str(raised.value)
    assert_unharmed(engine, good, reference)


# ---- saving ---------------------------------------------------------------------------------


@contextlib.contextmanager
def file_size_limit() -> Iterator[None]:
    """A file-size limit of 4 KiB: writes beyond it fail with EFBIG, as on a full disk. Held only
    around the write under test: the limit is per process, and pytest's own report (a file in CI)
    must not meet it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def noisy_image() -> Image.Image:
    return Image.effect_noise((256, 256), 100).convert("RGB")  # compresses to far over 4 KiB


def test_a_full_disk_leaves_no_file_and_no_temp(tmp_path):
    request = GenerationRequest(prompt="x", seed=1)
    image = noisy_image()
    with pytest.raises(ExportError) as raised, file_size_limit():
        write_png(image, request, tmp_path / "image.png")
    assert "image.png" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("target", "word"),
    [
        case("/proc/fuzz-image.png", "fuzz-image.png", id="save-unwritable-folder"),
        case("{tmp}/missing/deeper/image.png", "does not exist", id="save-missing-parents"),
        case("{tmp}/notes.txt/image.png", "file, not a folder", id="save-under-a-file"),
        case("{tmp}/a-folder.png", "folder", id="save-onto-a-folder"),
        case("{tmp}/existing.png", "already exists", id="save-onto-an-existing-file"),
        case("{tmp}/image.jpg", ".png", id="save-wrong-suffix"),
        case("{tmp}/" + "x" * 300 + ".png", "x" * 20, id="save-name-too-long"),
    ],
)
def test_saving_where_it_cannot_says_why_and_leaves_nothing(tmp_path, target, word):
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "a-folder.png").mkdir()
    (tmp_path / "existing.png").write_bytes(b"keep me")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ExportError) as raised:
        write_png(Image.new("RGB", (8, 8)), GenerationRequest(prompt="x"),
                  target.format(tmp=tmp_path))  # fmt: skip
    assert word in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "existing.png").read_bytes() == b"keep me"
