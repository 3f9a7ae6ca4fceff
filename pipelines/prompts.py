"""How a prompt fills the text encoder's 75-token chunks, for the token counter and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.prompt_encoding import CHUNK_TOKENS, split_into_chunks
from pipelines.prompt_syntax import parse_prompt

if TYPE_CHECKING:  # transformers takes seconds to import; only the annotation needs it
    from transformers import PreTrainedTokenizerBase

# A prompt of a few chunks is a few hundred characters. Counting every token of a huge paste would
# cost time on each keystroke for no information, so only this much of the text is tokenized;
# past it the count is a lower bound.
COUNTED_CHARS = 4_000


@dataclass(frozen=True)
class PromptReport:
    tokens: int  # tokens the encoder reads, without start/end markers (a lower bound if partial)
    chunks: int  # 75-token chunks the prompt fills; each is encoded on its own
    partial: bool = False  # only the first COUNTED_CHARS characters were counted

    @property
    def capacity(self) -> int:
        return self.chunks * CHUNK_TOKENS

    @property
    def count_text(self) -> str:
        return f"{self.tokens}+" if self.partial else str(self.tokens)

    @property
    def label(self) -> str:
        """``120 / 150 · 2 chunks``: tokens used out of what the chunks hold."""
        plural = "chunk" if self.chunks == 1 else "chunks"
        return f"{self.count_text} / {self.capacity} · {self.chunks} {plural}"


def prompt_report(
    tokenizer: PreTrainedTokenizerBase, prompt: str, max_chars: int = COUNTED_CHARS
) -> PromptReport:
    partial = len(prompt) > max_chars
    counted = prompt[:max_chars] if partial else prompt
    chunks = split_into_chunks(tokenizer, parse_prompt(counted).segments)
    return PromptReport(tokens=sum(len(c) for c in chunks), chunks=len(chunks), partial=partial)
