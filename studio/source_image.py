"""The picture a run reworks, and the high-resolution pass, as observable state.

:class:`SourceImageModel` holds what the Rework panel and the mask layer show and edit (input
picture, strength, mask, inpainting and outpainting options) and builds the request's
:class:`~pipelines.types.ImageInput` from it; :class:`HiresModel` does the same for
:class:`~pipelines.types.HiresPass`. Both are Qt-free apart from their ``changed`` signal, so the
widgets bound to them hold nothing of their own.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from pipelines.types import (
    GenerationRequest,
    HiresPass,
    ImageInput,
    InpaintArea,
    MaskedContent,
    ResizeMode,
    run_steps,
)
from studio.control_unit import _Field

Border = tuple[int, int, int, int]  # left, top, right, bottom


class _Model(QObject):
    """Fields with defaults; ``changed(name)`` when one really changes."""

    changed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._values: dict[str, Any] = dict(self._defaults())

    @staticmethod
    def _defaults() -> dict[str, Any]:
        return {}

    def _set_all(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)


class SourceImageModel(_Model):
    image: _Field[str | None] = _Field()  # the input's PNG in the app's data folder
    strength: _Field[float] = _Field()
    resize_mode: _Field[ResizeMode] = _Field()
    mask: _Field[str | None] = _Field()  # the mask's PNG; None: no mask
    mask_blur: _Field[int] = _Field()
    masked_content: _Field[MaskedContent] = _Field()
    inpaint_area: _Field[InpaintArea] = _Field()
    padding: _Field[int] = _Field()
    outpaint: _Field[Border] = _Field()

    @staticmethod
    def _defaults() -> dict[str, Any]:
        plain = ImageInput(image="")
        return dict(image=None, strength=plain.strength, resize_mode=plain.resize_mode, mask=None,
                    mask_blur=plain.mask_blur, masked_content=plain.masked_content,
                    inpaint_area=plain.inpaint_area, padding=plain.padding,
                    outpaint=plain.outpaint)  # fmt: skip

    def source(self) -> ImageInput | None:
        """The request's input; None (text-to-image) while no picture is chosen."""
        if not self.image:
            return None
        return ImageInput(
            image=self.image,
            strength=round(self.strength, 3),
            resize_mode=self.resize_mode,
            mask=self.mask,
            mask_blur=self.mask_blur,
            masked_content=self.masked_content,
            inpaint_area=self.inpaint_area,
            padding=self.padding,
            outpaint=tuple(self.outpaint),
        )

    def apply(self, source: ImageInput | None) -> None:
        """Take every field from ``source``; None: the defaults, no picture."""
        if source is None:
            self._set_all(self._defaults())
            return
        self._set_all(dict(image=source.image, strength=source.strength,
                           resize_mode=ResizeMode(source.resize_mode), mask=source.mask,
                           mask_blur=source.mask_blur,
                           masked_content=MaskedContent(source.masked_content),
                           inpaint_area=InpaintArea(source.inpaint_area), padding=source.padding,
                           outpaint=tuple(source.outpaint)))  # fmt: skip

    def clear(self) -> None:
        """No picture, no mask; the options stay as the user set them."""
        self.mask = None
        self.image = None
        self.outpaint = (0, 0, 0, 0)

    def spent_steps(self, steps: int) -> int:
        return run_steps(self.strength, steps) if self.image else steps


class HiresModel(_Model):
    enabled: _Field[bool] = _Field()
    scale: _Field[float] = _Field()
    steps: _Field[int] = _Field()  # 0: the run's steps
    strength: _Field[float] = _Field()
    upscaler: _Field[str] = _Field()  # "lanczos", "latent" or an upscaler file's path

    @staticmethod
    def _defaults() -> dict[str, Any]:
        plain = HiresPass()
        return dict(enabled=False, scale=plain.scale, steps=plain.steps, strength=plain.strength,
                    upscaler=plain.upscaler)  # fmt: skip

    def hires(self) -> HiresPass | None:
        if not self.enabled:
            return None
        return HiresPass(scale=round(self.scale, 3), steps=self.steps,
                         strength=round(self.strength, 3), upscaler=self.upscaler)  # fmt: skip

    def apply(self, hires: HiresPass | None) -> None:
        """Take every field from ``hires``; None: switched off, the other fields kept."""
        if hires is None:
            self.enabled = False
            return
        self._set_all(dict(enabled=True, scale=hires.scale, steps=hires.steps,
                           strength=hires.strength, upscaler=hires.upscaler))  # fmt: skip

    def spent_steps(self, steps: int) -> int:
        """The hires pass's own steps: its strength of its steps (the run's when 0)."""
        return run_steps(self.strength, self.steps or steps) if self.enabled else 0


def border_for_ratio(width: int, height: int, ratio: float) -> Border:
    """The outpaint border that brings a ``width`` x ``height`` picture to ``ratio`` (width over
    height) by adding to one pair of sides only, split evenly, each side a multiple of 8."""
    if width / height < ratio:
        extra = round(height * ratio) - width
        left = _multiple_of_8(extra / 2)
        return (left, 0, _multiple_of_8(extra - left), 0)
    extra = round(width / ratio) - height
    top = _multiple_of_8(extra / 2)
    return (0, top, 0, _multiple_of_8(extra - top))


def _multiple_of_8(value: float) -> int:
    return max(0, round(value / 8) * 8)


def planned_steps(request: GenerationRequest) -> int:
    """The steps a run of ``request`` spends, its hires pass included, for the progress bar before
    the first preview says it."""
    steps = request.steps
    if request.source is not None:
        steps = run_steps(request.source.strength, steps)
    if request.hires is not None:
        steps += run_steps(request.hires.strength, request.hires.steps or request.steps)
    return max(1, steps)
