"""A combo box that reads its entries again each time it opens."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QComboBox


class RefreshingComboBox(QComboBox):
    """Calls ``refresh`` before opening, so that what appeared meanwhile (results finished while an
    editor is open, upscaler files copied into a folder) is listed."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:  # noqa: N802
        self._refresh()
        super().showPopup()
