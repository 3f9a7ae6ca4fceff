"""How much of a prompt the text encoder reads, so nothing is cut silently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers takes seconds to import; only the annotation needs it
    from transformers import PreTrainedTokenizerBase

# The encoder reads 75 tokens, a few hundred characters. Counting every token of a huge paste would
# cost time on each keystroke for no information, so only this much of the text is tokenized;
# past it the count is a lower bound, which is all anyone needs to see that text is dropped.
COUNTED_CHARS = 4_000


@dataclass(frozen=True)
class PromptReport:
    tokens: int  # tokens in the prompt, without the start/end markers (a lower bound if partial)
    window: int  # tokens the encoder reads (75 for CLIP)
    dropped: str  # the text past the window, as the tokenizer splits it; empty when it all fits
    partial: bool = False  # only the first COUNTED_CHARS characters were counted

    @property
    def fits(self) -> bool:
        return self.tokens <= self.window and not (self.partial and self.dropped)

    @property
    def count_text(self) -> str:
        return f"{self.tokens}+" if self.partial else str(self.tokens)


def prompt_report(
    tokenizer: PreTrainedTokenizerBase, prompt: str, max_chars: int = COUNTED_CHARS
) -> PromptReport:
    window = tokenizer.model_max_length - 2
    partial = len(prompt) > max_chars
    counted = prompt[:max_chars] if partial else prompt
    encoded = tokenizer(
        counted, add_special_tokens=False, truncation=False, return_offsets_mapping=True
    )
    ids = encoded.input_ids
    # Quote the user's own text from the first unread token on, not a re-decoded approximation.
    if len(ids) > window:
        dropped = prompt[encoded.offset_mapping[window][0] :].strip()
    else:
        dropped = prompt[max_chars:].strip() if partial else ""
    return PromptReport(tokens=len(ids), window=window, dropped=dropped, partial=partial)


def truncation_warning(label: str, report: PromptReport) -> str:
    dropped = report.dropped if len(report.dropped) <= 300 else report.dropped[:300] + "…"
    return (
        f"The {label} is {'at least ' if report.partial else ''}{report.tokens} tokens; the text "
        f'encoder reads {report.window}. Not used: "{dropped}". Shorten it or move the important '
        "words to the front."
    )
