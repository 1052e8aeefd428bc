"""Guards on the Qt binding itself.

PySide6 6.12.0's `SignalInstance.emit` returns `True` without taking a reference, so every
emit from Python steals one from `True`; a long session then dies at exit with
"Fatal Python error: bool_dealloc". Hearth pins a release without that defect; this test
keeps a future upgrade honest.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(int)


def test_emitting_a_signal_does_not_steal_references_to_true(qtbot) -> None:  # type: ignore[no-untyped-def]
    emitter = _Emitter()
    emitter.fired.connect(lambda value: None)
    before = sys.getrefcount(True)
    for n in range(200):
        emitter.fired.emit(n)
    assert sys.getrefcount(True) >= before - 5
