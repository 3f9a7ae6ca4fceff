"""The toy world: a deterministic generator, its condition maps, the metrics, and (when the trained
weights are in resources/models) the bundled default model end to end."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.bundled_model import NOISY_SAMPLERS
from pipelines.conditions import canny_map, render_pose
from pipelines.engine import default_model_path
from pipelines.samplers import SAMPLERS
from pipelines.toyworld import evaluate, world

TRAINED = (default_model_path() / "model_index.json").exists()
needs_weights = pytest.mark.skipif(not TRAINED, reason="the toy-world weights are not exported")


def _same(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_same_seed_same_sample(seed):
    a, b = world.make_sample(seed), world.make_sample(seed)
    assert a.caption == b.caption and a.kind == b.kind
    for name in ("image", "canny", "pose", "depth"):
        assert _same(getattr(a, name), getattr(b, name)), name
    assert a.image.size == (world.SIZE, world.SIZE)


def test_different_seeds_differ_and_cover_every_kind():
    samples = [world.make_sample(seed) for seed in range(40)]
    assert len({s.caption for s in samples}) > 30
    assert {s.kind for s in samples} == {"shapes", "person", "solid"}


def test_caption_says_what_is_drawn():
    sample = world.make_sample(3, kind="shapes")
    for spec in sample.shapes:
        assert f"{spec.size} {spec.colour} {spec.shape}" in sample.caption
        assert world.position_phrase(spec.position) in sample.caption
    assert sample.caption.endswith(f"{sample.background} background")
    image = np.asarray(sample.image)
    assert tuple(image[0, 0]) == world.COLOURS[sample.background]


@pytest.mark.parametrize("kind", ["shapes", "person", "solid"])
def test_maps_come_from_the_core(kind):
    sample = world.make_sample(21, kind=kind)
    assert _same(sample.canny, canny_map(sample.image, world.CANNY_LOW, world.CANNY_HIGH))
    assert _same(sample.pose, render_pose(sample.people, world.SIZE, world.SIZE))
    assert np.asarray(sample.canny).any()
    if kind == "person":
        assert len(sample.people) == 1 and np.asarray(sample.pose).any()
    else:
        assert not np.asarray(sample.pose).any()


def test_depth_is_bright_where_near():
    sample = world.make_sample(5, kind="solid")
    import cv2

    depth = np.asarray(sample.depth)[..., 0].astype(int)
    kernel = np.ones((3, 3), np.uint8)
    inside = cv2.erode(sample.mask.astype(np.uint8), kernel).astype(bool)
    outside = ~cv2.dilate(sample.mask.astype(np.uint8), kernel).astype(bool)
    assert depth[outside].max() == 0  # the background is far
    assert depth[inside].min() > 100
    if sample.subject == "sphere":  # the middle of a sphere is nearer than its rim
        ys, xs = np.nonzero(sample.mask)
        centre = depth[int(ys.mean()), int(xs.mean())]
        assert centre >= np.percentile(depth[sample.mask], 90)


def test_the_metrics_score_the_world_itself_as_right():
    checks = evaluate.classifier_check(40)
    assert checks["background_colour"] == 1.0 and checks["position"] == 1.0
    assert checks["shape_colour"] == 1.0 and checks["shape_class"] >= 0.95
    sample = evaluate.held_out("person", 1)[0]
    assert evaluate.skeleton_coverage(np.asarray(sample.image), sample.people) > 0.95
    edges = np.asarray(evaluate.held_out("shapes", 1)[0].canny)[..., 0] > 0
    assert evaluate.edge_f1(edges, edges) == 1.0
    assert evaluate.edge_f1(np.roll(edges, 1, axis=1), edges) == 1.0  # within the 2 px tolerance
    assert evaluate.edge_f1(np.zeros_like(edges), edges) == 0.0


def test_the_shape_classifier_tells_every_shape_apart_even_blurred():
    from PIL import ImageFilter

    samples = evaluate.held_out("shapes", 60, single_shape=True)
    for radius, least in ((0.0, 0.98), (1.0, 0.9)):
        found = [
            evaluate.classify_shape(
                evaluate.largest_component(
                    evaluate.foreground(
                        np.asarray(s.image.filter(ImageFilter.GaussianBlur(radius)))
                    )
                )
            )
            for s in samples
        ]
        right = [f == s.shapes[0].shape for f, s in zip(found, samples)]
        assert np.mean(right) >= least, (
            radius,
            list(zip(found, [s.shapes[0].shape for s in samples])),
        )
    # Each class is found, not only the commonest.
    assert {s.shapes[0].shape for s in samples} == set(world.SHAPES)
    # A blank picture is no shape; a thin line is no circle.
    assert evaluate.classify_shape(np.zeros((64, 64), bool)) is None
    line = np.zeros((64, 64), bool)
    line[30, 10:50] = True
    assert evaluate.classify_shape(line) != "circle"


def test_the_evaluation_scores_a_perfect_control_and_a_blank_prompt_as_such(tmp_path):
    """The evaluation's bookkeeping, with the world's own pictures standing in for a model that
    follows its controls perfectly and ignores its prompts."""
    seen = []

    def generate(caption, seed, control=None):
        # The evaluation draws some samples by kind: find the one this caption came from.
        drawn = [world.make_sample(seed, kind=k) for k in (None, *world.KINDS)]
        sample = next(d for d in drawn if d.caption == caption)
        seen.append((sample.kind, control[0] if control else None))
        if control is None:
            return np.full_like(np.asarray(sample.image), 128)
        return np.asarray(sample.image)

    results = evaluate.evaluate(generate, 12, parts=("prompt", "canny", "depth"))
    assert results["canny_f1"] == 1.0 and results["canny_f1_without_control"] == 0.0
    kinds = {kind for kind, control in seen if control == "canny"}
    assert kinds == {"shapes", "person", "solid"}  # every kind of scene is measured
    assert all(results[f"canny_f1_{kind}"] == 1.0 for kind in kinds)
    assert results["depth_iou"] > 0.8  # the solids themselves (their shaded rims blend in)
    assert results["shape_class"] == 0.0 and results["position"] == 0.0  # grey pictures
    assert "NOT met" in evaluate.format_results(results)


def test_the_painted_depth_evaluation_scores_a_perfect_control_and_a_blank_prompt_as_such():
    """The painted-depth part, with each painting's own picture standing in for a model that
    follows a painted depth map perfectly and draws nothing without it."""
    paintings = {s.seed: s for s in evaluate.held_out_paintings(6)}
    assert min(paintings) >= evaluate.PAINTED_SEED_BASE  # not the seeds the training draws

    def generate(caption, seed, control=None):
        sample = paintings[seed]
        assert caption == sample.caption
        if control is None:
            return np.full_like(np.asarray(sample.image), 128)
        assert control[0] == "depth" and _same(control[1], sample.depth)
        return np.asarray(sample.image)

    results = evaluate.evaluate(generate, 6, parts=("painted",))
    assert results["depth_iou_painted"] > 0.8  # soft rims, shaded dark, blend into the background
    assert results["depth_iou_painted_without_control"] == 0.0
    assert set(results) == {"depth_iou_painted", "depth_iou_painted_without_control"}


def test_the_fingerprint_changes_with_the_drawing(monkeypatch):
    # Latents encoded from an older world are cached under its fingerprint, never reused.
    first = world.fingerprint(2)
    assert world.fingerprint(2) == first
    monkeypatch.setattr(world, "SIZES", {"small": 0.1, "large": 0.15})
    assert world.fingerprint(2) != first


def test_held_out_samples_are_not_training_samples():
    from pipelines.toyworld import train

    assert evaluate.HELD_OUT_SEED_BASE == train.HELD_OUT_SEED_BASE
    assert train.TRAIN_SAMPLES < train.POSE_SEED_BASE
    assert train.POSE_SEED_BASE + train.POSE_SAMPLES < evaluate.HELD_OUT_SEED_BASE


# ---- the bundled model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generate():
    return evaluate.Generator(model="", steps=20)


@needs_weights
def test_discovery_sees_the_bundled_model_and_its_controlnets():
    from pipelines.engine import Engine
    from pipelines.models import discover_models
    from pipelines.types import ControlKind, ModelFamily

    found = discover_models([default_model_path().parent], include_hf_cache=False)
    bases = [b for b in found.bases() if b.path == default_model_path()]
    assert bases and bases[0].family is ModelFamily.SD1
    engine = Engine()
    for kind in (ControlKind.CANNY, ControlKind.POSE, ControlKind.DEPTH):
        path = engine.default_controlnet("", kind)
        assert path.name == f"toy-world-controlnet-{kind.value}"


@needs_weights
def test_bundled_size_budget():
    folder = default_model_path().parent
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total <= 40 * 1024 * 1024


@needs_weights
def test_default_model_runs_at_its_native_size(generate):
    from pipelines.types import GenerationRequest

    result = generate.engine.run(GenerationRequest(prompt="a red circle", seed=1, steps=4))
    assert result.request.model == ""
    assert result.image.size == (world.SIZE, world.SIZE)
    assert generate.engine.loaded.native_size == (world.SIZE, world.SIZE)


@needs_weights
def test_the_prompt_picks_the_background_colour(generate):
    samples = evaluate.held_out("shapes", 4, single_shape=True)
    right = sum(
        evaluate.score_prompt(generate(s.caption, s.seed), s).background_colour for s in samples
    )
    assert right >= 3


@needs_weights
def test_the_prompt_places_and_shapes_the_shape(generate):
    samples = evaluate.held_out("shapes", 6, single_shape=True, start=200)
    scores = [evaluate.score_prompt(generate(s.caption, s.seed), s) for s in samples]
    assert sum(score.position for score in scores) >= 5
    assert sum(score.shape_class for score in scores) >= 3
    assert sum(score.shape_colour for score in scores) >= 5


def _canny_f1(generate: evaluate.Generator, samples: list) -> tuple[float, float]:
    """Mean edge F1 against each sample's canny map, with the map as control and without."""
    with_control, without = [], []
    for s in samples:
        target = np.asarray(s.canny)[..., 0] > 0
        plain = generate(s.caption, s.seed)
        steered = generate(s.caption, s.seed, ("canny", s.canny))
        without.append(evaluate.edge_f1(evaluate.canny_edges(plain), target))
        with_control.append(evaluate.edge_f1(evaluate.canny_edges(steered), target))
    return float(np.mean(with_control)), float(np.mean(without))


