"""The toy-world training script: every stage runs, resumes where it stopped, and exports a
model the product loads. A few steps on a few samples, on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.toyworld import train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SMALL = ["--samples", "8", "--pose-samples", "4", "--batch", "4", "--save-every", "1"]


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()  # the script sets its own (--threads)
    yield
    torch.set_num_threads(threads)


def run(stage: str, work_dir, *extra: str) -> None:
    train.main([stage, "--work-dir", str(work_dir), *SMALL, *extra])


def weights(work_dir, stage: str) -> dict:
    state = train.load_checkpoint(train.checkpoint_path(work_dir, stage))
    return state["modules"][0]


def unet_average_is_the_weights(work_dir) -> dict[str, bool]:
    """Per UNet tensor: whether the averaged (exported) weights equal the trained ones."""
    state = train.load_checkpoint(train.checkpoint_path(work_dir, "unet"))
    live, average = state["modules"][1], state["ema"][1]
    return {name: torch.equal(average[name], value) for name, value in live.items()}


def test_a_stage_split_over_two_sittings_matches_one_run(tmp_path):
    run("vae", tmp_path / "once", "--steps", "2")
    run("vae", tmp_path / "split", "--steps", "1")
    halfway = weights(tmp_path / "split", "vae")
    run("vae", tmp_path / "split", "--steps", "2")  # resumes at step 1
    once, split = weights(tmp_path / "once", "vae"), weights(tmp_path / "split", "vae")
    assert train.load_checkpoint(train.checkpoint_path(tmp_path / "split", "vae"))["step"] == 2
    assert once.keys() == split.keys()
    assert all(torch.equal(once[k], split[k]) for k in once)
    # The second sitting trained: the match above is not between two untouched models.
    assert any(not torch.equal(halfway[k], split[k]) for k in split)


def test_every_stage_then_export_gives_a_model_the_engine_runs(tmp_path):
    from pipelines.engine import Engine
    from pipelines.types import ControlKind, ControlUnit, GenerationRequest

    work, out = tmp_path / "work", tmp_path / "models"
    run("all", work, "--steps", "1", "--out", str(out))
    for stage in ("vae", "unet", "decoder", "controlnet-canny", "controlnet-pose",
                  "controlnet-depth"):  # fmt: skip
        assert train.load_checkpoint(train.checkpoint_path(work, stage))["step"] == 1, stage
    report = train.status(work)
    assert "controlnet-depth" in report and "not started" not in report
    run("decoder", work, "--steps", "2", "--shape-samples", "4")  # more small shapes
    assert train.load_checkpoint(train.checkpoint_path(work, "decoder"))["step"] == 2
    # --ema-decay sets how far the exported average lags: at 0 it is the weights themselves.
    run("unet", work, "--steps", "2", "--ema-decay", "0")
    assert all(unet_average_is_the_weights(work).values())
    run("unet", work, "--steps", "3")  # the default average lags behind the weights
    assert not all(unet_average_is_the_weights(work).values())
    assert "not started" in train.status(tmp_path / "elsewhere")
    trained = json.loads((out / "toy-world" / "training.json").read_text())
    assert trained["decoder"] == 1 and trained["controlnet-pose"] == 1

    engine = Engine()
    model = str(out / "toy-world")
    condition = tmp_path / "edges.png"
    train.world.make_sample(3).canny.save(condition)
    control = ControlUnit(
        ControlKind.CANNY, str(engine.default_controlnet(model, ControlKind.CANNY)), str(condition)
    )
    result = engine.run(
        GenerationRequest(prompt="a red circle", model=model, steps=2, seed=1, controls=(control,))
    )
    assert result.image.size == (train.world.SIZE, train.world.SIZE)


def test_the_learning_rate_warms_up_then_cools_down_at_the_end():
    assert train._lr(0, 1.0, warmup=10) == pytest.approx(0.1)
    assert train._lr(50, 1.0, warmup=10, total=100, decay=20) == 1.0
    assert train._lr(90, 1.0, warmup=10, total=100, decay=20) == pytest.approx(0.55)
    assert train._lr(100, 1.0, warmup=10, total=100, decay=20) == pytest.approx(0.1)
    assert train._lr(90, 1.0, warmup=10, total=100) == 1.0  # no cool-down unless asked


def test_the_focus_weighs_the_latent_cells_a_small_shape_covers():
    from pipelines.toyworld.base import _diffusion_loss, _noise_schedule, foreground_cells
    from pipelines.toyworld.evaluate import foreground

    sample = train.world.make_sample(4, kind="shapes")  # a small orange star, top right
    image = train._to_tensor(sample.image)[None]
    cells = foreground_cells(image, 8, focus=4.0)
    covered = cells[0, 0] > 1
    assert set(cells.unique().tolist()) == {1.0, 5.0} and 0 < covered.sum() < 40
    ys, xs = np.nonzero(foreground(np.asarray(sample.image.convert("RGB"))))
    assert len(ys) and covered[ys // 8, xs // 8].all()  # every shape pixel's cell, and few others

    _, alphas = _noise_schedule()
    timesteps = torch.tensor([500])
    noise = torch.zeros(1, 4, 8, 8)
    off_shape = (~covered).float().expand(1, 4, 8, 8)  # errs on the background only
    plain = _diffusion_loss(off_shape, noise, timesteps, alphas)
    assert _diffusion_loss(off_shape, noise, timesteps, alphas, torch.ones(1, 1, 8, 8)) == plain
    assert _diffusion_loss(off_shape, noise, timesteps, alphas, cells) < plain


def test_fine_tuning_starts_from_the_shipped_weights_and_exports_them(tmp_path):
    from pipelines.engine import Engine, default_model_path
    from pipelines.types import GenerationRequest

    if not (default_model_path() / "training.json").exists():
        pytest.skip("the toy-world weights are not exported")
    work, out = tmp_path / "work", tmp_path / "models"
    shipped = json.loads((default_model_path() / "training.json").read_text())
    run("import", work)  # reads resources/models, writes checkpoints into work
    canny_from = train.load_checkpoint(train.checkpoint_path(work, "controlnet-canny"))["step"]
    assert canny_from == shipped["controlnet-canny"]
    text_to = shipped.get("text", 0) + 1
    run("text", work, "--steps", str(text_to), "--fillers")
    # The UNet fine-tuned alone keeps the text encoder the text stage made, bit for bit.
    unet_to = shipped["unet"] + 1
    before = train.load_checkpoint(train.checkpoint_path(work, "unet"))["ema"][1]
    run("unet", work, "--steps", str(unet_to), "--freeze-text", "--shape-samples", "4",
        "--focus", "4")  # fmt: skip
    unet_stage = train.load_checkpoint(train.checkpoint_path(work, "unet"))
    text_stage = train.load_checkpoint(train.checkpoint_path(work, "text"))["ema"][0]
    for name, value in text_stage.items():
        assert torch.equal(unet_stage["modules"][0][name], value), name
        assert torch.equal(unet_stage["ema"][0][name], value), name
    assert any(not torch.equal(v, before[k]) for k, v in unet_stage["ema"][1].items())
    run("controlnet", work, "--kind", "canny", "--steps", str(canny_from + 1),
        "--outline-samples", "4")  # fmt: skip
    tuned = train.load_checkpoint(train.checkpoint_path(work, "controlnet-canny"))
    assert tuned["step"] == canny_from + 1 and tuned["warm_from"] == canny_from
    assert "fine-tuned from step" in train.status(work)
    run("export", work, "--out", str(out))
    trained = json.loads((out / "toy-world" / "training.json").read_text())
    assert trained["text"] == text_to and trained["controlnet-canny"] == canny_from + 1
    assert trained["unet"] == unet_to
    result = Engine().run(
        GenerationRequest(prompt="a big crimson disc", model=str(out / "toy-world"), steps=2)
    )
    assert result.image.size == (train.world.SIZE, train.world.SIZE)
