"""The step loop never makes the host wait for the device: counted for every sampler, for a run
with previews and for a lockstep comparison (the device emulated on the CPU, see
benchmarks/host_syncs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.host_syncs import counting_engine_syncs
from pipelines import engine as engine_module
from pipelines.compare import compare
from pipelines.samplers import SAMPLERS
from pipelines.types import GenerationRequest, PreviewMode


@pytest.fixture
def counted():
    """Counts host reads from the first scheduler step to the end of the last step."""
    with counting_engine_syncs() as counter:
        yield counter


@pytest.fixture
def request_for(sd1_folder):
    def make(**changes: Any) -> GenerationRequest:
        values = dict(prompt="a red circle", model=str(sd1_folder), seed=7, steps=4)
        return GenerationRequest(**{**values, **changes})

    return make


# Reads inside diffusers that the engine cannot avoid, and why they are listed.
NOISE_DRAW = "torch_utils.py:randn_tensor"  # fresh noise of stochastic samplers, see below
UNIPC = {"scheduling_unipc_multistep.py:multistep_uni_p_bh_update",
         "scheduling_unipc_multistep.py:multistep_uni_c_bh_update"}  # fmt: skip


def unexplained(counter: Any, sampler: str) -> list[str]:
    """The counted reads, less the listed ones: UniPC copies its noise levels to the device in
    each step (diffusers' own code); the stochastic samplers' noise is drawn by the engine's
    generator on the model's device, so diffusers' ``.to(device)`` after the draw copies nothing
    on a GPU (on the emulated device, the CPU, a draw and a copy look alike)."""
    allowed = set()
    if sampler == "UniPC":
        allowed |= UNIPC
    if SAMPLERS[sampler].stochastic:
        allowed.add(NOISE_DRAW)
    return [where for site, where in zip(counter.sites, counter.where) if site not in allowed]


def test_the_samplers_noise_is_drawn_on_the_models_device(engine, request_for):
    prepared = engine.prepare(request_for(sampler="Euler a"))
    assert prepared.sampler_generator().device == prepared.device


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_no_host_synchronisation_in_the_step_loop(engine, request_for, counted, sampler):
    frames = []
    request = request_for(sampler=sampler, preview=PreviewMode.APPROXIMATE)
    engine.run(request, on_step=frames.append)
    assert [f.step for f in frames] == [1, 2, 3, 4]
    assert unexplained(counted, sampler) == []


@pytest.mark.parametrize("preview", [PreviewMode.FULL, PreviewMode.NONE])
def test_no_host_synchronisation_with_other_previews(engine, request_for, counted, preview):
    engine.run(request_for(sampler="DPM++ 2M", preview=preview), on_step=lambda frame: None)
    assert counted.total == 0, "\n".join(counted.where)


def test_no_host_synchronisation_in_a_lockstep_comparison(engine, request_for, counted):
    samplers = ["Euler", "Euler a", "DPM++ 2M SDE", "DDIM", "DDPM"]
    result = compare(engine, request_for(), samplers)
    assert all(c.lockstep and c.completed == 4 for c in result.columns)
    assert set(counted.sites) <= {NOISE_DRAW}, "\n".join(counted.where)


def test_the_counter_catches_a_read_of_a_device_value(engine, request_for, counted, monkeypatch):
    estimate = engine_module.denoised_estimate

    def reads_a_value(*args: Any) -> Any:
        denoised = estimate(*args)
        float(denoised.mean().item())  # what a careless statistic in the loop would do
        return denoised

    monkeypatch.setattr(engine_module, "denoised_estimate", reads_a_value)
    engine.run(request_for(preview=PreviewMode.APPROXIMATE), on_step=lambda frame: None)
    assert counted.counts["item"] == 4
