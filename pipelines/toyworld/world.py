"""The toy world: seeded images with captions and the condition maps the ControlNets learn from.

Three kinds of scene, all on a flat background colour:

- ``shapes``: one or two flat shapes with a colour, a size and a position on a 3x3 grid;
- ``person``: a stick figure in a named pose (its 18 OpenPose keypoints are kept);
- ``solid``: a shaded sphere or box with a depth map.

Every scene has all three condition maps: canny edges (the core's :func:`canny_map`), the OpenPose
map (the core's :func:`render_pose`; black when there is no person) and a depth map (near =
bright, the background is far = black). The same seed always gives the same sample.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from pipelines.conditions import NUM_KEYPOINTS, PosePerson, canny_map, render_pose

SIZE = 64  # native size of the bundled model
SUPERSAMPLE = 4  # shapes are drawn this much larger, then reduced: smooth, exact edges
CANNY_LOW, CANNY_HIGH = 100, 200  # the engine's default thresholds

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 60, 220),
    "yellow": (245, 220, 30),
    "orange": (245, 135, 20),
    "purple": (135, 45, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "ring")
SOLIDS = ("sphere", "box")
# How far (RGB distance) a pixel is from the background colour to count as part of a shape: what
# the evaluation scores and what the UNet's focused loss weighs.
FOREGROUND_DISTANCE = 60.0
STAR_INNER = 0.45  # inner radius of a star, as a share of its outer radius
# Radius as a fraction of the image side. At 64 px a small star must still span three latent
# cells, or the 8x-downscaling VAE rounds it into a blob (measured: at 0.13 no small star and
# half the small triangles survived encoding and decoding).
SIZES = {"small": 0.2, "large": 0.3}
# Named regions of a 3x3 grid: (column, row).
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
POSES = ("standing", "raising both arms", "raising the left arm", "raising the right arm",
         "with arms out", "walking")  # fmt: skip
KINDS = {"shapes": 0.6, "person": 0.2, "solid": 0.2}


@dataclass
class ShapeSpec:
    shape: str
    colour: str
    size: str
    position: str
    centre: tuple[float, float]  # pixels
    radius: float  # pixels
    angle: float = 0.0  # degrees: any turn (captions do not say; a canny map does)


@dataclass
class Sample:
    seed: int
    kind: str
    caption: str
    image: Image.Image
    canny: Image.Image
    pose: Image.Image
    depth: Image.Image
    background: str
    shapes: list[ShapeSpec] = field(default_factory=list)
    people: list[PosePerson] = field(default_factory=list)
    subject_colour: str | None = None  # person / solid colour
    subject: str | None = None  # pose or solid name
    mask: np.ndarray | None = None  # bool foreground mask (near region)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def position_phrase(position: str) -> str:
    return "in the center" if position == "center" else f"at the {position}"


def region_box(position: str, size: int = SIZE) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a named grid cell."""
    col, row = POSITIONS[position]
    cell = size / 3
    return col * cell, row * cell, (col + 1) * cell, (row + 1) * cell


def _shape_points(spec: ShapeSpec, scale: float) -> list[tuple[float, float]]:
    cx, cy = spec.centre[0] * scale, spec.centre[1] * scale
    r = spec.radius * scale
    a0 = math.radians(spec.angle)
    if spec.shape == "square":
        return [(cx + r * 0.85 * math.sqrt(2) * math.cos(a0 + math.pi / 4 + k * math.pi / 2),
                 cy + r * 0.85 * math.sqrt(2) * math.sin(a0 + math.pi / 4 + k * math.pi / 2))
                for k in range(4)]  # fmt: skip
    if spec.shape == "triangle":
        return [(cx + r * math.cos(a0 - math.pi / 2 + k * 2 * math.pi / 3),
                 cy + r * 1.1 * math.sin(a0 - math.pi / 2 + k * 2 * math.pi / 3) + r * 0.15)
                for k in range(3)]  # fmt: skip
    if spec.shape == "star":
        points = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * STAR_INNER
            a = a0 - math.pi / 2 + k * math.pi / 5
            points.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return points
    raise ValueError(spec.shape)


# Shapes and people are drawn twice: in colour on the picture and as a grey level on its mask.
Fill = tuple[int, int, int] | int