@needs_weights
def test_canny_control_draws_the_edges(generate):
    # Solids and figures: their captions do not say where they are, their edge maps do.
    samples = evaluate.held_out("solid", 2, start=500) + evaluate.held_out(
        "person", 2, start=500, edges=True
    )
    with_control, without = _canny_f1(generate, samples)
    assert with_control >= 0.5
    assert with_control > 1.3 * without


@needs_weights
def test_pose_control_puts_the_figure_on_the_skeleton(generate):
    samples = evaluate.held_out("person", 3, start=500)
    coverage, precision = [], []
    for s in samples:
        image = generate(s.caption, s.seed, ("pose", s.pose))
        coverage.append(evaluate.skeleton_coverage(image, s.people))
        precision.append(evaluate.figure_precision(image, s.people))
    assert np.mean(coverage) >= 0.5
    assert np.mean(precision) >= 0.6  # a figure, not a picture that is all foreground


@needs_weights
def test_depth_control_puts_the_solid_in_the_near_region(generate):
    samples = evaluate.held_out("solid", 3, start=500)
    overlaps = [
        evaluate.iou(
            evaluate.foreground(generate(s.caption, s.seed, ("depth", s.depth))),
            evaluate.near_region(s.depth),
        )
        for s in samples
    ]
    assert np.mean(overlaps) >= 0.5


