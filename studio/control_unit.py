"""One ControlNet unit as observable state: what the unit widget shows and edits, and what the
request is built from.

The widget (:class:`studio.widgets.control_panel.ControlUnitWidget`) binds each field to one of its
controls and listens to ``changed``; nothing about a unit lives only in the widget.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from PySide6.QtCore import QObject, Signal

from pipelines.resources import resource_path
from pipelines.types import ControlKind, ControlUnit, ResizeMode

if TYPE_CHECKING:  # pipelines.models loads torch: the window opens before that
    from pipelines.models import ModelInfo

T = TypeVar("T")


class _Field(Generic[T]):
    """An attribute whose assignment emits ``changed(name)`` when the value really changes."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: ControlUnitModel | None, owner: type | None = None) -> Any:
        return self if obj is None else obj._values[self.name]

    def __set__(self, obj: ControlUnitModel, value: T) -> None:
        if obj._values[self.name] != value:
            obj._values[self.name] = value
            obj.changed.emit(self.name)


class ControlUnitModel(QObject):
    changed = Signal(str)  # the name of the field that changed

    enabled: _Field[bool] = _Field()
    kind: _Field[ControlKind] = _Field()
    model: _Field[str] = _Field()  # the ControlNet's path; "" for the family's default
    image: _Field[str | None] = _Field()  # the condition image's path
    preprocess: _Field[bool] = _Field()
    canny: _Field[tuple[int, int]] = _Field()  # (low, high) as set; sorted in the request
    strength: _Field[float] = _Field()
    start: _Field[float] = _Field()
    end: _Field[float] = _Field()
    resize_mode: _Field[ResizeMode] = _Field()
    module: _Field[str] = _Field()  # another tool's preprocessor name, written back as it came

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._values: dict[str, Any] = {}
        self._values.update(self._defaults())
        # The ControlNet of each kind a unit with no chosen model uses (pick_controlnet).
        self.automatic: dict[ControlKind, str] = {}

    @property
    def automatic_model(self) -> str:
        return self.automatic.get(self.kind, "")

    @staticmethod
    def _defaults() -> dict[str, Any]:
        return dict(enabled=False, kind=ControlKind.CANNY, model="", image=None, preprocess=False,
                    canny=(100, 200), strength=1.0, start=0.0, end=1.0,
                    resize_mode=ResizeMode.FIT, module="")  # fmt: skip

    @property
    def empty(self) -> bool:
        """Nothing chosen: the request leaves the unit out."""
        return not (self.image or self.model or self.enabled)

    @property
    def preprocesses_canny(self) -> bool:
        return self.preprocess and self.kind is ControlKind.CANNY

    def unit(self) -> ControlUnit | None:
        if self.empty:
            return None
        low, high = sorted(self.canny)
        return ControlUnit(
            kind=self.kind,
            model=self.model or self.automatic_model,
            image=self.image,
            preprocess=self.preprocess,
            strength=round(self.strength, 3),
            start=round(self.start, 3),
            end=round(self.end, 3),
            resize_mode=self.resize_mode,
            canny_low=low,
            canny_high=high,
            enabled=self.enabled,
            module=self.module,
        )

    def apply(self, unit: ControlUnit | None) -> None:
        """Take every field from ``unit`` (None: the defaults, switched off); the image too."""
        if unit is None:
            values = self._defaults()
        else:
            values = dict(enabled=unit.enabled, kind=ControlKind(unit.kind), model=unit.model,
                          image=unit.image or None, preprocess=unit.preprocess,
                          canny=(unit.canny_low, unit.canny_high), strength=unit.strength,
                          start=unit.start, end=unit.end,
                          resize_mode=ResizeMode(unit.resize_mode),
                          module=unit.module)  # fmt: skip
        for name, value in values.items():
            setattr(self, name, value)


def pick_controlnet(
    controlnets: Iterable[ModelInfo], kind: ControlKind, model: str = ""
) -> ModelInfo | None:
    """The ControlNet a unit of ``kind`` uses until the user chooses one: one that came with the
    base ``model`` (beside it; for the bundled default, ``""``, the bundled ones), first by name.
    None when no such one is there: a ControlNet from elsewhere may not fit the model's layers."""
    folder = Path(model).expanduser().parent if model else resource_path("models")
    fitting = [
        c for c in controlnets if c.control_kind is kind and Path(c.path).is_relative_to(folder)
    ]
    return min(fitting, key=lambda info: info.name.lower(), default=None)
