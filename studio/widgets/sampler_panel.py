"""Sampler panel: the core's sampler registry with descriptions, steps, and the preview decoder."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from pipelines.types import MAX_STEPS, PreviewMode

PREVIEW_CHOICES = (
    (PreviewMode.APPROXIMATE, "Approximate (fast)", "A linear map from latents to colours: "
     "nearly free, blurry."),
    (PreviewMode.TINY, "Tiny decoder", "TAESD: sharp previews at little cost, when its weights "
     "are configured; otherwise falls back to approximate."),
    (PreviewMode.FULL, "Full VAE (exact, slow)", "The model's own decoder at every step: exact "
     "but costs about one extra step each time."),
    (PreviewMode.NONE, "No previews", "Only show the final image (fastest)."),
)  # fmt: skip


class SamplerPanel(QWidget):
    steps_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._wanted = "Euler"  # kept until the registry arrives from the worker
        self.samplers = QListWidget()
        self.samplers.setToolTip("The sampler (scheduler) that walks from noise to the image.")
        self.samplers.currentItemChanged.connect(self._show_description)
        self.description = QLabel("Loading samplers…")
        self.description.setWordWrap(True)
        self.description.setToolTip("What the selected sampler does.")
        self.steps = QSpinBox(minimum=1, maximum=MAX_STEPS, value=20)
        self.steps.setToolTip("Sampler steps (the same value as in the prompt panel).")
        self.steps.valueChanged.connect(self.steps_changed)
        self.preview = QComboBox()
        for mode, label, tip in PREVIEW_CHOICES:
            self.preview.addItem(label, mode.value)
            self.preview.setItemData(self.preview.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.preview.setToolTip("How the live preview is decoded at every step.")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.samplers, 1)
        layout.addWidget(self.description)
        form = QFormLayout()
        form.addRow("Steps", self.steps)
        form.addRow("Preview", self.preview)
        layout.addLayout(form)

    def set_samplers(self, samplers, default: str) -> None:
        """Fill from the worker's catalog (name, description, evaluations per step)."""
        wanted = self._wanted or default
        self.samplers.clear()
        for info in samplers:
            item = QListWidgetItem(info.name)
            cost = "" if info.evaluations_per_step == 1 else f" ({info.evaluations_per_step}× cost)"
            item.setToolTip(info.description + cost)
            item.setData(Qt.ItemDataRole.UserRole, info.description + cost)
            self.samplers.addItem(item)
        self.set_sampler(wanted if self._find(wanted) else default)

    def _find(self, name: str) -> QListWidgetItem | None:
        matches = self.samplers.findItems(name, Qt.MatchFlag.MatchExactly)
        return matches[0] if matches else None

    def set_sampler(self, name: str) -> None:
        self._wanted = name
        item = self._find(name)
        if item is not None:
            self.samplers.setCurrentItem(item)

    def sampler(self) -> str:
        item = self.samplers.currentItem()
        return item.text() if item is not None else self._wanted

    def _show_description(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is not None:
            self._wanted = item.text()
            self.description.setText(f"<b>{item.text()}</b>: {item.data(Qt.ItemDataRole.UserRole)}")

    def preview_mode(self) -> PreviewMode:
        return PreviewMode(self.preview.currentData())

    def set_preview_mode(self, mode: PreviewMode) -> None:
        self.preview.setCurrentIndex(max(0, self.preview.findData(mode.value)))
