"""Prompt encoding: plain prompts as diffusers encodes them, chunks, BREAK, weights, clip skip."""

from __future__ import annotations

import pytest
import torch

from pipelines.prompt_encoding import encode_prompts, split_into_chunks
from pipelines.prompt_syntax import parse_prompt
from pipelines.types import ModelFamily
from tests.tiny_models import build_sd1_pipeline, build_sdxl_pipeline

SD1, SDXL = ModelFamily.SD1, ModelFamily.SDXL


@pytest.fixture(scope="module")
def sd1():
    return build_sd1_pipeline()


@pytest.fixture(scope="module")
def sdxl():
    return build_sdxl_pipeline()


def words(count: int, start: int = 0) -> str:
    vocabulary = "cat dog red blue tree house sky sun moon star car boat road hill lake".split()
    return " ".join(vocabulary[(start + i) % len(vocabulary)] for i in range(count))


def reference_sd1(pipe, prompt, negative, guided=True):
    with torch.inference_mode():
        return pipe.encode_prompt(prompt, "cpu", 1, guided, negative or None)


def test_single_token_words_are_single_tokens(sd1):
    assert len(sd1.tokenizer(words(30), add_special_tokens=False).input_ids) == 30


@pytest.mark.parametrize("negative", ["", "blurry, dark"])
def test_plain_prompt_encodes_exactly_as_diffusers_does(sd1, negative):
    prompt = "a lighthouse on a cliff at dusk, oil painting"
    expected, expected_negative = reference_sd1(sd1, prompt, negative)
    got = encode_prompts(sd1, SD1, prompt, negative, guided=True)
    assert got.chunks == 1
    assert torch.equal(got.prompt_embeds, expected)
    assert torch.equal(got.negative_prompt_embeds, expected_negative)
    unguided = encode_prompts(sd1, SD1, prompt, negative, guided=False)
    assert unguided.negative_prompt_embeds is None
    assert torch.equal(unguided.prompt_embeds, expected)


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_plain_sdxl_prompt_encodes_exactly_as_diffusers_does(sdxl, negative):
    prompt = "a lighthouse on a cliff at dusk"
    with torch.inference_mode():
        expected = sdxl.encode_prompt(prompt, device="cpu", negative_prompt=negative or None)
    got = encode_prompts(sdxl, SDXL, prompt, negative, guided=True)
    arguments = got.pipeline_arguments()
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
             "negative_pooled_prompt_embeds")  # fmt: skip
    for name, tensor in zip(names, expected):
        assert torch.equal(arguments[name], tensor), name


def test_weight_one_everywhere_equals_the_unweighted_prompt(sd1, sdxl):
    plain = encode_prompts(sd1, SD1, "a red car on a hill", "", guided=True)
    weighted = encode_prompts(sd1, SD1, "(a red:1.0) car (on a hill:1)", "", guided=True)
    assert torch.equal(plain.prompt_embeds, weighted.prompt_embeds)
    plain_xl = encode_prompts(sdxl, SDXL, "a red car", "", guided=True)
    weighted_xl = encode_prompts(sdxl, SDXL, "(a red car:1.0)", "", guided=True)
    assert torch.equal(plain_xl.prompt_embeds, weighted_xl.prompt_embeds)
    assert torch.equal(plain_xl.pooled, weighted_xl.pooled)


def test_weights_scale_tokens_and_keep_the_chunk_mean(sd1):
    plain = encode_prompts(sd1, SD1, "a red car", "", guided=False).prompt_embeds
    weighted = encode_prompts(sd1, SD1, "a (red:1.5) car", "", guided=False).prompt_embeds
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    # "red" is the third position (after the start marker and "a"): scaled 1.5 relative to "a".
    ratio = (weighted[0, 2] / plain[0, 2]) / (weighted[0, 1] / plain[0, 1])
    assert torch.allclose(ratio, torch.full_like(ratio, 1.5), rtol=1e-4)


