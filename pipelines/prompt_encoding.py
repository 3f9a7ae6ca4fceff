"""Prompts into the tensors the pipelines take, read as AUTOMATIC1111 reads them.

- **Chunks.** CLIP reads 75 tokens (77 with its start and end markers). A longer prompt is cut into
  chunks of 75 tokens, each encoded on its own with its own markers, and the encodings are joined
  along the sequence. A chunk that fills up moves the words after its last comma to the next chunk
  when that comma lies within its final 20 tokens, so a phrase is not split. ``BREAK`` starts a new
  chunk. The prompt and the negative prompt are padded with encodings of the empty prompt to the same
  number of chunks. Nothing is dropped.
- **Weights.** Each token's encoding is multiplied by its weight, then the whole chunk is rescaled so
  its mean is what it was before weighting (AUTOMATIC1111's rule): weights shift emphasis between
  words without making the whole prompt louder or quieter.
- **Clip skip** (SD 1.x): ``N`` reads the output of the encoder's N-th layer from the end, through
  its final layer norm; 1 is the last layer, as diffusers reads it. SDXL always reads the penultimate
  layer of both encoders, joins them, and takes its pooled embedding from the first chunk.
- **Embeddings.** A textual-inversion embedding's name in the prompt is replaced by its vectors.

A prompt without weights, BREAK or embeddings that fits in 75 tokens encodes to exactly the tensors
diffusers' own ``encode_prompt`` gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.prompt_syntax import Segment, parse_prompt, split_on_names
from pipelines.types import ModelFamily

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

# torch is imported where tensors are made: the window's token counter imports this module for
# its chunking while the worker may still be importing torch, and waited for it (a frozen window).

CHUNK_TOKENS = 75
COMMA_BACKTRACK = 20  # a full chunk gives back the words after a comma this close to its end
_PLACEHOLDER_ID = 0  # where an embedding's vectors go; replaced before the encoder reads it

# name -> the embedding's vectors, one (vectors, width) tensor per text encoder of the model
EmbeddingVectors = Mapping[str, Sequence["torch.Tensor"]]


@dataclass
class TokenChunk:
    """Up to 75 tokens: ids, one weight each, and embedding vectors keyed by their position."""

    ids: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    vectors: dict[int, torch.Tensor] = field(default_factory=dict)  # position -> (width,)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Conditioning:
    """The encoded prompts, ready for the pipelines' ``prompt_embeds`` arguments."""

    prompt_embeds: torch.Tensor  # (1, 77 * chunks, width)
    negative_prompt_embeds: torch.Tensor | None  # None when guidance is off
    pooled: torch.Tensor | None = None  # SDXL only
    negative_pooled: torch.Tensor | None = None
    chunks: int = 1
    embeddings: tuple[str, ...] = ()  # the embedding names the prompts used

    def pipeline_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"prompt_embeds": self.prompt_embeds}
        if self.negative_prompt_embeds is not None:
            arguments["negative_prompt_embeds"] = self.negative_prompt_embeds
        if self.pooled is not None:
            arguments["pooled_prompt_embeds"] = self.pooled
            if self.negative_pooled is not None:
                arguments["negative_pooled_prompt_embeds"] = self.negative_pooled
        return arguments


def comma_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    token = tokenizer.convert_tokens_to_ids(",</w>")
    return None if token is None or token == tokenizer.unk_token_id else token


def split_into_chunks(
    tokenizer: PreTrainedTokenizerBase,
    segments: Sequence[Segment],
    embeddings: Mapping[str, torch.Tensor] | None = None,
) -> list[TokenChunk]:
    """The prompt's tokens as chunks of at most 75, cut as described in the module's notes.
    ``embeddings`` maps a name to its (vectors, width) tensor for this tokenizer's encoder."""
    embeddings = embeddings or {}
    comma = comma_id(tokenizer)
    chunks: list[TokenChunk] = []
    chunk = TokenChunk()
    last_comma = -1

    def close() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk = TokenChunk()
        last_comma = -1

    for segment in segments:
        if segment.is_break:
            close()
            continue
        for text, name in split_on_names(segment.text, embeddings):
            if name is not None:
                vectors = embeddings[name]
                if len(chunk) + len(vectors) > CHUNK_TOKENS:
                    close()
                for row in vectors:
                    chunk.vectors[len(chunk)] = row
                    chunk.ids.append(_PLACEHOLDER_ID)
                    chunk.weights.append(segment.weight)
                continue
            # verbose=False: a segment past 77 tokens is expected here, chunks take it whole.
            ids = tokenizer(
                text, add_special_tokens=False, truncation=False, verbose=False
            ).input_ids
            for token in ids:
                if token == comma:
                    last_comma = len(chunk)
                elif len(chunk) == CHUNK_TOKENS and 0 <= len(chunk) - last_comma <= COMMA_BACKTRACK:
                    moved = _split_off(chunk, last_comma + 1)
                    close()
                    chunk = moved
                if len(chunk) == CHUNK_TOKENS:
                    close()
                chunk.ids.append(token)
                chunk.weights.append(segment.weight)
    if len(chunk) or not chunks:
        close()
    return chunks


