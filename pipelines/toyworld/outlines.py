"""Canny training scenes whose outline the caption does not describe.

The world's own scenes teach a canny ControlNet little: a single shape's caption already fixes its
outline, so the model learns to follow the words and ignore the map. These scenes draw outlines no
caption names (random polygons, free closed and open curves, several objects, letters and digits)
in the colours the caption asks for, and give the map in one of the three ways a user makes one:

- ``brush``: the outline drawn 1-3 px wide, as the condition editor's brush draws it;
- ``detected``: canny edges of a 4x or 8x larger render, reduced to the model's size (a photo
  run through the preprocessor, then scaled down);
- ``canny``: the engine's canny of the 64 px picture itself.

The caption names the colours and, most of the time, a shape, size and place of the world that
the outline contradicts ("a large red square in the center" over a letter S): the map must win.

Families kept out of training (the evaluation's ``held-out`` outlines): :data:`HELD_OUT_FAMILIES`
and the letters and digits in :data:`HELD_OUT_GLYPHS`. The same seed always gives the same sample.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.conditions import canny_map
from pipelines.toyworld import captions, world

TRAIN_FAMILIES = ("polygon", "blob", "curve", "multi", "glyph")
HELD_OUT_FAMILIES = ("house", "heart", "arrow", "held-out glyph")
HELD_OUT_GLYPHS = "SG38"
TRAIN_GLYPHS = "".join(c for c in "ABCDEFHJKLMNPRTUVWXYZ0123456789" if c not in HELD_OUT_GLYPHS)
STYLES = ("brush", "detected", "canny")
STYLE_SHARES = (0.5, 0.25, 0.25)
SUPER = 4  # drawing scale for the picture and the brush map: smooth, exact edges
MIN_EDGE_PIXELS = 12
STROKE_PX = 3.0  # width of an open curve's painted line in the 64 px picture


@dataclass
class OutlineSample:
    seed: int
    family: str
    style: str
    caption: str
    image: Image.Image
    canny: Image.Image  # the condition map (white on black, RGB)
    background: str
    colour: str


# ---- outlines as point lists in 0..1 ----------------------------------------------------------

Path = list[tuple[float, float]]  # points in 0..1 of the frame


def _polygon(rng: random.Random) -> Path:
    count = rng.randint(3, 9)
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(count))
    radius = rng.uniform(0.18, 0.42)
    cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    return [(cx + radius * rng.uniform(0.45, 1.0) * math.cos(a),
             cy + radius * rng.uniform(0.45, 1.0) * math.sin(a)) for a in angles]  # fmt: skip


def _blob(rng: random.Random, radius: float | None = None, centre: tuple | None = None) -> Path:
    radius = radius or rng.uniform(0.15, 0.4)
    cx, cy = centre or (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7))
    stretch, turn = rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)
    waves = [(k, rng.uniform(0, 0.22 / k), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4, 5)]
    points = []
    for i in range(72):
        t = 2 * math.pi * i / 72
        r = radius * (1 + sum(a * math.cos(k * t + p) for k, a, p in waves))
        x, y = r * math.cos(t), r * stretch * math.sin(t)
        points.append((cx + x * math.cos(turn) - y * math.sin(turn),
                       cy + x * math.sin(turn) + y * math.cos(turn)))  # fmt: skip
    return points


def _curve(rng: random.Random) -> Path:
    """An open curve: a cubic Bézier across much of the frame."""
    p = [(rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)) for _ in range(4)]
    out = []
    for i in range(60):
        t = i / 59
        a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t**3
        out.append((a * p[0][0] + b * p[1][0] + c * p[2][0] + d * p[3][0],
                    a * p[0][1] + b * p[1][1] + c * p[2][1] + d * p[3][1]))  # fmt: skip
    return out


def _house(rng: random.Random) -> Path:
    w, h = rng.uniform(0.35, 0.6), rng.uniform(0.25, 0.4)
    roof = rng.uniform(0.15, 0.3)
    x0, y1 = rng.uniform(0.1, 0.9 - w), rng.uniform(0.1 + h + roof, 0.92)
    y0 = y1 - h
    return [(x0, y1), (x0, y0), (x0 + w / 2, y0 - roof), (x0 + w, y0), (x0 + w, y1)]


def _heart(rng: random.Random) -> Path:
    size, cx, cy = rng.uniform(0.018, 0.028), rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6)
    points = []
    for i in range(72):
        t = 2 * math.pi * i / 72
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((cx + size * x, cy - size * y))
    return points


def _arrow(rng: random.Random) -> Path:
    length, shaft, head = rng.uniform(0.55, 0.8), rng.uniform(0.07, 0.12), rng.uniform(0.15, 0.25)
    local = [(-length / 2, -shaft), (length / 2 - head, -shaft), (length / 2 - head, -head),
             (length / 2, 0), (length / 2 - head, head), (length / 2 - head, shaft),
             (-length / 2, shaft)]  # fmt: skip
    turn, cx, cy = rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    c, s = math.cos(turn), math.sin(turn)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in local]


# ---- drawing ----------------------------------------------------------------------------------


def _scaled(path: Path, side: int) -> list[tuple[float, float]]:
    return [(x * side, y * side) for x, y in path]


def _paint(draw: ImageDraw.ImageDraw, path: Path, closed: bool, fill: object, side: int) -> None:
    """The picture's version of an outline: a filled region, or a painted line when open."""
    if closed:
        draw.polygon(_scaled(path, side), fill=fill)
    else:
        width = max(1, round(STROKE_PX * side / world.SIZE))
        draw.line(_scaled(path, side), fill=fill, width=width, joint="curve")


