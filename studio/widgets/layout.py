"""Small layout helpers shared by the panels."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QWidget


def row(*widgets: QWidget, stretch_first: bool = False) -> QWidget:
    """The widgets side by side in one borderless widget, for a form row."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for index, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if stretch_first and index == 0 else 0)
    return box