def _split_off(chunk: TokenChunk, start: int) -> TokenChunk:
    moved = TokenChunk(chunk.ids[start:], chunk.weights[start:])
    moved.vectors = {p - start: v for p, v in chunk.vectors.items() if p >= start}
    chunk.vectors = {p: v for p, v in chunk.vectors.items() if p < start}
    del chunk.ids[start:], chunk.weights[start:]
    return moved


def chunk_input_ids(tokenizer: PreTrainedTokenizerBase, chunk: TokenChunk) -> torch.Tensor:
    """(1, 77): start marker, tokens, end marker, then the tokenizer's own padding, as diffusers
    lays out a prompt."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id]
    ids += [pad] * (CHUNK_TOKENS + 2 - len(ids))
    import torch

    return torch.tensor([ids], dtype=torch.long)


@contextlib.contextmanager
def _vectors_in_place(text_encoder: Any, vectors: Mapping[int, torch.Tensor]) -> Iterator[None]:
    """While open, the encoder's token embedding gives ``vectors`` at their positions (shifted by
    the start marker): the textual-inversion embeddings, without touching the vocabulary."""
    if not vectors:
        yield
        return

    def replace(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for position, row in vectors.items():
            output[:, position + 1] = row.to(output.device, output.dtype)
        return output

    handle = text_encoder.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def _final_norm(text_encoder: Any) -> Any:
    # transformers 5 puts the layers on the model itself; earlier versions under .text_model.
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def _weighted(hidden: torch.Tensor, chunk: TokenChunk) -> torch.Tensor:
    if all(w == 1.0 for w in chunk.weights):
        return hidden  # exactly the unweighted encoding
    import torch

    weights = [1.0, *chunk.weights] + [1.0] * (hidden.shape[1] - 1 - len(chunk.weights))
    scale = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device).reshape(1, -1, 1)
    original_mean = hidden.mean()
    hidden = hidden * scale
    return hidden * (original_mean / hidden.mean())


def _device_of(module: Any) -> torch.device:
    from diffusers.utils.torch_utils import get_module_execution_device

    return get_module_execution_device(module)


def encode_chunk(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: Any,
    chunk: TokenChunk,
    layer: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden (1, 77, width), pooled output) of one chunk. ``layer`` None reads the encoder's
    output (its last layer through the final norm); a negative number reads that hidden state
    (SD 1.x's clip skip puts it through the final norm, SDXL's penultimate layer does not)."""
    ids = chunk_input_ids(tokenizer, chunk).to(_device_of(text_encoder))
    with _vectors_in_place(text_encoder, chunk.vectors):
        output = text_encoder(ids, output_hidden_states=layer is not None)
    if layer is None:
        hidden = output[0]
    else:
        hidden = output.hidden_states[layer]
    return hidden, output[0]


_ChunkCache = dict[tuple[int, tuple[int, ...], tuple[float, ...]], tuple["torch.Tensor", Any]]


