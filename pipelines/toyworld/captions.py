"""Say a toy-world scene the way people say it: synonyms, free word order, partial captions.

The world's own captions follow one grammar ("a small red circle at the top left on a blue
background"). :func:`paraphrase` rewrites the facts of a scene with a seeded choice of words and
sentence frames, so a text encoder trained on them understands "a big crimson circle in the
middle, blue backdrop" too.

A text encoder trained from scratch knows only the words it saw, so every word a user may type is
in :data:`SYNONYMS`; what the evaluation holds out are the sentence frames in
:data:`HELD_OUT_FRAMES` (orders the training never uses) and the word choices they draw together.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.toyworld.world import Sample

# Every word the world knows, with the ways people say it. The first entry is the world's own.
SYNONYMS: dict[str, tuple[str, ...]] = {
    # colours
    "red": ("red", "crimson", "scarlet", "cherry red"),
    "green": ("green", "emerald", "grass green", "lime"),
    "blue": ("blue", "azure", "cobalt", "royal blue"),
    "yellow": ("yellow", "golden", "lemon", "sunny yellow"),
    "orange": ("orange", "tangerine", "amber", "pumpkin orange"),
    "purple": ("purple", "violet", "lilac", "plum"),
    "white": ("white", "ivory", "snow white", "pale white"),
    "black": ("black", "jet black", "ebony", "dark"),
    # sizes
    "small": ("small", "tiny", "little", "smaller"),
    "large": ("large", "big", "huge", "giant"),
    # shapes and things
    "circle": ("circle", "disc", "disk", "round dot"),
    "square": ("square", "square shape", "square tile", "tile"),
    "triangle": ("triangle", "triangular shape", "triangle shape", "wedge"),
    "star": ("star", "five-pointed star", "starburst", "star shape"),
    "ring": ("ring", "donut", "doughnut", "hoop"),
    "sphere": ("sphere", "ball", "orb", "globe"),
    "box": ("box", "cube", "crate", "block"),
    "person": ("person", "man", "figure", "stick figure"),
    # what a caption calls an outline it does not name
    "shape": ("shape", "thing", "drawing", "outline", "object", "form"),
    # poses
    "standing": ("standing", "standing still", "standing upright", "standing straight"),
    "raising both arms": ("raising both arms", "with both arms up", "with arms raised",
                          "both hands up"),
    "raising the left arm": ("raising the left arm", "with the left arm up",
                             "left hand raised", "lifting the left arm"),
    "raising the right arm": ("raising the right arm", "with the right arm up",
                              "right hand raised", "lifting the right arm"),
    "with arms out": ("with arms out", "with outstretched arms", "arms spread wide",
                      "arms stretched out"),
    "walking": ("walking", "striding", "mid stride", "taking a step"),
    # background
    "background": ("background", "backdrop", "background colour", "background color"),
}  # fmt: skip

# Positions: the world's name, then the phrases people use for it.
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner", "top left", "upper left",
                 "at the upper left"),
    "top": ("at the top", "at the top center", "top", "near the top", "up top"),
    "top right": ("at the top right", "in the top right corner", "top right", "upper right",
                  "at the upper right"),
    "left": ("at the left", "on the left", "left", "on the left side", "at the left middle"),
    "center": ("in the center", "in the centre", "in the middle", "center", "centre",
               "middle", "at the center", "in the centre of the picture"),
    "right": ("at the right", "on the right", "right", "on the right side",
              "at the right middle"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "bottom left",
                    "lower left", "at the lower left"),
    "bottom": ("at the bottom", "at the bottom center", "bottom", "near the bottom",
               "down low"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "bottom right",
                     "lower right", "at the lower right"),
}  # fmt: skip

# How a background is said; {colour} is one of the colour's words, {bg} one of "background"'s.
BACKGROUND_PHRASES = (
    "on {a} {colour} {bg}", "{colour} {bg}", "against {a} {colour} {bg}", "with {a} {colour} {bg}",
    "on {colour}", "over {a} {colour} {bg}",
)  # fmt: skip

# Sentence frames: {subject} is the thing(s), {background} the background phrase.
TRAIN_FRAMES = (
    "{subject} {background}",
    "{subject}, {background}",
    "{background}, {subject}",
    "{background} with {subject}",
    "{subject}",
    "{background}",
)
# Held out of training: the evaluation asks in these orders only.
HELD_OUT_FRAMES = (
    "{background}; {subject}",
    "there is {subject} {background}",
    "picture of {subject} {background}",
    "{background} and {subject}",
)


@dataclass
class Thing:
    """One thing in a scene, by the world's names (None: not said)."""

    noun: str  # shape, solid or "person"
    colour: str | None = None
    size: str | None = None
    position: str | None = None
    pose: str | None = None


