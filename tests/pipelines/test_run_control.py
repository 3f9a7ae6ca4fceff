"""Pause, step and resume a run on the bundled toy-world model: a held run continues exactly where
it stood, and a cancel reaches it while it is held."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from pipelines.run_control import RunControl
from pipelines.types import GenerationRequest

STEPS = 4


@pytest.fixture(scope="module")
def toy_engine():
    from pipelines.engine import Engine, EngineSettings

    return Engine(EngineSettings(precision="fp32", threads=1))


@pytest.fixture
def toy_request():
    return GenerationRequest(prompt="a small red circle at the top left on a blue background",
                             seed=11, steps=STEPS, cfg_scale=5.0, sampler="Euler a")  # fmt: skip


def pixels(result) -> np.ndarray:
    return np.asarray(result.image)


class Steering:
    """Runs a request in a thread, with a control whose holds are recorded."""

    def __init__(self, engine, request: GenerationRequest) -> None:
        self.holds: list[int] = []
        self.steps: list[int] = []
        self.held = threading.Event()
        self.control = RunControl(on_hold=self._on_hold)
        self.cancel = threading.Event()
        self.result = None
        self.error: BaseException | None = None

        def work() -> None:
            try:
                self.result = engine.run(request, on_step=lambda p: self.steps.append(p.step),
                                         cancel=self.cancel, control=self.control)  # fmt: skip
            except BaseException as error:  # noqa: BLE001 - reported by the test
                self.error = error

        self.thread = threading.Thread(target=work)

    def _on_hold(self, completed: int, total: int) -> None:
        self.holds.append(completed)
        self.held.set()

    def wait_held(self) -> int:
        assert self.held.wait(60), "the run never held"
        self.held.clear()
        return self.holds[-1]

    def finish(self):
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def test_pause_step_resume_gives_the_uninterrupted_image(toy_engine, toy_request):
    plain = toy_engine.run(toy_request)
    steering = Steering(toy_engine, toy_request)
    steering.control.pause()  # holds at the first boundary
    steering.thread.start()
    assert steering.wait_held() == 1
    assert steering.steps == [1]  # the held step's preview was delivered before holding
    steering.control.step()
    assert steering.wait_held() == 2
    assert steering.steps == [1, 2]
    steering.control.resume()
    result = steering.finish()
    assert steering.holds == [1, 2]
    assert steering.steps == [1, 2, 3, 4]
    assert np.array_equal(pixels(result), pixels(plain))
    assert result.request.branches == ()


def test_a_cancel_reaches_a_held_run(toy_engine, toy_request):
    steering = Steering(toy_engine, toy_request)
    steering.control.pause()
    steering.thread.start()
    steering.wait_held()
    steering.cancel.set()
    result = steering.finish()
    assert result.cancelled and result.image is None
    # The engine is free again: the next run does not wait on the cancelled one.
    assert toy_engine.run(replace(toy_request, steps=2)).image is not None


def test_a_step_asked_while_running_pauses_after_it(toy_engine, toy_request):
    control = RunControl()
    control.step()  # paused with one step allowed: runs step 1, holds after step 2
    assert control.paused and not control.decide() and control.decide()
    control.resume()
    assert not control.decide()
