"""How much of a prompt the text encoder reads, so nothing is cut silently."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptReport:
    tokens: int  # tokens in the prompt, without the start/end markers
    window: int  # tokens the encoder reads (75 for CLIP)
    dropped: str  # the text past the window, as the tokenizer splits it; empty when it all fits

    @property
    def fits(self) -> bool:
        return self.tokens <= self.window


def prompt_report(tokenizer, prompt: str) -> PromptReport:
    window = tokenizer.model_max_length - 2
    encoded = tokenizer(
        prompt, add_special_tokens=False, truncation=False, return_offsets_mapping=True
    )
    ids = encoded.input_ids
    # Quote the user's own text from the first unread token on, not a re-decoded approximation.
    dropped = prompt[encoded.offset_mapping[window][0] :].strip() if len(ids) > window else ""
    return PromptReport(tokens=len(ids), window=window, dropped=dropped)


def truncation_warning(label: str, report: PromptReport) -> str:
    return (
        f"The {label} is {report.tokens} tokens; the text encoder reads {report.window}. "
        f'Not used: "{report.dropped}". Shorten it or move the important words to the front.'
    )
