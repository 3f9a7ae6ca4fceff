"""Waiting for the window inside a benchmark: the Qt event loop runs until a condition holds."""

from __future__ import annotations

from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout_s: float = 600) -> None:
    """Run the event loop until ``predicate()`` is true (polled every 2 ms) or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: predicate() and loop.quit())
    timer.start(2)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    timer.stop()