def _draw_shape(
    draw: ImageDraw.ImageDraw, spec: ShapeSpec, fill: Fill, scale: float, hole: Fill | None = None
) -> None:
    cx, cy = spec.centre[0] * scale, spec.centre[1] * scale
    r = spec.radius * scale
    if spec.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif spec.shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        inner = r * 0.55
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=hole)
    else:
        draw.polygon(_shape_points(spec, scale), fill=fill)


def _reduce(big: Image.Image, size: int) -> Image.Image:
    return big.resize((size, size), Image.Resampling.BOX)


# ---- person -----------------------------------------------------------------------------------

# The 14 body joints in 0..1 of the figure's box (nose, neck, R shoulder/elbow/wrist, L shoulder/
# elbow/wrist, R hip/knee/ankle, L hip/knee/ankle); "right" is the person's right (viewer's left).
_BODY = {
    "standing": ((.50, .12), (.50, .24), (.40, .25), (.37, .40), (.36, .54), (.60, .25), (.63, .40),
                 (.64, .54), (.44, .54), (.44, .72), (.44, .92), (.56, .54), (.56, .72), (.56, .92)),
    "raising both arms": ((.50, .14), (.50, .26), (.40, .27), (.34, .15), (.31, .03), (.60, .27),
                          (.66, .15), (.69, .03), (.44, .56), (.44, .74), (.44, .94), (.56, .56),
                          (.56, .74), (.56, .94)),
    "raising the left arm": ((.50, .14), (.50, .26), (.40, .27), (.37, .42), (.36, .56),
                             (.60, .27), (.66, .15), (.69, .03), (.44, .56), (.44, .74),
                             (.44, .94), (.56, .56), (.56, .74), (.56, .94)),
    "raising the right arm": ((.50, .14), (.50, .26), (.40, .27), (.34, .15), (.31, .03),
                              (.60, .27), (.63, .42), (.64, .56), (.44, .56), (.44, .74),
                              (.44, .94), (.56, .56), (.56, .74), (.56, .94)),
    "with arms out": ((.50, .12), (.50, .24), (.40, .25), (.26, .25), (.12, .25), (.60, .25),
                      (.74, .25), (.88, .25), (.44, .54), (.44, .72), (.44, .92), (.56, .54),
                      (.56, .72), (.56, .92)),
    "walking": ((.50, .12), (.50, .24), (.41, .25), (.35, .38), (.31, .49), (.59, .25), (.65, .37),
                (.70, .46), (.46, .54), (.40, .72), (.34, .91), (.54, .54), (.59, .72), (.66, .90)),
}  # fmt: skip
_BONES = ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
          (11, 12), (12, 13), (0, 1), (8, 11))  # fmt: skip


def _person(pose: str, rng: random.Random, size: int) -> PosePerson:
    height = size * rng.uniform(0.6, 0.9)
    top = rng.uniform(0.02 * size, max(0.02 * size, size - height * 0.98))
    left = rng.uniform(-0.2, 0.2) * size + (size - height) / 2
    points = [(left + x * height, top + y * height) for x, y in _BODY[pose]]
    nose_x, nose_y = points[0]
    d = height * 0.03
    face = [(nose_x - d, nose_y - d), (nose_x + d, nose_y - d), (nose_x - 2 * d, nose_y),
            (nose_x + 2 * d, nose_y)]  # fmt: skip
    return PosePerson([*points, *face])


def _draw_person(
    draw: ImageDraw.ImageDraw, person: PosePerson, fill: Fill, scale: float, size: int
) -> None:
    k = [(p[0] * scale, p[1] * scale) for p in person.keypoints[:14]]
    width = max(1, round(size * 0.06 * scale))
    for a, b in _BONES:
        draw.line((k[a], k[b]), fill=fill, width=width)
    for point in k[1:14]:
        r = width / 2
        draw.ellipse((point[0] - r, point[1] - r, point[0] + r, point[1] + r), fill=fill)
    head = math.dist(k[0], k[1]) * 0.75
    draw.ellipse((k[0][0] - head, k[0][1] - head, k[0][0] + head, k[0][1] + head), fill=fill)


# ---- solids -----------------------------------------------------------------------------------


