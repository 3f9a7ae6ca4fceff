"""The reworking settings in AUTOMATIC1111's ``parameters`` text, written and read back.

Keys as A1111 writes them: ``Denoising strength``, ``Mask blur``, ``Inpaint area`` ("Whole
picture" / "Only masked") with ``Masked area padding``, ``Masked content`` ("original", "fill",
"latent noise"), ``Hires upscale``, ``Hires steps``, ``Hires upscaler`` and ``Hires denoising``.
A1111's own text-to-image runs carry the hires pass's strength as ``Denoising strength`` and no
``Hires denoising``; that reads as the hires strength. The text never carries the input's or the
mask's file, so a request read from it names none: the caller supplies them, as it does a
ControlNet unit's image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.errors import ValidationError
from pipelines.types import HiresPass, ImageInput, InpaintArea, MaskedContent

_AREA_TO_A1111 = {InpaintArea.WHOLE: "Whole picture", InpaintArea.MASKED: "Only masked"}
_AREA_FROM_A1111 = {"whole picture": InpaintArea.WHOLE, "only masked": InpaintArea.MASKED}
_CONTENT_FROM_A1111 = {
    "original": MaskedContent.ORIGINAL,
    "fill": MaskedContent.FILL,
    "latent noise": MaskedContent.LATENT_NOISE,
    "latent nothing": MaskedContent.LATENT_NOISE,  # A1111's empty latents; noise is the nearest
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def upscaler_label(upscaler: str) -> str:
    """``Hires upscaler`` as A1111 shows it: "Lanczos", "Latent", or the model file's name."""
    if upscaler in ("lanczos", "latent"):
        return upscaler.capitalize()
    return re.sub(r"[,:]", "_", Path(upscaler).stem)


def rework_pairs(source: ImageInput | None, hires: HiresPass | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if source is not None:
        pairs.append(("Denoising strength", _number(source.strength)))
        if source.inpainting:
            pairs += [
                ("Mask blur", str(source.mask_blur)),
                ("Inpaint area", _AREA_TO_A1111[source.inpaint_area]),
                ("Masked area padding", str(source.padding)),
                ("Masked content", source.masked_content.value),
            ]
    if hires is not None:
        pairs.append(("Hires upscale", _number(hires.scale)))
        if hires.steps:
            pairs.append(("Hires steps", str(hires.steps)))
        pairs += [
            ("Hires upscaler", upscaler_label(hires.upscaler)),
            ("Hires denoising", _number(hires.strength)),
        ]
    return pairs


def rework_values(
    fields: Mapping[str, str],
    size: tuple[int, int] | None,
    to_int: Callable[[str, str], int],
    to_float: Callable[[str, str], float],
) -> dict[str, Any]:
    """``source`` and ``hires`` request values from the text's fields (none when absent);
    ``size`` is the text's ``Size``, for ``Hires resize``."""
    values: dict[str, Any] = {}
    hires = _hires(fields, size, to_int, to_float)
    strength_key = "Denoising strength"
    # A1111 writes the hires pass's strength under this key when the run had no input picture.
    image_strength = strength_key in fields and not (hires and "Hires denoising" not in fields)
    inpainting = "Mask blur" in fields or "Inpaint area" in fields
    if image_strength or inpainting:
        source: dict[str, Any] = {"image": ""}
        if strength_key in fields:
            source["strength"] = to_float(strength_key, fields[strength_key])
        if inpainting:
            source["mask"] = ""
            if "Mask blur" in fields:
                source["mask_blur"] = to_int("Mask blur", fields["Mask blur"])
            area = fields.get("Inpaint area", "").strip().lower()
            if area in _AREA_FROM_A1111:
                source["inpaint_area"] = _AREA_FROM_A1111[area]
            if "Masked area padding" in fields:
                padding = fields["Masked area padding"]
                source["padding"] = to_int("Masked area padding", padding)
            content = fields.get("Masked content", "").strip().lower()
            if content in _CONTENT_FROM_A1111:
                source["masked_content"] = _CONTENT_FROM_A1111[content]
        values["source"] = ImageInput(**source)
    if hires is not None:
        values["hires"] = hires
    return values


def _hires(
    fields: Mapping[str, str],
    size: tuple[int, int] | None,
    to_int: Callable[[str, str], int],
    to_float: Callable[[str, str], float],
) -> HiresPass | None:
    if "Hires upscale" in fields:
        scale = to_float("Hires upscale", fields["Hires upscale"])
    elif "Hires resize" in fields and size is not None:
        resize = _SIZE_RE.match(fields["Hires resize"])
        if resize is None:
            raise ValidationError(
                f"The setting 'Hires resize: {fields['Hires resize']}' is not WxH."
            )
        scale = round(int(resize[1]) / size[0], 3)
    else:
        return None
    hires: dict[str, Any] = {"scale": scale}
    if "Hires steps" in fields:
        hires["steps"] = to_int("Hires steps", fields["Hires steps"])
    for key in ("Hires denoising", "Denoising strength"):
        if key in fields:
            hires["strength"] = to_float(key, fields[key])
            break
    upscaler = fields.get("Hires upscaler", "").strip()
    if upscaler.lower().startswith("latent"):  # "Latent", "Latent (nearest-exact)", ...
        hires["upscaler"] = "latent"
    elif upscaler and upscaler.lower() not in ("lanczos", "none"):
        hires["upscaler"] = upscaler  # a model's name: the caller finds its file
    return HiresPass(**hires)
