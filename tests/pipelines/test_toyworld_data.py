"""The toy world's training data beyond its own scenes: free captions and outline scenes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipelines.toyworld import captions, outlines, world
from pipelines.toyworld.evaluate import canny_edges, edge_f1


def test_the_plain_wording_is_the_worlds_own_caption():
    for seed in range(12):
        sample = world.make_sample(seed)
        things = captions.scene_things(sample)
        assert captions.plain_caption(things, sample.background) == sample.caption


def test_paraphrases_are_seeded_and_name_the_colours_in_other_words():
    samples = [world.make_sample(seed, kind="shapes") for seed in range(60)]
    said = [captions.say(s, random.Random(s.seed)) for s in samples]
    assert said == [captions.say(s, random.Random(s.seed)) for s in samples]
    assert len(set(said) - {s.caption for s in samples}) >= 55  # nearly all worded anew
    for sample, text in zip(samples, said):
        if "background" in text or "backdrop" in text:  # a background was said: its colour is
            assert any(w in text for w in captions.SYNONYMS[sample.background])
    # Every synonym of every colour turns up somewhere over many captions.
    rng = random.Random(0)
    many = " | ".join(captions.say(samples[i % 60], rng) for i in range(3000))
    for colour in world.COLOURS:
        for word in captions.SYNONYMS[colour]:
            assert word in many, word


def test_the_issues_wording_can_be_drawn_and_held_out_orders_are_never_trained():
    # "a big crimson circle in the middle, blue backdrop": each of its choices is among the
    # training's (all at once is one caption in ~400,000, too rare to draw in a test).
    assert "big" in captions.SYNONYMS["large"] and "crimson" in captions.SYNONYMS["red"]
    assert "in the middle" in captions.POSITION_PHRASES["center"]
    assert "backdrop" in captions.SYNONYMS["background"]
    assert "{colour} {bg}" in captions.BACKGROUND_PHRASES
    assert "{subject}, {background}" in captions.TRAIN_FRAMES
    thing = captions.Thing("circle", "red", "large", "center")
    rng = random.Random(3)
    seen = {captions.paraphrase(rng, [thing], "blue", partial=0.0) for _ in range(3000)}
    assert any(t.startswith("on a blue background, a ") for t in seen)
    assert any(t.endswith(", blue backdrop") for t in seen)
    assert not set(captions.HELD_OUT_FRAMES) & set(captions.TRAIN_FRAMES)
    assert not any(text.startswith("there is") or ";" in text for text in seen)


def test_fillers_are_words_the_world_does_not_know_and_never_the_held_out_frames():
    from pipelines.toyworld import tune

    vocabulary = ["there</w>", "is</w>", "red</w>", "crimson</w>", "not</w>", "pink</w>",
                  "picture</w>", "kettle</w>", "umbrella</w>", "tr", "x</w>", "42</w>"]  # fmt: skip
    assert captions.filler_pool(vocabulary) == ["kettle", "umbrella"]
    pool = ["kettle", "umbrella", "saxophone"]
    rng = random.Random(5)
    caption = "on a blue background, a red circle in the middle"
    padded = {captions.add_fillers(rng, caption, pool) for _ in range(200)}
    for text in padded:
        words = text.replace(",", " ").split()
        # The caption's own words stay, in their order; only fillers and marks are added.
        kept = [w for w in words if w not in pool and w not in captions.FILLER_MARKS]
        assert kept == caption.replace(",", "").split(), text
        assert ";" not in text and not text.startswith("there is")
    assert any(text.startswith(tuple(pool)) for text in padded)
    assert any(text.endswith(tuple(pool)) for text in padded)
    # The text stage pads about FILLER_SHARE of its paraphrases, never the world's own captions.
    facts = [([captions.Thing("circle", "red")], "blue")] * 400
    said, own = tune.student_captions(random.Random(0), facts, ["a red circle"] * 400, pool)
    padded_share = np.mean([any(f in s for f in pool) for s in said])
    assert 0.15 < padded_share < 0.45
    assert all(not any(f in s for f in pool) for s, o in zip(said, own) if s == o)


@pytest.mark.parametrize("family", [*outlines.TRAIN_FAMILIES, *outlines.HELD_OUT_FAMILIES])
def test_outline_scenes_are_seeded_and_their_map_is_reachable(family):
    for style in outlines.STYLES:
        a = outlines.make_outline_sample(7, family, style)
        b = outlines.make_outline_sample(7, family, style)
        assert a.image.tobytes() == b.image.tobytes() and a.canny.tobytes() == b.canny.tobytes()
        assert a.caption == b.caption and a.image.size == (world.SIZE, world.SIZE)
        edges = np.asarray(a.canny)[..., 0] > 0
        assert edges.sum() >= outlines.MIN_EDGE_PIXELS
        # The picture's own edges lie on the map: a model can reach it (the ceiling is ~1).
        if canny_edges(a.image).sum() >= outlines.MIN_EDGE_PIXELS:
            assert edge_f1(canny_edges(a.image), edges) > 0.8


def test_brush_maps_are_one_to_three_pixels_wide_and_captions_do_not_describe_them():
    widths = set()
    for seed in range(30):
        sample = outlines.make_outline_sample(seed, "polygon", "brush")
        edges = np.asarray(sample.canny)[..., 0] > 0
        widths.add(round(edges.sum() / max(1, np.count_nonzero(edges.any(axis=0))), 0))
        names = [w for w in world.SHAPES if w in sample.caption]
        assert "polygon" not in sample.caption  # the map, not the words, has the shape
        assert all(n in world.SHAPES for n in names)
    assert len(widths) >= 2  # several brush widths


def test_held_out_families_never_come_up_in_training():
    families = {outlines.make_outline_sample(seed).family for seed in range(100)}
    assert families == set(outlines.TRAIN_FAMILIES)
    assert not set(outlines.HELD_OUT_GLYPHS) & set(outlines.TRAIN_GLYPHS)
    styles = {outlines.make_outline_sample(seed).style for seed in range(100)}
    assert styles == set(outlines.STYLES)


def test_a_contradicting_caption_keeps_the_colours():
    rng = random.Random(1)
    for _ in range(50):
        text = outlines.contradicting_caption(rng, "yellow", "purple", plain=True)
        assert text.endswith("on a purple background") and " yellow " in text
        assert any(shape in text for shape in world.SHAPES)


def test_synonyms_start_at_their_world_words_embedding():
    import torch

    from pipelines.toyworld import train, tune

    ties = captions.word_ties()
    assert ties["crimson"] == "red" and ties["big"] == "large" and ties["backdrop"] == "background"
    assert ties["middle"] == "center" and "a" not in ties and "shape" not in ties
    names = [*captions.SYNONYMS, *captions.POSITION_PHRASES]
    assert set(ties.values()) <= {w for name in names for w in name.split()}

    tok = train.tokenizer()
    encoder = train.build_text_encoder()
    table = encoder.get_input_embeddings().weight

    def row(word: str) -> torch.Tensor:
        (token,) = tok(word, add_special_tokens=False).input_ids
        return table[token].detach().clone()

    red_before = row("red")
    assert not torch.equal(row("crimson"), red_before)
    assert tune.tie_synonyms(encoder, tok) >= len(ties)
    assert torch.equal(row("crimson"), red_before) and torch.equal(row("red"), red_before)
    assert torch.equal(row("backdrop"), row("background"))


def test_the_outline_and_wording_figures_score_a_perfect_model_as_such():
    """The bookkeeping of the new parts, with the scenes' own pictures standing in for a model
    that follows its controls and its words perfectly."""
    from pipelines.toyworld import evaluate

    pictures = {}
    for families in (outlines.HELD_OUT_FAMILIES, outlines.TRAIN_FAMILIES):
        for sample in evaluate.held_out_outlines(1, families):
            pictures[(sample.caption, sample.seed)] = np.asarray(sample.image)
    for sample, text in evaluate.held_out_wording(4):
        pictures[(text, sample.seed)] = np.asarray(sample.image)
        assert text != sample.caption  # said in a frame the training never uses

    def perfect(caption, seed, control=None):
        return pictures[(caption, seed)]

    def blind(caption, seed, control=None):  # a model that ignores the outline
        return np.full_like(pictures[(caption, seed)], 128)

    results = evaluate.evaluate(perfect, 4, parts=("outlines", "wording"))
    assert results["outline_f1"] > 0.9 and results["outline_f1_trained_families"] > 0.9
    assert results["wording_colours"] == 1.0
    assert {f"outline_f1_{s}" for s in outlines.STYLES} <= set(results)
    assert evaluate.evaluate(blind, 4, parts=("outlines",))["outline_f1"] == 0.0