@needs_weights
def test_a_painted_depth_map_places_the_subject(generate):
    # Soft blobs and painted gradients as the condition editor paints them, under a caption that
    # names no place: the map decides where the subject stands (shipped: 0.73 vs 0.15 here).
    results = evaluate.evaluate_painted(generate, 4)
    with_map, without = results["depth_iou_painted"], results["depth_iou_painted_without_control"]
    assert with_map >= 0.55
    assert with_map >= without + 0.3


@needs_weights
def test_a_drawn_outline_the_world_never_draws_steers_the_image(generate):
    # Held-out outlines (a house, a heart, an arrow, a letter: never trained on) under a caption
    # naming another shape: the map, not the words, decides the outline.
    from pipelines.toyworld import outlines

    samples = evaluate.held_out_outlines(1, outlines.HELD_OUT_FAMILIES)
    with_control, without = _canny_f1(generate, samples)
    assert with_control >= 0.7  # the shipped model: 0.88 (0.14 without the map)
    assert with_control > 2 * without


@needs_weights
def test_a_synonym_caption_gets_its_colours(generate):
    # The issue's own wording (the shipped model gets the red circle and the blue backdrop 8
    # times in 8 seeds), and the background named first.
    found = []
    for seed in range(4):
        image = generate("a big crimson circle in the middle, blue backdrop", seed)
        shape = evaluate.largest_component(evaluate.foreground(image))
        found.append((evaluate.nearest_colour(evaluate.background_rgb(image)),
                      evaluate.nearest_colour(np.median(image[shape], axis=0))))  # fmt: skip
    assert all(shape == "red" for _, shape in found)
    assert sum(background == "blue" for background, _ in found) >= 3
    image = generate("on a blue background, a red circle", 0)
    assert evaluate.nearest_colour(evaluate.background_rgb(image)) == "blue"
    # Sentence frames the training never used ("there is ...", "picture of ...", "...; ..."):
    # the shipped model gets both colours in 6 of 6 here, 0.96 over 80 in the evaluation.
    pairs = evaluate.held_out_wording(6)
    right = [evaluate.score_prompt(generate(text, s.seed), s) for s, text in pairs]
    assert sum(r.background_colour and r.shape_colour for r in right) >= 5