def test_150_token_prompt_is_the_concatenation_of_its_chunks(sd1):
    first, second = words(75), words(75, start=3)
    got = encode_prompts(sd1, SD1, f"{first} {second}", "", guided=True)
    parts = [reference_sd1(sd1, text, "")[0] for text in (first, second)]
    empty = reference_sd1(sd1, "", "")[0]
    assert got.chunks == 2
    assert torch.equal(got.prompt_embeds, torch.cat(parts, dim=1))
    # The empty negative prompt is padded to two chunks of the empty prompt's encoding.
    assert torch.equal(got.negative_prompt_embeds, torch.cat([empty, empty], dim=1))


def test_break_and_commas_decide_where_chunks_end(sd1):
    got = encode_prompts(sd1, SD1, "a cat BREAK a dog", "a cat BREAK a BREAK dog", guided=True)
    assert got.chunks == 3  # the negative's three chunks; the prompt is padded to three
    expected = [reference_sd1(sd1, text, "")[0] for text in ("a cat", "a dog", "")]
    assert torch.equal(got.prompt_embeds, torch.cat(expected, dim=1))
    # A comma within the last 20 tokens of a full chunk: what follows it moves on.
    text = f"{words(60)}, {words(30)}"
    chunks = split_into_chunks(sd1.tokenizer, parse_prompt(text).segments)
    assert [len(c) for c in chunks] == [61, 30]
    far = f"{words(40)}, {words(50)}"  # the comma is 35 tokens from the end: a plain cut
    assert [len(c) for c in split_into_chunks(sd1.tokenizer, parse_prompt(far).segments)] == [
        75,
        16,
    ]


def test_clip_skip_reads_an_earlier_layer_as_diffusers_does(sd1):
    # diffusers' own clip_skip reaches for CLIPTextModel.text_model, gone in transformers 5: the
    # reference is its computation written out.
    ids = sd1.tokenizer("a red car", padding="max_length", return_tensors="pt").input_ids
    with torch.inference_mode():
        hidden = sd1.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = sd1.text_encoder.final_layer_norm(hidden)
    got = encode_prompts(sd1, SD1, "a red car", "", guided=False, clip_skip=2)
    assert torch.equal(got.prompt_embeds, expected)
    plain = encode_prompts(sd1, SD1, "a red car", "", guided=False, clip_skip=1)
    assert not torch.equal(plain.prompt_embeds, got.prompt_embeds)


def test_sdxl_long_prompt_is_pooled_from_its_first_chunk(sdxl):
    first, second = words(75), words(20, start=5)
    got = encode_prompts(sdxl, SDXL, f"{first} BREAK {second}", "", guided=True)
    with torch.inference_mode():
        head, _, pooled, _ = sdxl.encode_prompt(first, device="cpu")
        tail, *_ = sdxl.encode_prompt(second, device="cpu")
    assert got.chunks == 2
    assert torch.equal(got.prompt_embeds, torch.cat([head, tail], dim=1))
    assert torch.equal(got.pooled, pooled)
    assert torch.count_nonzero(got.negative_prompt_embeds) == 0  # empty negative: zeros
    assert got.negative_prompt_embeds.shape == got.prompt_embeds.shape


def test_an_embedding_replaces_its_name_with_its_vectors(sd1):
    vectors = torch.randn(2, sd1.text_encoder.config.hidden_size)
    embeddings = {"shiny-style": (vectors,)}
    with_embedding = encode_prompts(sd1, SD1, "a car, shiny-style", "", False, 1, embeddings)
    without = encode_prompts(sd1, SD1, "a car, shiny-style", "", False, 1, {})
    assert with_embedding.embeddings == ("shiny-style",)
    assert not torch.equal(with_embedding.prompt_embeds, without.prompt_embeds)
    # Positions before the embedding are unchanged (causal attention), those after differ.
    assert torch.equal(with_embedding.prompt_embeds[0, :3], without.prompt_embeds[0, :3])
    chunk = split_into_chunks(sd1.tokenizer, parse_prompt("a car, shiny-style").segments,
                              {"shiny-style": vectors})[0]  # fmt: skip
    assert len(chunk) == 5 and set(chunk.vectors) == {3, 4}