def article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def _word(rng: random.Random, name: str, plain: bool) -> str:
    return name if plain else rng.choice(SYNONYMS[name])


def thing_phrase(rng: random.Random, thing: Thing, plain: bool = False) -> str:
    """ "a big crimson circle in the middle"; ``plain``: in the world's own words."""
    words = []
    if thing.size:
        words.append(_word(rng, thing.size, plain))
    if thing.colour:
        words.append(_word(rng, thing.colour, plain))
    words.append(_word(rng, thing.noun, plain))
    phrase = " ".join(words)
    phrase = f"{article(phrase)} {phrase}"
    if thing.pose:
        phrase += " " + _word(rng, thing.pose, plain)
    if thing.position:
        if plain:
            where = "in the center" if thing.position == "center" else f"at the {thing.position}"
        else:
            where = rng.choice(POSITION_PHRASES[thing.position])
            if rng.random() < 0.2:  # "in the middle, a red circle" order inside the phrase
                return f"{where}, {phrase}"
        phrase += " " + where
    return phrase


def background_phrase(rng: random.Random, colour: str, plain: bool = False) -> str:
    if plain:
        return f"on {article(colour)} {colour} background"
    word = _word(rng, colour, False)
    template = rng.choice(BACKGROUND_PHRASES)
    return template.format(a=article(word), colour=word, bg=_word(rng, "background", False))


def paraphrase(
    rng: random.Random,
    things: list[Thing],
    background: str | None,
    frames: tuple[str, ...] = TRAIN_FRAMES,
    partial: float = 0.3,
) -> str:
    """A caption for ``things`` on ``background`` in freely chosen words and order.

    With probability ``partial`` some attributes (size, position, pose, sometimes the noun's
    colour or the background) are left unsaid, as people often do.
    """
    kept = []
    for thing in things:
        thing = Thing(**vars(thing))
        if rng.random() < partial:
            for name in ("size", "position", "pose"):
                if rng.random() < 0.5:
                    setattr(thing, name, None)
        kept.append(thing)
    joiner = rng.choice((" and ", ", ", " with ", " next to "))
    subject = joiner.join(thing_phrase(rng, t) for t in kept)
    said_background = background if background and rng.random() >= partial * 0.3 else None
    frame = rng.choice(frames)
    if "{background}" in frame and said_background is None:
        frame = "{subject}"
    if "{subject}" not in frame and said_background is None:
        frame = "{subject}"
    back = background_phrase(rng, said_background) if said_background else ""
    caption = frame.format(subject=subject, background=back)
    return caption[0].lower() + caption[1:]


def plain_caption(things: list[Thing], background: str) -> str:
    """The world's own grammar (what the base model was trained on)."""
    rng = random.Random(0)  # unused by the plain words; keeps one code path
    subject = " and ".join(thing_phrase(rng, t, plain=True) for t in things)
    return f"{subject} {background_phrase(rng, background, plain=True)}"


def every_word() -> set[str]:
    """Every word the paraphrases may use (for the tokenizer check in the tests)."""
    words: set[str] = set()
    for group in (*SYNONYMS.values(), *POSITION_PHRASES.values(), BACKGROUND_PHRASES,
                  TRAIN_FRAMES, HELD_OUT_FRAMES):  # fmt: skip
        for phrase in group:
            words.update(w.strip(",;") for w in phrase.split() if "{" not in w)
    return words


def scene_things(sample: Sample) -> list[Thing]:
    """The facts of a world sample, by the world's names."""
    if sample.kind == "shapes":
        return [Thing(s.shape, s.colour, s.size, s.position) for s in sample.shapes]
    if sample.kind == "person":
        return [Thing("person", sample.subject_colour, pose=sample.subject)]
    return [Thing(sample.subject or "box", sample.subject_colour)]