def _solid(name: str, colour: tuple[int, int, int], rng: random.Random, size: int):
    """(rgb float image, depth 0..1 with background 0, mask) of a shaded sphere or box."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    base = np.asarray(colour, dtype=np.float32) / 255.0
    cx = rng.uniform(0.3, 0.7) * size
    cy = rng.uniform(0.35, 0.65) * size
    r = rng.uniform(0.18, 0.3) * size
    light = np.array([-0.5, -0.6, 0.62], dtype=np.float32)
    light /= np.linalg.norm(light)
    rgb = np.zeros((size, size, 3), np.float32)
    depth = np.zeros((size, size), np.float32)
    if name == "sphere":
        dx, dy = (xx - cx) / r, (yy - cy) / r
        d2 = dx * dx + dy * dy
        mask = d2 <= 1.0
        dz = np.sqrt(np.clip(1.0 - d2, 0, 1))
        shade = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1) * 0.75 + 0.25
        rgb[mask] = base[None] * shade[mask][:, None]
        depth[mask] = 0.55 + 0.45 * dz[mask]
    else:  # a box seen from above-front: a front face and a lighter top face
        half = r * 0.9
        top_h = half * 0.55
        x0, x1 = cx - half, cx + half
        y_top, y_front, y1 = cy - half - top_h / 2, cy - half + top_h / 2, cy + half + top_h / 2
        shear = top_h * 0.6
        front = (xx >= x0) & (xx <= x1) & (yy >= y_front) & (yy <= y1)
        t = np.clip((yy - y_top) / max(top_h, 1e-6), 0, 1)  # 0 at the back edge, 1 at the front
        left_edge = x0 + shear * (1 - t)
        right_edge = x1 + shear * (1 - t)
        top = (yy >= y_top) & (yy < y_front) & (xx >= left_edge) & (xx <= right_edge)
        side_t = np.clip((xx - x1) / max(shear, 1e-6), 0, 1)
        side = ((xx > x1) & (xx <= x1 + shear) & (yy >= y_front - top_h * side_t)
                & (yy <= y1 - top_h * side_t) & ~top)  # fmt: skip
        rgb[front] = base * 0.8
        rgb[top] = np.clip(base * 1.0 + 0.15, 0, 1)
        rgb[side] = base * 0.5
        depth[front] = 0.95
        depth[top] = 0.95 - 0.35 * (1 - t[top])
        depth[side] = 0.95 - 0.35 * side_t[side]
        mask = front | top | side
    return rgb, depth, mask


# ---- the generator ----------------------------------------------------------------------------


def _kind(rng: random.Random) -> str:
    roll, total = rng.random(), 0.0
    for kind, share in KINDS.items():
        total += share
        if roll < total:
            return kind
    return "shapes"


def _place_shape(rng: random.Random, size: int, taken: list[str]) -> tuple[str, str, tuple, float]:
    position = rng.choice([p for p in POSITIONS if p not in taken])
    size_name = rng.choice(list(SIZES))
    radius = SIZES[size_name] * size * rng.uniform(0.88, 1.12)
    x0, y0, x1, y1 = region_box(position, size)
    # The centroid stays inside its cell; the shape may overlap the neighbours a little.
    jitter = (x1 - x0) * 0.3
    cx = (x0 + x1) / 2 + rng.uniform(-jitter, jitter)
    cy = (y0 + y1) / 2 + rng.uniform(-jitter, jitter)
    margin = radius * 0.9
    cx = min(max(cx, margin), size - margin)
    cy = min(max(cy, margin), size - margin)
    # A large shape in an edge cell is pushed inwards by the margin; its cell wins over the frame
    # (a little of the shape is cut off) so the centroid stays where the caption says.
    inset = (x1 - x0) * 0.22
    cx = min(max(cx, x0 + inset), x1 - inset)
    cy = min(max(cy, y0 + inset), y1 - inset)
    return position, size_name, (cx, cy), radius


def make_sample(seed: int, size: int = SIZE, kind: str | None = None) -> Sample:
    rng = random.Random(seed)
    kind = kind or _kind(rng)
    background = rng.choice(list(COLOURS))
    bg_rgb = COLOURS[background]
    big = size * SUPERSAMPLE
    people: list[PosePerson] = []
    shapes: list[ShapeSpec] = []
    subject_colour = subject = None
    if kind == "shapes":
        image = Image.new("RGB", (big, big), bg_rgb)
        draw = ImageDraw.Draw(image)
        mask_img = Image.new("L", (big, big), 0)
        mask_draw = ImageDraw.Draw(mask_img)
        count = 1 if rng.random() < 0.7 else 2
        taken: list[str] = []
        for _ in range(count):
            shape = rng.choice(SHAPES)
            colour = rng.choice([c for c in COLOURS if c != background])
            position, size_name, centre, radius = _place_shape(rng, size, taken)
            taken.append(position)
            spec = ShapeSpec(shape, colour, size_name, position, centre, radius,
                             angle=rng.uniform(-180, 180))  # fmt: skip
            _draw_shape(draw, spec, COLOURS[colour], SUPERSAMPLE, hole=bg_rgb)
            _draw_shape(mask_draw, spec, 255, SUPERSAMPLE, hole=0)
            shapes.append(spec)
        image = _reduce(image, size)
        mask = np.asarray(_reduce(mask_img, size)) >= 128
        depth = np.where(mask, 0.8, 0.0).astype(np.float32)
        parts = [
            f"{article(s.size)} {s.size} {s.colour} {s.shape} {position_phrase(s.position)}"
            for s in shapes
        ]
        caption = " and ".join(parts) + f" on {article(background)} {background} background"
    elif kind == "person":
        subject = rng.choice(POSES)
        subject_colour = rng.choice([c for c in COLOURS if c != background])
        person = _person(subject, rng, size)
        people = [person]
        image = Image.new("RGB", (big, big), bg_rgb)
        _draw_person(ImageDraw.Draw(image), person, COLOURS[subject_colour], SUPERSAMPLE, size)
        mask_img = Image.new("L", (big, big), 0)
        _draw_person(ImageDraw.Draw(mask_img), person, 255, SUPERSAMPLE, size)
        image = _reduce(image, size)
        mask = np.asarray(_reduce(mask_img, size)) >= 128
        depth = np.where(mask, 0.8, 0.0).astype(np.float32)
        caption = (
            f"{article(subject_colour)} {subject_colour} person {subject} "
            f"on {article(background)} {background} background"
        )
    elif kind == "solid":
        subject = rng.choice(SOLIDS)
        subject_colour = rng.choice([c for c in COLOURS if c not in (background, "black")])
        rgb, depth, mask = _solid(subject, COLOURS[subject_colour], rng, big)
        bg = np.asarray(bg_rgb, np.float32) / 255.0
        rgb = np.where(mask[..., None], rgb, bg[None, None])
        image = _reduce(Image.fromarray((rgb * 255).round().astype(np.uint8)), size)
        depth = (
            np.asarray(
                _reduce(Image.fromarray((depth * 255).round().astype(np.uint8)), size), np.float32
            )
            / 255.0
        )
        mask = np.asarray(_reduce(Image.fromarray(mask.astype(np.uint8) * 255), size)) >= 128
        caption = (
            f"{article(subject_colour)} {subject_colour} {subject} "
            f"on {article(background)} {background} background"
        )
    else:
        raise ValueError(f"unknown kind {kind!r}")
    depth_map = Image.fromarray((np.clip(depth, 0, 1) * 255).round().astype(np.uint8)).convert(
        "RGB"
    )
    return Sample(
        seed=seed,
        kind=kind,
        caption=caption,
        image=image,
        canny=canny_map(image, CANNY_LOW, CANNY_HIGH),
        pose=render_pose(people, size, size),
        depth=depth_map,
        background=background,
        shapes=shapes,
        people=people,
        subject_colour=subject_colour,
        subject=subject,
        mask=mask,
    )


def skeleton_mask(people: list[PosePerson], size: int = SIZE) -> np.ndarray:
    """One-pixel lines along the bones of ``people`` (for the pose metric)."""
    import cv2

    canvas = np.zeros((size, size), np.uint8)
    for person in people:
        k = person.keypoints
        for a, b in _BONES:
            if k[a] is None or k[b] is None:
                continue
            p, q = (round(k[a][0]), round(k[a][1])), (round(k[b][0]), round(k[b][1]))
            cv2.line(canvas, p, q, 255, 1)
    return canvas > 0


assert len(_BODY["standing"]) + 4 == NUM_KEYPOINTS


def fingerprint(count: int = 8) -> str:
    """A short hash of the first samples' pixels and captions: it changes whenever the world is
    drawn differently, so data encoded from an older world is not reused."""
    return digest_of((make_sample(seed) for seed in range(count)), ("image",))


def digest_of(samples: Iterable[object], pictures: Sequence[str]) -> str:
    """A short hash of samples' captions and the named pictures (PIL images)."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.caption.encode())
        for name in pictures:
            digest.update(getattr(sample, name).tobytes())
    return digest.hexdigest()[:10]