def _encode_text(
    tokenizers: Sequence[Any],
    encoders: Sequence[Any],
    chunk_lists: Sequence[list[TokenChunk]],
    layers: Sequence[int | None],
    final_norm: bool,
    cache: _ChunkCache,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All chunks through every encoder: (1, 77 * chunks, total width), pooled of the first.
    ``cache`` keeps each chunk's encoding: the empty chunks that pad a prompt are encoded once."""
    import torch

    per_chunk = []
    pooled = None
    for index in range(len(chunk_lists[0])):
        widths = []
        for number, (tokenizer, encoder, chunks, layer) in enumerate(
            zip(tokenizers, encoders, chunk_lists, layers)
        ):
            chunk = chunks[index]
            key = (number, tuple(chunk.ids), tuple(chunk.weights))
            if chunk.vectors or key not in cache:
                hidden, first_output = encode_chunk(tokenizer, encoder, chunk, layer)
                if final_norm and layer is not None:
                    hidden = _final_norm(encoder)(hidden)
                cache[key] = (_weighted(hidden, chunk), first_output)
            hidden, first_output = cache.pop(key) if chunk.vectors else cache[key]
            widths.append(hidden)
            if index == 0 and first_output.ndim == 2:
                pooled = first_output  # the projected pooled output of SDXL's second encoder
        per_chunk.append(widths[0] if len(widths) == 1 else torch.cat(widths, dim=-1))
    return torch.cat(per_chunk, dim=1), pooled


@dataclass(frozen=True)
class _Encoders:
    tokenizers: tuple[Any, ...]
    encoders: tuple[Any, ...]
    layers: tuple[int | None, ...]
    final_norm: bool
    dtype: torch.dtype


def _encoders_of(pipe: Any, family: ModelFamily, clip_skip: int) -> _Encoders:
    if family is ModelFamily.SDXL:
        return _Encoders(
            (pipe.tokenizer, pipe.tokenizer_2),
            (pipe.text_encoder, pipe.text_encoder_2),
            (-2, -2),
            final_norm=False,
            dtype=pipe.text_encoder_2.dtype,
        )
    layers = pipe.text_encoder.config.num_hidden_layers
    layer = None if clip_skip <= 1 else -min(clip_skip, layers)
    return _Encoders(
        (pipe.tokenizer,), (pipe.text_encoder,), (layer,), final_norm=True,
        dtype=pipe.text_encoder.dtype,
    )  # fmt: skip


def _chunks_for(
    encoders: _Encoders, text: str, embeddings: EmbeddingVectors
) -> list[list[TokenChunk]]:
    segments = parse_prompt(text).segments
    return [
        split_into_chunks(tokenizer, segments, {n: v[i] for n, v in embeddings.items()})
        for i, tokenizer in enumerate(encoders.tokenizers)
    ]


def _padded(chunk_lists: list[list[TokenChunk]], count: int) -> list[list[TokenChunk]]:
    return [chunks + [TokenChunk() for _ in range(count - len(chunks))] for chunks in chunk_lists]


def encode_prompts(
    pipe: Any,
    family: ModelFamily,
    prompt: str,
    negative_prompt: str,
    guided: bool,
    clip_skip: int = 1,
    embeddings: EmbeddingVectors | None = None,
) -> Conditioning:
    """Both prompts of a run, encoded for ``pipe`` (a diffusers SD 1.x or SDXL pipeline).

    ``embeddings`` holds the vectors of the embeddings the prompts may call, by name. Runs under
    ``torch.inference_mode`` on the text encoders' own device.
    """
    import torch

    embeddings = embeddings or {}
    encoders = _encoders_of(pipe, family, clip_skip)
    positive = _chunks_for(encoders, prompt, embeddings)
    negative = _chunks_for(encoders, negative_prompt, embeddings) if guided else None
    count = max(len(positive[0]), len(negative[0]) if negative else 0)
    arguments = (encoders.tokenizers, encoders.encoders)
    cache: _ChunkCache = {}
    with torch.inference_mode():
        embeds, pooled = _encode_text(
            *arguments, _padded(positive, count), encoders.layers, encoders.final_norm, cache
        )
        negative_embeds = negative_pooled = None
        # diffusers' SDXL pipelines give an empty negative prompt zeros, not its encoding.
        zeros = family is ModelFamily.SDXL and pipe.config.get("force_zeros_for_empty_prompt")
        if negative is not None and zeros and not negative_prompt:
            negative_embeds, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
        elif negative is not None:
            negative_embeds, negative_pooled = _encode_text(
                *arguments, _padded(negative, count), encoders.layers, encoders.final_norm, cache
            )
    used = sorted(
        {n for n in embeddings if _calls(n, prompt) or (guided and _calls(n, negative_prompt))}
    )
    return Conditioning(
        prompt_embeds=embeds.to(encoders.dtype),
        negative_prompt_embeds=None
        if negative_embeds is None
        else negative_embeds.to(encoders.dtype),
        pooled=None if family is ModelFamily.SD1 else pooled,
        negative_pooled=None if family is ModelFamily.SD1 else negative_pooled,
        chunks=count,
        embeddings=tuple(used),
    )


def _calls(name: str, text: str) -> bool:
    return any(found is not None for _, found in split_on_names(text, [name]))
