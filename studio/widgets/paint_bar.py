"""The paint tools' actions and brush controls, for any :class:`MapDocument` shown in a
:class:`MapView`: the condition editor paints maps with them, the mask layer paints masks.

One :class:`PaintBar` makes the tool actions (one checked at a time), brush size and hardness, undo
and redo from the document's stack, clear, invert and the view's zoom actions, and registers every
shortcut on its host widget so they work wherever the focus is inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QSpinBox, QToolBar, QWidget

from studio.widgets.map_view import MapView
from studio.widgets.paint_tools import MapDocument, Tool, ToolOptions, clear, invert


@dataclass(frozen=True)
class ToolSpec:
    name: str  # the key in the tools' dict
    text: str
    tip: str
    keys: tuple[str, ...] = ()


class PaintBar:
    def __init__(
        self,
        host: QWidget,
        view: MapView,
        options: ToolOptions,
        tools: dict[str, Tool],
        specs: Sequence[ToolSpec],
        *,
        clear_tip: str,
        invert_tip: str,
        on_clear: Callable[[], object] | None = None,
        context: Qt.ShortcutContext = Qt.ShortcutContext.WindowShortcut,
        zoom_keys: bool = True,
    ) -> None:
        """``context``: a dialog's tools answer their keys anywhere in it; a view inside the main
        window narrows them to itself, so that they never clash with the window's own keys."""
        self.host, self.view, self.options, self.tools = host, view, options, tools
        self.context = context
        document: MapDocument = view.document
        group = QActionGroup(host)
        self.tool_actions: dict[str, QAction] = {}
        for spec in specs:
            action = self.action(spec.text, spec.tip,
                                 lambda _=False, n=spec.name: self.set_tool(n), spec.keys,
                                 checkable=True)  # fmt: skip
            group.addAction(action)
            self.tool_actions[spec.name] = action
        self.action("Bigger brush", "", lambda: self.resize_brush(1.25), ["]"])
        self.action("Smaller brush", "", lambda: self.resize_brush(0.8), ["["])

        undo = document.undo_stack.createUndoAction(host, "Undo")
        undo.setShortcuts([QKeySequence(QKeySequence.StandardKey.Undo)])
        undo.setToolTip("Undo the last edit (Ctrl+Z).")
        redo = document.undo_stack.createRedoAction(host, "Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        redo.setToolTip("Redo (Ctrl+Shift+Z).")
        for action in (undo, redo):
            action.setShortcutContext(context)
            host.addAction(action)
        self.undo_action, self.redo_action = undo, redo
        self.clear_action = self.action("Clear", clear_tip,
                                        on_clear or (lambda: clear(self.view.document)))  # fmt: skip
        self.invert_action = self.action("Invert", invert_tip,
                                         lambda: invert(self.view.document))  # fmt: skip
        # Inside the main window its own Ctrl+0 / Ctrl+1 act on the view shown; two actions on one
        # key would make Qt run neither.
        fit_keys, actual_keys = (["Ctrl+0"], ["Ctrl+1"]) if zoom_keys else ([], [])
        self.fit_action = self.action("Fit", "Fit the picture in the view (Ctrl+0).", view.fit,
                                      fit_keys)  # fmt: skip
        self.actual_action = self.action("100 %", "One pixel per screen pixel (Ctrl+1).",
                                         view.actual_size, actual_keys)  # fmt: skip

        self.size_box = spin_box(1, 256, options.size, "Brush size in pixels ([ and ]).")
        self.hardness_box = spin_box(0, 100, int(options.hardness * 100), "Brush hardness: 100 % "
                                  "paints crisp single-value pixels, lower fades the edge.", " %")  # fmt: skip
        self.size_box.valueChanged.connect(lambda v: setattr(options, "size", v))
        self.hardness_box.valueChanged.connect(lambda v: setattr(options, "hardness", v / 100))

    def action(
        self,
        text: str,
        tip: str,
        slot: Callable[..., object],
        keys: Sequence[str] = (),
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, self.host)
        action.setToolTip(tip)
        action.setCheckable(checkable)
        action.setShortcutContext(self.context)
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.triggered.connect(slot)
        self.host.addAction(action)  # shortcuts work wherever the focus is in the host
        return action

    def fill_toolbar(
        self, bar: QToolBar, extra: Sequence[tuple[str, QWidget]] = ()
    ) -> list[QAction]:
        """Tools, brush controls (then ``extra`` labelled widgets), edits and zoom; returns the
        brush controls' toolbar actions, to hide them when no brush is in use."""
        for action in self.tool_actions.values():
            bar.addAction(action)
        bar.addSeparator()
        widgets = []
        for label, box in (("Size", self.size_box), ("Hardness", self.hardness_box), *extra):
            widgets.append(bar.addWidget(QLabel(f" {label} ")))
            widgets.append(bar.addWidget(box))
        bar.addSeparator()
        for action in (self.clear_action, self.invert_action, self.undo_action, self.redo_action,
                       self.fit_action, self.actual_action):  # fmt: skip
            bar.addAction(action)
        return widgets

    def set_tool(self, name: str) -> None:
        self.view.tool = self.tools[name]
        if name in self.tool_actions:
            self.tool_actions[name].setChecked(True)
        self.view.update()

    def tool_name(self) -> str:
        return next(n for n, t in self.tools.items() if t is self.view.tool)

    def resize_brush(self, factor: float) -> None:
        current = self.size_box.value()
        step = round(current * factor)
        self.size_box.setValue(step if step != current else current + (1 if factor > 1 else -1))


def spin_box(low: int, high: int, value: int, tip: str, suffix: str = "") -> QSpinBox:
    box = QSpinBox(minimum=low, maximum=high, value=value)
    box.setToolTip(tip)
    box.setSuffix(suffix)
    return box
