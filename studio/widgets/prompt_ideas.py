"""What the bundled demo model can draw, shown while it is the active model.

The bundled toy-world model draws only a small world (flat shapes, stick figures, shaded solids in
eight colours, 64 pixels). A new user does not know that: while it is active, the prompt box's
placeholder gives an example, a "Prompt ideas" menu fills in prompts it draws well, and a one-line
note says what it is and how to choose a real model, and warns of samplers it draws noise with at
the chosen CFG. Another model hides all of it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from pipelines.bundled_model import is_bundled_model, safe_cfg, sampler_warning

PLACEHOLDER = "e.g. a big red star in the middle on a blue background"
NOTE = (
    "The bundled model is a 64-pixel demo: it draws shapes, stick figures and solids. "
    "Choose a real Stable Diffusion model in Model (…)."
)
# (menu label, prompt): each draws well with the bundled model, with or without a ControlNet.
IDEAS = (
    ("Shapes", (
        "a large red circle in the center on a blue background",
        "a big yellow star in the middle, purple backdrop",
        "a small white triangle at the top left and a green ring at the bottom right on a black "
        "background",
        "on an orange background, a blue square at the right",
    )),
    ("People (try a pose ControlNet)", (
        "a white person raising both arms on a green background",
        "a yellow figure walking, blue backdrop",
        "a red stick figure with arms out on a white background",
    )),
    ("Solids (try a depth ControlNet)", (
        "a green sphere on a purple background",
        "an orange box on a blue background",
    )),
    ("Your own outline (paint a canny map)", (
        "a yellow shape on a blue background",
        "white on black",
        "a crimson drawing on an ivory backdrop",
    )),
)  # fmt: skip


class BundledModelGuide(QWidget):
    """The ideas menu and the demo note; it also swaps ``prompt``'s placeholder."""

    idea_chosen = Signal(str)
    cfg_wanted = Signal(float)  # the warning's "Set CFG to …" link was clicked

    def __init__(self, prompt: QPlainTextEdit, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = prompt
        self._placeholder = prompt.placeholderText()
        self.ideas = QToolButton(text="Prompt ideas")
        self.ideas.setToolTip("Prompts the bundled demo model draws well.")
        self.ideas.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.ideas)
        for title, prompts in IDEAS:
            section = menu.addMenu(title)
            for text in prompts:
                section.addAction(text, lambda text=text: self.choose(text))
        self.ideas.setMenu(menu)
        self.warning = ""
        self._safe_cfg: float | None = None
        self.note = QLabel(NOTE)
        self.note.linkActivated.connect(self._set_safe_cfg)
        self.note.setWordWrap(True)
        self.note.setToolTip("Add a folder of models in Settings, or pick a model file with the "
                             "… button beside Model.")  # fmt: skip
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        font = self.note.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self.note.setFont(font)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note, 1)
        layout.addWidget(self.ideas)

    def set_model(self, path: str) -> None:
        """Show the guide for the bundled model, hide it (and restore the placeholder) else."""
        bundled = is_bundled_model(path)
        self.setVisible(bundled)
        self.prompt.setPlaceholderText(PLACEHOLDER if bundled else self._placeholder)

    def set_run(self, samplers: Sequence[str], cfg: float) -> None:
        """Warn, in the note, of the samplers the bundled model draws noise with at ``cfg``."""
        self.warning = sampler_warning(samplers, cfg)
        self._safe_cfg = safe_cfg(samplers)
        if not self.warning:
            self.note.setText(NOTE)
            return
        link = f'<a href="cfg">Set CFG to {self._safe_cfg:g}</a>'
        self.note.setText(f"{html.escape(NOTE)}<br>⚠ {html.escape(self.warning)} {link}")

    def _set_safe_cfg(self, _link: str) -> None:
        if self._safe_cfg is not None:
            self.cfg_wanted.emit(self._safe_cfg)

    def choose(self, text: str) -> None:
        self.prompt.setPlainText(text)
        self.idea_chosen.emit(text)
