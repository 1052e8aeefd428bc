"""Fixtures for tests that drive the real main window."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.ui.theme import apply_theme
from tests.gui.window_kit import WindowFactory


@pytest.fixture
def windows(qtbot: QtBot) -> Iterator[WindowFactory]:
    factory = WindowFactory(qtbot)
    yield factory
    factory.close_all()


@pytest.fixture
def light_theme(qapp: QApplication) -> Iterator[None]:
    """Start light and end light, whatever the test switched to."""
    apply_theme(qapp, "light")
    yield
    apply_theme(qapp, "light")