@needs_weights
def test_straight_sided_shapes_keep_their_corners(generate):
    # Large squares and triangles on held-out seeds read as what the caption names (the shipped
    # model: these 6; large squares and triangles 1.00 over 900 held-out captions).
    samples = [
        s
        for s in evaluate.held_out("shapes", 120, single_shape=True, start=300)
        if s.shapes[0].shape in ("square", "triangle") and s.shapes[0].size == "large"
    ][:6]
    assert {s.shapes[0].shape for s in samples} == {"square", "triangle"}
    right = [evaluate.score_prompt(generate(s.caption, s.seed), s).shape_class for s in samples]
    assert sum(right) >= 4


@needs_weights
def test_small_stars_keep_their_points(generate):
    # A small star spans three latent cells; the model before the sharpened decoder and the
    # focused UNet drew 1 of these 8 as a star (a blob or a cross), the shipped one 6 of 8
    # (small stars 0.80 over 900 held-out captions, from 0.19 over 300).
    samples = [
        s
        for s in evaluate.held_out("shapes", 200, single_shape=True, start=300)
        if s.shapes[0].shape == "star" and s.shapes[0].size == "small"
    ][:8]
    assert len(samples) == 8
    right = [evaluate.score_prompt(generate(s.caption, s.seed), s).shape_class for s in samples]
    assert sum(right) >= 5


@needs_weights
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_draws_the_caption_at_a_cfg_the_window_does_not_warn_of(sampler):
    # The window warns of the samplers in NOISY_SAMPLERS above their CFG: each of them must draw
    # the caption's colours at that CFG, and every other sampler at the default CFG 7 (DDIM drew
    # colour noise at 7 while it clipped the latents).
    cfg = NOISY_SAMPLERS.get(sampler, 7.0)
    generate = evaluate.Generator(model="", sampler=sampler, cfg=cfg)
    samples = evaluate.held_out("shapes", 3, single_shape=True, start=600)
    scores = [evaluate.score_prompt(generate(s.caption, s.seed), s) for s in samples]
    assert all(score.background_colour and score.shape_colour for score in scores)


@needs_weights
def test_a_run_of_the_bundled_model_with_a_noisy_sampler_says_what_to_do(generate):
    from pipelines.types import GenerationRequest

    request = GenerationRequest(prompt="a red circle", seed=1, steps=2, sampler="LMS")
    warnings = generate.engine.run(request).warnings
    assert any("With LMS the bundled model draws noise at CFG 7" in w for w in warnings)
    calm = generate.engine.run(GenerationRequest(prompt="a red circle", seed=1, steps=2))
    assert not any("draws noise" in w for w in calm.warnings)


@needs_weights
def test_a_comparison_on_the_bundled_model_warns_of_its_noisy_columns_only(generate):
    from pipelines.compare import compare
    from pipelines.types import GenerationRequest

    request = GenerationRequest(prompt="a red circle", seed=1, steps=2, sampler="UniPC")
    warnings = compare(generate.engine, request, ["Euler", "LMS"]).warnings
    assert any(w.startswith("With LMS the bundled model draws noise") for w in warnings)
    calm = compare(generate.engine, request, ["Euler", "Heun"]).warnings  # UniPC is not a column
    assert not any("draws noise" in w for w in calm)
