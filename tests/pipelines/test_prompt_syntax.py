"""The prompt syntax against AUTOMATIC1111's documented examples (modules/prompt_parser.py and its
wiki's "Attention/emphasis" section)."""

from __future__ import annotations

import pytest

from pipelines.prompt_syntax import (
    Segment,
    extract_networks,
    find_embedding_names,
    lora_tag,
    parse_attention,
    parse_prompt,
    split_on_names,
)


def pairs(text: str) -> list[tuple[str, float]]:
    return [("BREAK", -1) if s.is_break else (s.text, s.weight) for s in parse_attention(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.1 * 1.1 * 1.3),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.1**4),
                (".", 1.1),
            ],
        ),
        ("", [("", 1.0)]),
    ],
)
def test_automatic1111_docstring_examples(text, expected):
    got = pairs(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_wiki_emphasis_examples():
    assert pairs("a (word)") == [("a ", 1.0), ("word", pytest.approx(1.1))]
    assert pairs("a ((word))") == [("a ", 1.0), ("word", pytest.approx(1.21))]
    assert pairs("a [word]") == [("a ", 1.0), ("word", pytest.approx(1 / 1.1))]
    assert pairs("a (word:1.5)") == [("a ", 1.0), ("word", 1.5)]
    assert pairs("a (word:0.25)") == [("a ", 1.0), ("word", 0.25)]
    assert pairs("a \\(word\\)") == [("a (word)", 1.0)]
    assert pairs("(best quality: 1.2 )") == [("best quality", 1.2)]


def test_unmatched_closing_brackets_and_stray_colons_are_text():
    assert pairs("smile :) and ] and :") == [("smile :) and ] and :", 1.0)]
    assert pairs("a (b:1.2.3) c") == [("a ", 1.0), ("b:1.2.3) c", pytest.approx(1.1))]
    assert pairs("time 10:30") == [("time 10:30", 1.0)]


def test_break_splits_chunks_even_inside_brackets_and_only_as_a_word():
    assert pairs("a cat BREAK a dog") == [("a cat", 1.0), ("BREAK", -1), ("a dog", 1.0)]
    assert pairs("(red BREAK blue)") == [
        ("red", pytest.approx(1.1)),
        ("BREAK", -1),
        ("blue", pytest.approx(1.1)),
    ]
    assert pairs("BREAKFAST break") == [("BREAKFAST break", 1.0)]
    assert pairs("a BREAK BREAK b") == [("a", 1.0), ("BREAK", -1), ("BREAK", -1), ("b", 1.0)]


def test_lora_tags_are_taken_out_with_their_weights():
    parsed = parse_prompt("a castle <lora:detail_tweaker:0.5>, (fog:1.2) <lyco:Film Grain:0.8:0.3>")
    assert [s.text for s in parsed.segments] == ["a castle , ", "fog", " "]
    first, second = parsed.loras
    assert (first.name, first.weight, first.unet_weight) == ("detail_tweaker", 0.5, None)
    assert (second.name, second.weight, second.unet_weight) == ("Film Grain", 0.8, 0.3)
    assert first.source == "<lora:detail_tweaker:0.5>"
    assert parse_prompt("<lora:plain>").loras[0].weight == 1.0
    assert parse_prompt("<lora:named:te=0.4:unet=0.7>").loras[0].unet_weight == 0.7


def test_unreadable_and_foreign_tags_are_reported_not_lost():
    _, tags, problems = extract_networks("<lora::0.5> <hypernet:anime:1> <lora:x:heavy>")
    assert problems == ("<lora::0.5>",)
    assert [(t.kind, t.is_lora) for t in tags] == [("hypernet", False), ("lora", True)]
    assert tags[1].name == "x:heavy"  # not a weight: part of the name, reported as not found


def test_plain_prompts_are_marked_plain():
    assert parse_prompt("a red car, photo").plain
    assert not parse_prompt("a (red) car").plain
    assert not parse_prompt("a BREAK b").plain
    assert parse_prompt("(x:1.0)").plain


def test_embedding_names_found_as_words_ignoring_case():
    names = ["easynegative", "bad-hands-5", "style"]
    text = "EasyNegative, bad-hands-5, stylelish"
    assert find_embedding_names(text, names) == ["easynegative", "bad-hands-5"]
    assert split_on_names("a EasyNegative b", names) == [
        ("a ", None),
        ("EasyNegative", "easynegative"),
        (" b", None),
    ]


def test_lora_tag_round_trips():
    tag = lora_tag("detail tweaker", 0.75)
    assert parse_prompt(tag).loras[0].name == "detail tweaker"
    assert parse_prompt(tag).loras[0].weight == 0.75
    assert Segment("x").weight == 1.0


def test_lora_names_may_hold_colons_as_paths_do():
    (tag,) = parse_prompt("<lora:C:\\loras\\grain.safetensors:0.4>").loras
    assert (tag.name, tag.weight) == ("C:\\loras\\grain.safetensors", 0.4)
    assert parse_prompt("<lora:x:1:2:3>").problems == ("<lora:x:1:2:3>",)
