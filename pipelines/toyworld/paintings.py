"""Depth training scenes as a user paints depth maps: soft blobs and painted gradients.

The world's depth maps come from its solids only (a sphere's dome, a box's faces). A depth map
painted in the condition editor looks different: soft round dabs that fade into the far
background, and painted regions whose depth runs from far to near. These scenes give the depth
ControlNet such maps with a picture that follows them (the near region in the caption's colour,
shaded by depth, on the background colour). Near is bright; the far background is black. The same
seed always gives the same sample.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from pipelines.toyworld import captions, outlines, world

KINDS = ("blobs", "gradient")
NEAR = 0.25  # depth above which a pixel is the object (the evaluation's near region: > 64/255)


@dataclass
class DepthSample:
    seed: int
    kind: str
    caption: str
    image: Image.Image
    depth: Image.Image  # the condition map (grey in RGB)
    background: str
    colour: str


def _blobs(rng: random.Random, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    depth = np.zeros((size, size), np.float32)
    for _ in range(rng.randint(1, 3)):
        cx, cy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size
        sx, sy = rng.uniform(0.08, 0.2) * size, rng.uniform(0.08, 0.2) * size
        turn = rng.uniform(0, math.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * math.cos(turn) + dy * math.sin(turn)) / sx
        v = (-dx * math.sin(turn) + dy * math.cos(turn)) / sy
        depth = np.maximum(depth, rng.uniform(0.6, 1.0) * np.exp(-0.5 * (u * u + v * v)))
    return depth


def _gradient(rng: random.Random, size: int) -> np.ndarray:
    """A painted region (a blob or a polygon) whose depth runs linearly across it."""
    shape = outlines._blob(rng) if rng.random() < 0.5 else outlines._polygon(rng)
    big = size * outlines.SUPER
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).polygon([(x * big, y * big) for x, y in shape], fill=255)
    inside = np.asarray(mask.resize((size, size), Image.Resampling.BOX), np.float32) / 255.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    turn = rng.uniform(0, 2 * math.pi)
    ramp = xx * math.cos(turn) + yy * math.sin(turn)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    near, far = rng.uniform(0.8, 1.0), rng.uniform(0.35, 0.6)
    return inside * (far + (near - far) * ramp)


def make_depth_sample(seed: int, kind: str | None = None) -> DepthSample:
    rng = random.Random(seed)
    kind = kind or rng.choice(KINDS)
    size = world.SIZE
    depth = _blobs(rng, size) if kind == "blobs" else _gradient(rng, size)
    background = rng.choice(list(world.COLOURS))
    colour = rng.choice([c for c in world.COLOURS if c not in (background, "black")])
    near = depth > NEAR
    shade = 0.45 + 0.55 * np.clip(depth, 0, 1)  # nearer is lighter, as the solids are lit
    base = np.asarray(world.COLOURS[colour], np.float32)
    rgb = np.where(near[..., None], base * shade[..., None],
                   np.asarray(world.COLOURS[background], np.float32))  # fmt: skip
    image = Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))
    depth_map = Image.fromarray((np.clip(depth, 0, 1) * 255).round().astype(np.uint8))
    if rng.random() < 0.5:  # a solid's caption over a painted shape: the map decides the shape
        thing = captions.Thing(rng.choice(world.SOLIDS), colour)
    else:
        thing = captions.Thing("shape", colour)
    caption = captions.paraphrase(rng, [thing], background)
    return DepthSample(seed, kind, caption, image, depth_map.convert("RGB"), background, colour)


def fingerprint(count: int = 8) -> str:
    """A short hash of the first samples: data encoded from other paintings is not reused."""
    return world.digest_of((make_depth_sample(seed) for seed in range(count)), ("image", "depth"))
