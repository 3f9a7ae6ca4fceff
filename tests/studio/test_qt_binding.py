"""The Qt binding must keep Python's reference counts: the studio calls Qt and emits signals at every
preview step, so a binding that loses one reference per call aborts a long session."""

from __future__ import annotations

import sys

CALLS = 2_000


def test_qt_calls_and_signal_emits_keep_the_reference_counts_of_none_and_true(qtbot):
    from PySide6.QtCore import QObject, Signal
    from PySide6.QtWidgets import QLabel

    class Emitter(QObject):
        changed = Signal(int)

    label = QLabel()
    qtbot.addWidget(label)
    emitter = Emitter()
    received: list[int] = []
    emitter.changed.connect(received.append)

    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(CALLS):
        label.setToolTip("x")  # returns nothing
        emitter.changed.emit(1)
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)

    assert len(received) == CALLS
    # Other code may hold or drop a few references meanwhile; a leaking binding loses one per call.
    assert lost_none < CALLS // 10, f"{lost_none} references to None lost in {CALLS} Qt calls"
    assert lost_true < CALLS // 10, f"{lost_true} references to True lost in {CALLS} emits"
