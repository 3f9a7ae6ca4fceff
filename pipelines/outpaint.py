"""Extending a picture past its borders before it is inpainted (outpainting).

The new border is pre-filled so that the run starts from plausible colours (the edge pixels
stretched outwards, or a blurred mirror of the picture), and masked white with a soft seam that
reaches a little into the picture, so that the repainted border blends into it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from pipelines.errors import ValidationError

SEAM = 16  # px of the picture, along each extended side, that the mask fades over
_MIRROR_BLUR = 8  # px: a mirrored border keeps the picture's colours but not its details


def extend_canvas(
    image: Image.Image, borders: tuple[int, int, int, int], fill: str = "edge"
) -> tuple[Image.Image, Image.Image]:
    """``image`` grown by ``borders`` (left, top, right, bottom px) and the mask to inpaint it:
    white over the new border, fading to black over :data:`SEAM` px inside the picture along the
    extended sides, black elsewhere. ``fill`` is "edge" (edge colours) or "mirror" (blurred
    mirror)."""
    left, top, right, bottom = borders
    if min(borders) < 0:
        raise ValidationError(f"Outpaint borders must not be negative, not {borders}.")
    if fill not in ("edge", "mirror"):
        raise ValidationError(f"The outpaint fill must be edge or mirror, not {fill!r}.")
    pixels = np.asarray(image.convert("RGB"))
    pad = ((top, bottom), (left, right), (0, 0))
    grown = np.pad(pixels, pad, mode="edge" if fill == "edge" else "symmetric")
    canvas = Image.fromarray(grown)
    mask = _border_mask(image.size, borders)
    if fill == "mirror":
        blurred = canvas.filter(ImageFilter.GaussianBlur(_MIRROR_BLUR))
        border = Image.fromarray(np.where(np.asarray(mask) == 255, 255, 0).astype(np.uint8))
        canvas = Image.composite(blurred, canvas, border)
    return canvas, mask


def _border_mask(size: tuple[int, int], borders: tuple[int, int, int, int]) -> Image.Image:
    width, height = size
    left, top, right, bottom = borders
    # Distance (px) of every picture pixel from each extended side, inf where a side is not grown.
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    inf = np.float32(np.inf)
    from_left = xs if left else np.full_like(xs, inf)
    from_right = (width - 1 - xs) if right else np.full_like(xs, inf)
    from_top = ys if top else np.full_like(ys, inf)
    from_bottom = (height - 1 - ys) if bottom else np.full_like(ys, inf)
    distance = np.minimum(
        np.minimum(from_left, from_right)[None, :], np.minimum(from_top, from_bottom)[:, None]
    )
    seam = np.clip(1.0 - (distance + 1) / (SEAM + 1), 0.0, 1.0)
    inner = np.round(seam * 255).astype(np.uint8)
    mask = np.full((height + top + bottom, width + left + right), 255, dtype=np.uint8)
    mask[top : top + height, left : left + width] = inner
    return Image.fromarray(mask)