def _brush(paths: list[tuple[Path, bool]], width: int, size: int = world.SIZE) -> np.ndarray:
    """The outlines drawn with a ``width`` px brush, as a user draws them in the editor."""
    side = size * SUPER
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    for path, closed in paths:
        points = _scaled(path + path[:1] if closed else path, side)
        draw.line(points, fill=255, width=width * SUPER, joint="curve")
        for x, y in (points[0], points[-1]):  # round the line's ends as a brush does
            r = width * SUPER / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX)) >= 96


def _detected(big: Image.Image, size: int = world.SIZE) -> np.ndarray:
    """Canny edges of a large render, reduced to ``size`` keeping every edge (block maximum)."""
    edges = np.asarray(canny_map(big, world.CANNY_LOW, world.CANNY_HIGH))[..., 0] > 0
    factor = big.width // size
    return edges.reshape(size, factor, size, factor).any(axis=(1, 3))


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Morphological skeleton (Lantuéjoul): the centre lines of a letter's strokes."""
    image = mask.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    skeleton = np.zeros_like(image)
    while image.any():
        eroded = cv2.erode(image, kernel)
        skeleton |= image - cv2.dilate(eroded, kernel)
        image = eroded
    return skeleton.astype(bool)


def _glyph(rng: random.Random, letters: str, side: int) -> tuple[Image.Image, float]:
    """A letter or digit as a white-on-black mask at ``side`` px, and its stroke width in px of
    the 64 px frame."""
    char = rng.choice(letters)
    height = rng.uniform(0.55, 0.85)
    font = ImageFont.load_default(size=round(side * height * 1.2))
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    bold = round(rng.uniform(0.0, 0.02) * side)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font, stroke_width=bold)
    x = rng.uniform(0.05 * side, max(0.05 * side, 0.95 * side - (right - left))) - left
    y = rng.uniform(0.05 * side, max(0.05 * side, 0.95 * side - (bottom - top))) - top
    draw.text((x, y), char, fill=255, font=font, stroke_width=bold, stroke_fill=255)
    mask = mask.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR)
    return mask, height


def _outlines(family: str, rng: random.Random) -> list[tuple[Path, bool]]:
    if family == "polygon":
        return [(_polygon(rng), True)]
    if family == "blob":
        return [(_blob(rng), True)]
    if family == "curve":
        return [(_curve(rng), False) for _ in range(rng.randint(1, 2))]
    if family == "multi":
        out = []
        for _ in range(rng.randint(2, 4)):
            kind = rng.random()
            radius, centre = (
                rng.uniform(0.08, 0.2),
                (rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)),
            )
            if kind < 0.4:
                out.append((_blob(rng, radius, centre), True))
            elif kind < 0.8:
                sides = rng.randint(3, 6)
                turn = rng.uniform(0, 2 * math.pi)
                out.append(([(centre[0] + radius * math.cos(turn + 2 * math.pi * k / sides),
                              centre[1] + radius * math.sin(turn + 2 * math.pi * k / sides))
                             for k in range(sides)], True))  # fmt: skip
            else:
                out.append((_curve(rng), False))
        return out
    if family == "house":
        return [(_house(rng), True)]
    if family == "heart":
        return [(_heart(rng), True)]
    if family == "arrow":
        return [(_arrow(rng), True)]
    raise ValueError(f"unknown outline family {family!r}")


# ---- samples ----------------------------------------------------------------------------------