def say(sample: Sample, rng: random.Random, frames: tuple[str, ...] = TRAIN_FRAMES) -> str:
    """A free caption for a world sample."""
    return paraphrase(rng, scene_things(sample), sample.background, frames)


# ---- words that say nothing about the scene ----------------------------------------------------

# Words that would change what a caption asks for if they were ignored, or that name something
# the world could draw: never used as fillers.
_MEANINGFUL = {
    "no", "not", "without", "never", "nothing", "none", "only", "except", "instead", "but",
    "pink", "brown", "grey", "gray", "magenta", "cyan", "teal", "navy", "maroon", "beige", "gold",
    "silver", "indigo", "turquoise", "olive", "rose", "peach", "cream", "tan", "colour", "color",
    "colored", "coloured", "bright", "light", "pale", "oval", "rectangle", "hexagon", "pentagon",
    "heart", "diamond", "cross", "line", "dot", "round", "corner", "side", "edge", "tall", "wide",
    "short", "long", "many", "two", "three", "four", "several", "big", "person", "people",
}  # fmt: skip
# Marks people put between phrases; ";" is left to the evaluation's held-out frames.
FILLER_MARKS = (".", "!", ":", "-", "...", "(", ")")
FILLER_SHARE = 0.4  # of the paraphrases, those that get words the world does not know


def filler_pool(vocabulary: Iterable[str]) -> list[str]:
    """Whole words of a tokenizer's vocabulary (``"word</w>"`` entries) that name nothing the
    world knows: inserted into captions, they teach a text encoder that an unknown word ("there
    is …", "a photo of …") leaves the scene as it is. The held-out frames' words are left out,
    so the evaluation still asks in words the training never used."""
    held_out = {w.strip(",;") for f in HELD_OUT_FRAMES for w in f.split() if "{" not in w}
    excluded = every_word() | held_out | _MEANINGFUL
    excluded |= {w for phrase in excluded for w in phrase.split()}
    words = (token[: -len("</w>")] for token in vocabulary if token.endswith("</w>"))
    return sorted(w for w in words if re.fullmatch(r"[a-z]{2,10}", w) and w not in excluded)


def add_fillers(rng: random.Random, caption: str, pool: list[str]) -> str:
    """``caption`` with one to three filler words or marks before, inside or after it, at a
    boundary between phrases (never inside a phrase, where a word could change what is said)."""
    parts = caption.split(", ")
    for _ in range(rng.randint(1, 3)):
        filler = rng.choice(FILLER_MARKS) if rng.random() < 0.25 else rng.choice(pool)
        if rng.random() < 0.3:
            filler = f"{filler} {rng.choice(pool)}"
        parts.insert(rng.randint(0, len(parts)), filler)
    return " ".join(parts) if rng.random() < 0.5 else ", ".join(parts)


# Words of positions whose synonyms are single words.
_POSITION_WORDS = {"middle": "center", "centre": "center", "upper": "top", "lower": "bottom"}
_GRAMMAR = {"a", "an", "the", "on", "at", "in", "with", "of", "and", "up", "to", "both", "arm",
            "arms", "hand", "hands", "left", "right"}  # fmt: skip


def word_ties() -> dict[str, str]:
    """Synonym -> the world's own word, for single words that stand for one world word.

    A text encoder trained from scratch has never seen "crimson"; starting its embedding at
    "red"'s makes "a crimson circle" read as "a red circle" before any training. Words that
    stand for several world words ("shape", "corner") or are world words themselves are left out.
    """
    world_words = {w for name in SYNONYMS for w in name.split()}
    seen: dict[str, set[str]] = {}
    for name, phrases in SYNONYMS.items():
        if len(name.split()) > 1 or name in ("background", "shape"):
            continue  # poses: phrases, not words
        for phrase in phrases[1:]:
            for word in phrase.replace("-", " ").split():
                if word != name:
                    seen.setdefault(word, set()).add(name)
    ties = {
        w: next(iter(n))
        for w, n in seen.items()
        if len(n) == 1 and w not in world_words and w not in _GRAMMAR
    }
    ties["backdrop"] = "background"
    ties.update(_POSITION_WORDS)
    return ties
