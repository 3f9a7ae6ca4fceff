"""AUTOMATIC1111's prompt syntax: weights, nesting, escapes, BREAK and ``<lora:…>`` tags.

The rules, as AUTOMATIC1111 reads them (and as prompts copied from it, Civitai or ComfyUI mean):

- ``(text)`` multiplies the weight of ``text`` by 1.1, ``[text]`` divides it by 1.1; brackets nest,
  so ``((text))`` is 1.21. ``(text:1.3)`` multiplies by 1.3 instead of 1.1.
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are the literal characters.
- ``BREAK`` (upper case, a word of its own) ends the current 75-token chunk.
- Malformed brackets never fail: a ``)`` or ``]`` with nothing open is text; a ``(`` or ``[`` left
  open weights the rest of the prompt, as AUTOMATIC1111 does.
- ``<lora:name:weight>`` (and ``<lyco:…>``, AUTOMATIC1111's other extra-network tags) is taken out of
  the text the encoder reads and returned as a :class:`NetworkTag`.

Textual-inversion embeddings need no syntax: their file name in the prompt calls them
(:func:`find_embedding_names`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
LORA_KINDS = ("lora", "lyco")  # AUTOMATIC1111 reads <lyco:…> as a LoRA since 1.5

# One token of the attention syntax: an escape, a bracket, a ":weight)" closing, plain text, or a
# lone colon (text).
_ATTENTION_RE = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\\] | \\\\ | \\
    | \( | \[ | :\s*([+-]?[.\d]+)\s*\) | \) | \]
    | [^\\()\[\]:]+ | :
    """,
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*", re.S)
# AUTOMATIC1111's extra-network tag: <kind:arguments>.
_NETWORK_RE = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class Segment:
    """A run of text with one weight; ``is_break`` marks a BREAK (its text is empty)."""

    text: str
    weight: float = 1.0
    is_break: bool = False


@dataclass(frozen=True)
class NetworkTag:
    """An ``<kind:name:weight>`` tag as written; ``unet_weight`` is None when the tag gives one
    weight for the whole network."""

    kind: str
    name: str
    weight: float
    unet_weight: float | None = None
    source: str = ""  # the tag's text, to quote back to the user

    @property
    def is_lora(self) -> bool:
        return self.kind.lower() in LORA_KINDS


@dataclass(frozen=True)
class ParsedPrompt:
    segments: tuple[Segment, ...]
    networks: tuple[NetworkTag, ...] = ()
    problems: tuple[str, ...] = ()  # tags that could not be read, quoted for a warning

    @property
    def loras(self) -> tuple[NetworkTag, ...]:
        return tuple(n for n in self.networks if n.is_lora)

    @property
    def plain(self) -> bool:
        """True when the text has no weights and no BREAK: it encodes as the bare text would."""
        return all(s.weight == 1.0 and not s.is_break for s in self.segments)


def parse_attention(text: str) -> list[Segment]:
    """The text as runs of equal weight, BREAKs as their own segments, in order."""
    pieces: list[list] = []  # [text, weight, is_break], mutable while brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if not piece[2]:
                piece[1] *= factor

    for match in _ATTENTION_RE.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):  # an escape; a lone backslash escapes nothing
            pieces.append([token[1:], 1.0, False])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open and _is_number(weight):
            multiply(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK_RE.split(token)):
                if i:
                    pieces.append(["", 1.0, True])
                pieces.append([part, 1.0, False])
    # Brackets left open still weight what follows them, as AUTOMATIC1111 reads them.
    for start in round_open:
        multiply(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply(start, SQUARE_MULTIPLIER)
    return _merged(pieces)


def _merged(pieces: list[list]) -> list[Segment]:
    segments: list[Segment] = []
    for text, weight, is_break in pieces:
        if is_break:
            segments.append(Segment("", 1.0, True))
        elif not text:
            continue
        elif segments and not segments[-1].is_break and segments[-1].weight == weight:
            segments[-1] = Segment(segments[-1].text + text, weight)
        else:
            segments.append(Segment(text, weight))
    return segments or [Segment("", 1.0)]


def extract_networks(text: str) -> tuple[str, tuple[NetworkTag, ...], tuple[str, ...]]:
    """``text`` without its ``<kind:…>`` tags, the tags read, and the tags that could not be read."""
    tags: list[NetworkTag] = []
    problems: list[str] = []
    for match in _NETWORK_RE.finditer(text):
        tag = _network_tag(match.group(1), match.group(2), match.group(0))
        if tag is None:
            problems.append(match.group(0))
        else:
            tags.append(tag)
    return _NETWORK_RE.sub("", text), tuple(tags), tuple(problems)


def _network_tag(kind: str, arguments: str, source: str) -> NetworkTag | None:
    items = [item.strip() for item in arguments.split(":")]
    named: dict[str, str] = {}
    numbers: list[str] = []
    # Weights come last; everything before them is the name (a Windows path keeps its "C:").
    while len(items) > 1 and (_is_number(items[-1]) or _named(items[-1])):
        item = items.pop()
        key, _, value = item.partition("=")
        if _named(item):
            named[key.strip()] = value.strip()
        else:
            numbers.insert(0, item)
    name = ":".join(items)
    if not name or any(not _is_number(v) for k, v in named.items() if k != "dyn"):
        return None
    weight_text = named.get("te", numbers[0] if numbers else "1")
    unet_text = named.get("unet", numbers[1] if len(numbers) > 1 else None)
    if len(numbers) > 2 or not _is_number(weight_text):
        return None
    weight = float(weight_text)
    unet_weight = None if unet_text is None else float(unet_text)
    return NetworkTag(kind, name, weight, unet_weight, source)


def _named(item: str) -> bool:
    return item.partition("=")[0].strip() in ("te", "unet", "dyn") and "=" in item


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def parse_prompt(text: str) -> ParsedPrompt:
    stripped, networks, problems = extract_networks(text)
    return ParsedPrompt(tuple(parse_attention(stripped)), networks, problems)


def lora_tag(name: str, weight: float) -> str:
    """The tag that calls LoRA ``name`` at ``weight``, as AUTOMATIC1111 writes it."""
    return f"<lora:{name}:{weight:g}>"


def _name_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE)


def find_embedding_names(text: str, names: Iterable[str]) -> list[str]:
    """The embedding names ``text`` calls, in the order of their first use. CLIP lower-cases what it
    reads, so the match ignores case, as the names' tokens do in AUTOMATIC1111."""
    found = []
    for name in names:
        match = _name_pattern(name).search(text)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


def split_on_names(text: str, names: Iterable[str]) -> list[tuple[str, str | None]]:
    """``text`` cut around each use of an embedding name: ``(text, None)`` and ``(used, name)``."""
    ordered = sorted(names, key=len, reverse=True)  # "style-long" before "style"
    if not ordered:
        return [(text, None)]
    lowered = {name.lower(): name for name in ordered}
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(n) for n in ordered) + r")(?![\w-])", re.IGNORECASE
    )
    parts: list[tuple[str, str | None]] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            parts.append((text[position : match.start()], None))
        parts.append((match.group(0), lowered[match.group(0).lower()]))
        position = match.end()
    if position < len(text):
        parts.append((text[position:], None))
    return parts
