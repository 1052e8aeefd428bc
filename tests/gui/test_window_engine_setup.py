"""The real window with the real engine factory: an API key typed in Settings reaches the server
through the keyring (never settings.json), and a GPU that is asked for but absent is explained."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from keyring.backends.fail import Keyring as NoKeyring
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialog, QLineEdit
from pytestqt.qtbot import QtBot

import app.secrets
from app.paths import DataPaths
from app.runtime import Profile, load_engine
from app.secrets import SERVICE, KeyStore, account
from app.settings import Settings, save_settings
from app.ui.chat_controller import ChatController
from app.ui.main_window import MainWindow
from app.ui.settings_dialog import SettingsDialog
from app.ui.tasks import Runner
from tests.e2e.remote_kit import Stub
from tests.gui.window_kit import OFFSCREEN_NOISE, WAIT_MS, WindowFactory
from tests.keyrings import MemoryKeyring

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)

KEY = "sekret-0123456789"
LOAD_MS = 60_000  # the real SmolLM2 loads in about a second, longer on a busy shared machine


@pytest.fixture
def auth_stub() -> Iterator[Stub]:
    stub = Stub("auth", api_key=KEY)
    yield stub
    stub.stop()


def _real_window(qtbot: QtBot, windows: WindowFactory, settings: Settings, home: Path) -> MainWindow:
    """The window as app/ui/app.py builds it, with these settings stored first."""
    save_settings(settings, DataPaths(home).ensure().settings)
    controller = ChatController(Runner(), Profile.open, lambda profile, progress: load_engine(profile, None, progress))
    window = MainWindow(controller)
    windows.open.append(window)  # closed at teardown like the factory's own windows
    window.show()
    qtbot.waitExposed(window)
    return window


def _answer_settings(edit: Callable[[SettingsDialog], None]) -> None:
    """Fill in the modal Settings dialog from inside its own event loop, then press OK."""
    dialog = QApplication.activeModalWidget()
    try:
        assert isinstance(dialog, SettingsDialog)
        edit(dialog)
        dialog.accept()
    finally:
        if isinstance(dialog, QDialog) and dialog.isVisible():
            dialog.reject()


def _type_key(dialog: SettingsDialog) -> None:
    assert dialog.api_key.echoMode() == QLineEdit.EchoMode.Password and dialog.api_key.text() == ""
    assert dialog.api_key.isEnabled(), "the remote engine is chosen: its key can be typed"
    dialog.api_key.setText(KEY)


def _io_drained(qtbot: QtBot, window: MainWindow) -> None:
    """Wait until every job already on the io lane (the settings save among them) has run."""
    done: list[bool] = []
    window.controller.runner.submit("io", lambda: None).then(lambda _: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)


def _start_refused(qtbot: QtBot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.controller.engineFailed, timeout=WAIT_MS) as failed:
        window.controller.start()
    assert "HTTP 401" in failed.args[0] and "Settings › Model" in failed.args[1]


def test_a_key_typed_in_settings_goes_to_the_keyring_and_the_engine_reconnects(
    qtbot: QtBot, windows: WindowFactory, auth_stub: Stub, keyring_backend: MemoryKeyring, hearth_home: Path
) -> None:
    window = _real_window(qtbot, windows, Settings(engine="remote", remote_url=auth_stub.url), hearth_home)
    _start_refused(qtbot, window)
    assert "HTTP 401" in window.message_bar.label.text() and window.message_bar.isVisible()
    QTimer.singleShot(0, lambda: _answer_settings(_type_key))
    with qtbot.waitSignal(window.controller.engineReady, timeout=WAIT_MS) as ready:  # only the key changed
        window.open_settings()
    assert ready.args[0].model_id == "stub-model"
    assert "HTTP 401" not in window.message_bar.label.text() or not window.message_bar.isVisible(), (
        "the refusal is gone"
    )
    assert keyring_backend.passwords == {(SERVICE, account(auth_stub.url)): KEY}
    _io_drained(qtbot, window)
    assert [p for p in hearth_home.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []
    assert "remote" in DataPaths(hearth_home).settings.read_text(encoding="utf-8")
    assert "Hearth closes" not in window.message_bar.label.text(), "a remembered key needs no notice"


def test_without_a_keyring_the_window_says_the_key_will_not_be_remembered(
    qtbot: QtBot, windows: WindowFactory, auth_stub: Stub, hearth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.secrets, "DEFAULT", KeyStore(NoKeyring()))  # a headless machine's keyring
    window = _real_window(qtbot, windows, Settings(engine="remote", remote_url=auth_stub.url), hearth_home)
    _start_refused(qtbot, window)
    QTimer.singleShot(0, lambda: _answer_settings(_type_key))
    with qtbot.waitSignal(window.controller.engineReady, timeout=WAIT_MS):
        window.open_settings()
    notice = window.message_bar.label.text()
    assert window.message_bar.isVisible()
    assert "only until Hearth closes" in notice and "no system keyring" in notice and app.secrets.API_KEY_ENV in notice
    _io_drained(qtbot, window)
    assert [p for p in hearth_home.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []


def test_the_dialog_forgets_a_key_and_wants_a_server_for_a_new_one(
    qtbot: QtBot, keyring_backend: MemoryKeyring
) -> None:
    url = "http://127.0.0.1:8080/v1"
    app.secrets.set_api_key(url, KEY)
    dialog = SettingsDialog(Settings(), [("smollm2-135m-instruct", "SmolLM2")], "CPU")
    qtbot.addWidget(dialog)
    assert not dialog.api_key.isEnabled() and not dialog.forget_key.isEnabled(), "the local engine needs no key"
    dialog.engine.setCurrentIndex(dialog.engine.findData("remote"))
    dialog.api_key.setText(KEY)
    with pytest.raises(ValueError, match="server URL"):
        dialog.collect_api_key("")
    dialog.api_key.clear()
    dialog.remote_url.setText(url)
    dialog.forget_key.setChecked(True)
    dialog.accept()
    change = dialog.api_key_change
    assert change is not None and (change.base_url, change.key) == (url, None)
    assert change.apply() is None and keyring_backend.passwords == {}


def test_gpu_layers_asked_for_on_a_cpu_build_are_explained(
    qtbot: QtBot, windows: WindowFactory, home_with_model: Path
) -> None:
    import llama_cpp

    assert not llama_cpp.llama_supports_gpu_offload(), "this test describes a CPU-only build"
    window = _real_window(qtbot, windows, Settings(n_gpu_layers=12, n_ctx=1024, n_threads=1), home_with_model)
    with qtbot.waitSignal(window.controller.engineReady, timeout=LOAD_MS) as ready:
        window.controller.start()
    info = ready.args[0]
    assert (info.backend, info.gpu_layers) == ("CPU", 0)
    status = window.model_label.text()
    assert " · CPU (GPU not used: this llama.cpp build has no GPU backend" in status and status.endswith(" · ready")
    notice = window.message_bar.label.text()
    assert window.message_bar.isVisible() and "runs on the CPU" in notice and "GGML_CUDA" in notice
