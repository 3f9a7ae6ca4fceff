"""The command line's options for reworking a picture and for the high-resolution pass.

``--init-image`` turns a run into image-to-image; ``--mask`` into inpainting; ``--outpaint`` grows
the canvas; ``--hires-scale`` adds the high-resolution pass. Options that refine one of these are
refused without it, so that a mistyped command line never silently draws from noise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.errors import ValidationError
from pipelines.types import (
    HIRES_RESAMPLERS,
    GenerationRequest,
    HiresPass,
    ImageInput,
    InpaintArea,
    MaskedContent,
    ResizeMode,
)

_SOURCE_OPTIONS = ("strength", "resize_mode", "mask", "mask_blur", "inpaint_area",
                   "masked_content", "padding", "outpaint")  # fmt: skip
_MASK_OPTIONS = ("mask_blur", "inpaint_area", "masked_content", "padding")
_HIRES_OPTIONS = ("hires_steps", "hires_strength", "upscaler")
_ALL_OPTIONS = ("init_image", *_SOURCE_OPTIONS, "hires_scale", *_HIRES_OPTIONS, "model_dir")


def add_rework_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rework a picture (image to image, inpainting, outpainting)")
    group.add_argument("--init-image", metavar="IMG", help="the picture to rework")
    group.add_argument("--strength", type=float, metavar="0..1",
                       help="denoising strength: how much changes (default 0.75); the run spends "
                            "round(strength x steps) steps")  # fmt: skip
    group.add_argument("--resize-mode", choices=[m.value for m in ResizeMode],
                       help="fit the picture to --size: fit (letterbox), crop or stretch")  # fmt: skip
    group.add_argument("--mask", metavar="MASK.png", help="white = repaint, black = keep")
    group.add_argument("--mask-blur", type=int, metavar="PX", help="soften the mask (default 4)")
    group.add_argument("--inpaint-area", choices=[a.value for a in InpaintArea],
                       help="whole picture, or only the masked region at full size (default whole)")  # fmt: skip
    group.add_argument("--masked-content", choices=[c.value for c in MaskedContent],
                       help="what the masked area starts from (default original)")  # fmt: skip
    group.add_argument("--padding", type=int, metavar="PX",
                       help="context around the mask for --inpaint-area masked (default 32)")  # fmt: skip
    group.add_argument("--outpaint", metavar="L,T,R,B",
                       help="pixels to add on the left, top, right and bottom (multiples of 8)")  # fmt: skip
    hires = parser.add_argument_group("high-resolution pass")
    hires.add_argument("--hires-scale", type=float, metavar="1..4",
                       help="draw at --size, enlarge by this and rework at the larger size")  # fmt: skip
    hires.add_argument("--hires-steps", type=int, metavar="N",
                       help="steps of the pass (default: --steps)")  # fmt: skip
    hires.add_argument("--hires-strength", type=float, metavar="0..1",
                       help="denoising strength of the pass (default 0.5)")  # fmt: skip
    hires.add_argument("--upscaler", metavar="lanczos|latent|PATH",
                       help="how to enlarge: lanczos (default), latent, or an upscaler model file "
                            "(a path, or a name found in the --model-dir folders)")  # fmt: skip


def parse_outpaint(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ValidationError(
            f"--outpaint {text!r}: use LEFT,TOP,RIGHT,BOTTOM pixels, e.g. 64,0,64,0."
        )
    return values  # type: ignore[return-value]


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


_SOURCE_CONVERSIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "strength": ("strength", float),
    "resize_mode": ("resize_mode", ResizeMode),
    "mask": ("mask", str),
    "mask_blur": ("mask_blur", int),
    "inpaint_area": ("inpaint_area", InpaintArea),
    "masked_content": ("masked_content", MaskedContent),
    "padding": ("padding", int),
    "outpaint": ("outpaint", parse_outpaint),
}
_HIRES_CONVERSIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "hires_steps": ("steps", int),
    "hires_strength": ("strength", float),
}


def _chosen(
    args: argparse.Namespace, conversions: dict[str, tuple[str, Callable[[Any], Any]]]
) -> dict[str, Any]:
    """The given options as request fields: {field: converted value}."""
    return {
        field: convert(getattr(args, option))
        for option, (field, convert) in conversions.items()
        if getattr(args, option) is not None
    }


def rework_fields(args: argparse.Namespace) -> dict[str, Any]:
    """``source`` and ``hires`` for the request the arguments describe."""
    args = argparse.Namespace(**{**dict.fromkeys(_ALL_OPTIONS), **vars(args)})
    fields: dict[str, Any] = {}
    if args.init_image is None:
        stray = _given(args, _SOURCE_OPTIONS)
        if stray:
            raise ValidationError(f"{', '.join(stray)} need --init-image (the picture to rework).")
    else:
        if args.mask is None and args.outpaint is None and _given(args, _MASK_OPTIONS):
            stray = ", ".join(_given(args, _MASK_OPTIONS))
            raise ValidationError(f"{stray} need --mask or --outpaint.")
        # Paths stay as given: the engine makes them absolute when it prepares the run.
        options = {"image": args.init_image, **_chosen(args, _SOURCE_CONVERSIONS)}
        fields["source"] = ImageInput(**options)
    if args.hires_scale is None:
        stray = _given(args, _HIRES_OPTIONS)
        if stray:
            raise ValidationError(f"{', '.join(stray)} need --hires-scale.")
    else:
        hires = {"scale": args.hires_scale, **_chosen(args, _HIRES_CONVERSIONS)}
        if args.upscaler is not None:
            hires["upscaler"] = _upscaler(args.upscaler, args.model_dir or [])
        fields["hires"] = HiresPass(**hires)
    return fields


def _upscaler(text: str, folders: list[Path]) -> str:
    if text.lower() in HIRES_RESAMPLERS:
        return text.lower()
    from pipelines.upscalers import resolve_upscaler  # torch: only when a file is named

    return str(resolve_upscaler(text, folders).absolute())  # a missing one stops the run here


def keep_source_copies(request: GenerationRequest, folder: Path) -> GenerationRequest:
    """The request with its input and mask replaced by copies kept in ``folder`` (beside the
    condition maps), so that the PNG and history name files that stay; reading them here also
    checks them before any model loads."""
    from pipelines.conditions import load_image
    from pipelines.export import save_condition_map

    source = request.source
    if source is None:
        return request
    image = str(save_condition_map(load_image(source.image), folder, Path(source.image).stem))
    mask = source.mask
    if mask:
        mask = str(save_condition_map(load_image(mask).convert("L"), folder, Path(mask).stem))
    return replace(request, source=replace(source, image=image, mask=mask))
