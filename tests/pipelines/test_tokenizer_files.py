"""The shipped CLIP tokenizer files are exactly what open-clip's BPE list derives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.resources import resource_path
from pipelines.tokenizer_files import build_vocab_and_merges


@pytest.mark.parametrize("folder", ["clip", "clip-pad-exclaim"])
def test_shipped_files_match_the_derivation(folder):
    open_clip = pytest.importorskip("open_clip")
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    vocab, merges = build_vocab_and_merges(bpe)
    shipped = resource_path("tokenizers", folder)
    assert json.loads((shipped / "vocab.json").read_text(encoding="utf-8")) == vocab
    lines = (shipped / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and lines[1:] == merges
    assert len(vocab) == 49408


def test_ids_match_open_clip_for_ordinary_text():
    open_clip = pytest.importorskip("open_clip")
    from transformers import CLIPTokenizer

    ours = CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip"))
    theirs = open_clip.tokenizer.SimpleTokenizer()
    text = "A Photo of 2 cats, sitting on a red sofa; highly detailed!"
    assert ours(text, add_special_tokens=False).input_ids == theirs.encode(text)