def contradicting_caption(rng: random.Random, colour: str, background: str, plain: bool) -> str:
    """A caption with the right colours and a shape, size and place of the world's choosing."""
    thing = captions.Thing(rng.choice(world.SHAPES), colour, rng.choice(list(world.SIZES)),
                           rng.choice(list(world.POSITIONS)))  # fmt: skip
    if plain:
        return captions.plain_caption([thing], background)
    return captions.paraphrase(rng, [thing], background)


def outline_caption(rng: random.Random, colour: str, background: str) -> str:
    roll = rng.random()
    if roll < 0.35:  # the evaluation's case: the world's grammar, the wrong shape
        return contradicting_caption(rng, colour, background, plain=True)
    if roll < 0.6:
        return contradicting_caption(rng, colour, background, plain=False)
    if roll < 0.85:  # colours only: "a red shape on a blue background"
        return captions.paraphrase(rng, [captions.Thing("shape", colour)], background, partial=0.0)
    return captions.background_phrase(rng, background)


def make_outline_sample(
    seed: int, family: str | None = None, style: str | None = None, caption: str | None = None
) -> OutlineSample:
    """An outline scene from its seed. ``family``/``style`` default to a seeded training choice;
    ``caption`` replaces the seeded one (the evaluation fixes a contradicting one)."""
    rng = random.Random(seed)
    family = family or rng.choice(TRAIN_FAMILIES)
    style = style or rng.choices(STYLES, STYLE_SHARES)[0]
    background = rng.choice(list(world.COLOURS))
    colour = rng.choice([c for c in world.COLOURS if c != background])
    factor = 8 if style == "detected" and rng.random() < 0.5 else SUPER
    side = world.SIZE * factor
    picture = Image.new("RGB", (side, side), world.COLOURS[background])
    brush_map = None
    if family in ("glyph", "held-out glyph"):
        letters = TRAIN_GLYPHS if family == "glyph" else HELD_OUT_GLYPHS
        mask, _ = _glyph(rng, letters, side)
        width = rng.randint(1, 3)
        if style == "brush":
            # A letter drawn with a brush is a line along its strokes: the picture paints that
            # line, so the picture's edges lie within the line's width of what was drawn.
            small = np.asarray(mask.resize((world.SIZE * SUPER,) * 2, Image.Resampling.BOX))
            strokes = Image.fromarray(_skeleton(small >= 128).astype(np.uint8) * 255)
            line = strokes.filter(_max_filter(round(STROKE_PX * SUPER)))
            mask = line.resize((side, side), Image.Resampling.BILINEAR)
            brush = strokes.filter(_max_filter(width * SUPER))
            brush_map = np.asarray(brush.resize((world.SIZE,) * 2, Image.Resampling.BOX)) >= 96
        picture.paste(world.COLOURS[colour], mask=mask)
    else:
        paths = _outlines(family, rng)
        draw = ImageDraw.Draw(picture)
        for path, closed in paths:
            _paint(draw, path, closed, world.COLOURS[colour], side)
        brush_map = _brush(paths, rng.randint(1, 3))
    image = picture.resize((world.SIZE, world.SIZE), Image.Resampling.BOX)
    if style == "detected":
        edges = _detected(picture)
    elif style == "canny":
        edges = np.asarray(canny_map(image, world.CANNY_LOW, world.CANNY_HIGH))[..., 0] > 0
    if style == "brush" or edges.sum() < MIN_EDGE_PIXELS:
        # Colours of equal grey have no canny edges: a map with nothing on it teaches nothing.
        style, edges = "brush", _brush_map_of(picture, brush_map)
    condition = Image.fromarray(edges.astype(np.uint8) * 255).convert("RGB")
    text = caption if caption is not None else outline_caption(rng, colour, background)
    return OutlineSample(seed, family, style, text, image, condition, background, colour)


def _brush_map_of(picture: Image.Image, brush_map: np.ndarray | None) -> np.ndarray:
    if brush_map is not None:
        return brush_map
    # A filled letter has no brush map of its own: draw its outline with a 2 px brush.
    rgb = np.asarray(picture.resize((world.SIZE * SUPER,) * 2), dtype=np.int16)
    inside = (np.abs(rgb - rgb[0, 0]).sum(axis=2) > 60).astype(np.uint8)
    outline = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((2 * SUPER, 2 * SUPER)))
    return (
        np.asarray(Image.fromarray(outline * 255).resize((world.SIZE,) * 2, Image.Resampling.BOX))
        >= 96
    )


def _max_filter(width: int):
    from PIL import ImageFilter

    return ImageFilter.MaxFilter(width if width % 2 else width + 1)


def fingerprint(count: int = 8) -> str:
    """A short hash of the first samples: data encoded from other outlines is not reused."""
    return world.digest_of((make_outline_sample(seed) for seed in range(count)), ("image", "canny"))
