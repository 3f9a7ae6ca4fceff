"""Rebuild the CLIP tokenizer files shipped in ``resources/tokenizers``.

The vocabulary is derived from the BPE merge list that ``open-clip-torch`` ships, in the same order
CLIP itself builds it, so the ids are CLIP's real ids. Run ``python -m pipelines.tokenizer_files``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from pipelines.resources import resource_path

# CLIP keeps 49152 - 256 - 2 merges: the vocabulary is exactly 49408 entries.
_MERGE_COUNT = 49152 - 256 - 2
_MODEL_MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's reversible byte -> printable character table, which CLIP's BPE is defined over.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build_vocab_and_merges(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1 : _MERGE_COUNT + 1]
    base = list(_bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def _tokenizer_config(pad_token: str) -> dict:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": _MODEL_MAX_LENGTH,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }


def write_tokenizer(folder: Path, vocab: dict[str, int], merges: list[str], pad_token: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    config = _tokenizer_config(pad_token)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def main() -> None:
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    vocab, merges = build_vocab_and_merges(bpe)
    root = resource_path("tokenizers")
    # SD 1.x (OpenAI CLIP ViT-L/14) pads with the end token; SDXL's second encoder (OpenCLIP bigG) pads with "!".
    write_tokenizer(root / "clip", vocab, merges, pad_token="<|endoftext|>")
    write_tokenizer(root / "clip-pad-exclaim", vocab, merges, pad_token="!")
    print(f"wrote {len(vocab)} tokens, {len(merges)} merges under {root}")


if __name__ == "__main__":
    main()
