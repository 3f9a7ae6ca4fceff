"""Every control a person can use in the main window explains itself in a tooltip."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTabBar,
    QTextEdit,
)

CONTROLS = (
    QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit,
    QTextEdit,
)  # fmt: skip


def _described(widget) -> bool:
    # Spin boxes and combo boxes own inner line edits; the outer control carries the tooltip.
    while widget is not None:
        if widget.toolTip().strip():
            return True
        if not isinstance(widget.parentWidget(), CONTROLS):
            return False
        widget = widget.parentWidget()
    return False


def test_every_visible_control_has_a_tooltip(make_window, studio_settings):
    window = make_window(studio_settings)
    checked = 0
    for tab_index in range(window.side_tabs.count()):
        window.side_tabs.setCurrentIndex(tab_index)
        visible = [
            w
            for kind in CONTROLS
            for w in window.findChildren(kind)
            if w.isVisible() and not isinstance(w.parentWidget(), QTabBar)
        ]
        checked += len(visible)
        missing = [
            f"{type(w).__name__} {w.objectName() or getattr(w, 'text', lambda: '')()!r}"
            for w in visible
            if not _described(w)
        ]
        assert missing == [], f"controls without a tooltip: {missing}"
    assert checked > 30  # the panels really were searched
