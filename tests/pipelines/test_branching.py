"""Branches on the bundled toy-world model: a branch planned in the request and the same branch made
while the run is held give the same image bit for bit (and so does the command line); sampler
switches continue soundly or are refused; branches travel through the PNG metadata."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from pipelines import cli
from pipelines.branching import branch_text, parse_branch_text, parse_cli_branch
from pipelines.errors import ValidationError
from pipelines.export import format_parameters, parse_parameters, read_request, write_png
from pipelines.run_control import RunControl, branch_between
from pipelines.types import Branch, ControlKind, ControlUnit, GenerationRequest

PROMPT = "a small red circle at the top left on a blue background"
OTHER = "a big green square at the bottom right on a yellow background"


@pytest.fixture(scope="module")
def toy_engine():
    from pipelines.engine import Engine, EngineSettings

    return Engine(EngineSettings(precision="fp32", threads=1))


def toy_request(**changes) -> GenerationRequest:
    base = GenerationRequest(prompt=PROMPT, seed=5, steps=4, cfg_scale=5.0, sampler="Euler")
    return replace(base, **changes)


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def run_with_live_branch(engine, request: GenerationRequest, branch: Branch):
    """Hold the run at ``branch.step``, branch it there, resume; returns the result."""
    held = threading.Event()
    control = RunControl(on_hold=lambda done, total: held.set())
    control.pause()
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(result=engine.run(request, control=control))
    )
    thread.start()
    for _ in range(branch.step):  # hold at step 1, then step until the branch's step
        assert held.wait(60)
        held.clear()
        if control.held_at < branch.step:
            control.step()
    assert control.held_at == branch.step
    control.branch(branch)
    control.resume()
    thread.join(60)
    return outcome["result"]


def test_a_live_branch_equals_the_same_branch_planned_in_the_request(toy_engine):
    branch = Branch(step=2, prompt=OTHER, cfg=3.0)
    plain = toy_engine.run(toy_request())
    planned = toy_engine.run(toy_request(branches=(branch,)))
    live = run_with_live_branch(toy_engine, toy_request(), branch)
    assert live.request.branches == (branch,) == planned.request.branches
    assert np.array_equal(pixels(live), pixels(planned))
    assert np.abs(pixels(planned) - pixels(plain)).mean() > 2  # the branch changed the image
    # Branching at the last boundary changes less than branching early.
    late = toy_engine.run(toy_request(branches=(replace(branch, step=3),)))
    early = toy_engine.run(toy_request(branches=(replace(branch, step=1),)))
    assert (
        np.abs(pixels(late) - pixels(plain)).mean() < np.abs(pixels(early) - pixels(plain)).mean()
    )


def test_a_negative_prompt_branch_keeps_the_prompt(toy_engine):
    # Only the negative prompt changes: the prompt stays the run's, so this equals a run that had
    # that negative prompt from the branch on, and differs from the plain run.
    plain = toy_engine.run(toy_request())
    negative = toy_engine.run(toy_request(branches=(Branch(step=1, negative="red"),)))
    assert not np.array_equal(pixels(plain), pixels(negative))


def test_a_switch_between_latent_forms_continues_the_same_trajectory(toy_engine):
    # DDIM (eta 0, no clipping) is Euler's method on the other latent form: a switch that rescales
    # the latents correctly lands exactly where either sampler alone does. The bundled model's
    # scheduler config does not mention clipping; DDIM must not clip its latents all the same.
    engine = toy_engine
    request = toy_request(steps=6)
    euler = pixels(engine.run(request))
    assert np.array_equal(pixels(engine.run(replace(request, sampler="DDIM"))), euler)
    for step in (1, 4):
        to_ddim = engine.run(replace(request, branches=(Branch(step=step, sampler="DDIM"),)))
        to_euler = engine.run(replace(request, sampler="DDIM",
                                      branches=(Branch(step=step, sampler="Euler"),)))  # fmt: skip
        assert np.abs(pixels(to_ddim) - euler).max() <= 1
        assert np.abs(pixels(to_euler) - euler).max() <= 1


def test_a_switch_to_an_ancestral_sampler_is_reproducible(toy_engine):
    euler = toy_engine.run(toy_request(steps=6))
    ancestral = toy_engine.run(toy_request(steps=6, branches=(Branch(step=3, sampler="Euler a"),)))
    again = toy_engine.run(toy_request(steps=6, branches=(Branch(step=3, sampler="Euler a"),)))
    assert np.array_equal(pixels(ancestral), pixels(again))  # fresh noise from a seeded stream
    assert not np.array_equal(pixels(ancestral), pixels(euler))


@pytest.mark.parametrize(
    ("sampler", "why"),
    [("Heun", "two model calls per step"), ("DPM++ 2M Karras", "other noise levels")],
)
def test_an_unsound_sampler_switch_is_refused_before_the_run(toy_engine, sampler, why):
    with pytest.raises(ValidationError, match=why):
        toy_engine.prepare(toy_request(branches=(Branch(step=2, sampler=sampler),)))


def test_a_controlnet_strength_branch_to_zero_ends_the_control_there(toy_engine, condition_image):
    from pipelines.engine import default_model_path

    unit = ControlUnit(ControlKind.CANNY, str(default_model_path().parent / "toy-world-controlnet-canny"),
                       image=str(condition_image))  # fmt: skip
    request = toy_request(controls=(unit,))
    ended = toy_engine.run(replace(request, controls=(replace(unit, end=0.5),)))
    branched = toy_engine.run(replace(request, branches=(Branch(step=2, control_strength=0.0),)))
    full = toy_engine.run(request)
    assert np.array_equal(pixels(branched), pixels(ended))
    assert not np.array_equal(pixels(branched), pixels(full))
    # The ControlNet is the shared one: after the run it answers to the request's strength again.
    assert np.array_equal(pixels(toy_engine.run(request)), pixels(full))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(branches=(Branch(step=4, cfg=3.0),)), "from 1 to 3"),
        (dict(branches=(Branch(step=2, cfg=1.0),)), "stay above 1"),
        (dict(branches=(Branch(step=2),)), "changes nothing"),
        (dict(branches=(Branch(step=2, control_strength=0.5),)), "no ControlNet is active"),
        (dict(branches=(Branch(step=2, sampler="Nope"),)), "Unknown sampler"),
        (dict(branches=(Branch(step=3, cfg=3.0), Branch(step=2, cfg=4.0))), "step order"),
    ],
)
def test_bad_branches_are_refused_with_a_reason(changes, message):
    with pytest.raises(ValidationError, match=message):
        toy_request(**changes).validate()


def test_branches_travel_through_the_metadata_text_and_the_png(tmp_path, toy_engine):
    branches = (Branch(step=1, prompt='a "quoted", prompt: yes', cfg=4.5),
                Branch(step=3, sampler="Euler a", negative="blur", control_strength=0.25))  # fmt: skip
    request = toy_request(branches=branches[:1] + (replace(branches[1], control_strength=None),))
    text = format_parameters(request)
    assert 'Branch: "step 1, prompt \\"a \\\\\\"quoted\\\\\\", prompt: yes\\", CFG 4.5"' in text
    assert parse_parameters(text).branches == request.branches
    assert parse_branch_text(branch_text(branches[1])) == branches[1]
    result = toy_engine.run(request)
    path = write_png(result.image, result.request, tmp_path / "branched.png")
    assert read_request(path).branches == request.branches
    assert GenerationRequest.from_dict(request.to_dict()) == request


def test_branch_between_names_what_the_panels_changed():
    unit = ControlUnit(ControlKind.CANNY, "net", image="map.png", strength=1.0)
    before = toy_request(controls=(unit,))
    after = replace(before, prompt=OTHER, cfg_scale=6.0, seed=99,
                    controls=(replace(unit, strength=0.5),))  # fmt: skip
    assert branch_between(before, after, 2) == Branch(2, prompt=OTHER, cfg=6.0,
                                                      control_strength=0.5)  # fmt: skip
    assert branch_between(before, replace(before, seed=3), 2) is None  # the seed is not a branch


def test_the_command_line_reproduces_a_live_branch_bit_for_bit(tmp_path, capsys):
    from pipelines.engine import Engine

    engine = Engine()  # the command line's own settings: its precision and threads
    live = run_with_live_branch(engine, toy_request(), Branch(step=2, prompt=OTHER, cfg=3.0))
    out = tmp_path / "cli.png"
    code = cli.main(["generate", "--prompt", PROMPT, "--seed", "5", "--steps", "4", "--cfg", "5",
                     "--sampler", "Euler", "--branch", f"2:prompt={OTHER}", "--branch", "2:cfg=3",
                     "--out", str(out)])  # fmt: skip
    assert code == 0
    from PIL import Image

    with Image.open(out) as image:
        assert np.array_equal(np.asarray(image.convert("RGB"), dtype=np.int16), pixels(live))
    assert read_request(out).branches == live.request.branches


@pytest.mark.parametrize("text", ["x:prompt=a", "2:colour=red", "2prompt=a", "2:cfg=lots"])
def test_bad_branch_arguments_say_what_is_expected(text):
    with pytest.raises(ValidationError, match="--branch"):
        parse_cli_branch(text)


def test_a_branched_run_is_compared_with_its_unbranched_run_step_by_step(toy_engine):
    from pipelines.branch_compare import compare_branches

    request = toy_request(steps=5, branches=(Branch(step=2, prompt=OTHER),))
    result = compare_branches(toy_engine, request)
    plain, branched = result.columns
    assert (plain.sampler, branched.sampler) == ("Euler unbranched", "Euler branched at step 2")
    assert plain.completed == branched.completed == 5
    # The same run up to the branch, apart after it.
    assert all(np.array_equal(a, b) for a, b in zip(plain.previews[:2], branched.previews[:2]))
    assert not np.array_equal(plain.previews[-1], branched.previews[-1])
    assert np.array_equal(pixels(branched), pixels(toy_engine.run(request)))
    assert np.array_equal(pixels(plain), pixels(toy_engine.run(replace(request, branches=()))))
    with pytest.raises(ValidationError, match="no branch"):
        compare_branches(toy_engine, replace(request, branches=()))
