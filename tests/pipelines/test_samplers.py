"""How each named sampler is built from a model's own scheduler config."""

from __future__ import annotations

import pytest

from pipelines.samplers import SAMPLERS, get_sampler

# What an Euler scheduler saves (the bundled model's): no word on clipping.
EULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


@pytest.mark.parametrize("name", ["DDIM", "DDPM"])
def test_latents_are_not_clipped_where_the_config_is_silent(name):
    scheduler = get_sampler(name).make(EULER_CONFIG)
    assert scheduler.config.clip_sample is False
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's schedule is kept


@pytest.mark.parametrize("name", ["DDIM", "DDPM"])
def test_the_models_own_choice_wins(name):
    scheduler = get_sampler(name).make({**EULER_CONFIG, "clip_sample": True})
    assert scheduler.config.clip_sample is True


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_keeps_the_models_training_schedule(name):
    scheduler = get_sampler(name).make({**EULER_CONFIG, "prediction_type": "v_prediction"})
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.num_train_timesteps == 1000
