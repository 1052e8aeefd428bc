"""Starting the window: show it first, then open the profile and load the model in the background."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from app import APP_NAME, __version__

if TYPE_CHECKING:
    from app.engines.llm import ChatEngine
    from app.runtime import Profile, Progress

LAUNCH_T0 = time.perf_counter()


# QtMultimedia probes for PipeWire before it settles on PulseAudio; the probe's warning is noise.
QUIET_MULTIMEDIA = "qt.multimedia.symbolsresolver.warning=false"


def run_gui(smoke_test: bool = False) -> int:
    rules = os.environ.get("QT_LOGGING_RULES", "")
    if QUIET_MULTIMEDIA not in rules:
        os.environ["QT_LOGGING_RULES"] = f"{rules};{QUIET_MULTIMEDIA}" if rules else QUIET_MULTIMEDIA
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.ui.chat_controller import ChatController
    from app.ui.main_window import ASSETS, MainWindow
    from app.ui.tasks import Runner
    from app.ui.theme import apply_theme

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setStyle("Fusion")
    app.setDesktopFileName("hearth")
    app.setWindowIcon(QIcon(str(ASSETS / "hearth.svg")))
    apply_theme(app, "system")  # the user's choice is applied once settings are read
    controller = ChatController(Runner(), _open_profile, _load_engine)
    window = MainWindow(controller)
    controller.profileReady.connect(lambda profile: apply_theme(app, profile.settings.theme))

    def follow_system_scheme() -> None:
        profile = controller.profile
        if profile is None or profile.settings.theme == "system":
            apply_theme(app, "system")
            controller.open_conversation(controller.current)  # re-render code colours

    app.styleHints().colorSchemeChanged.connect(follow_system_scheme)
    if os.environ.get("HEARTH_EXIT_AFTER_SHOW"):
        # Used by `hearth bench` to time launch-to-window: report, then quit.
        window.shown.connect(lambda: print(f"window-shown {time.perf_counter() - LAUNCH_T0:.4f}", flush=True))
        window.shown.connect(lambda: QTimer.singleShot(0, app.quit))
    if smoke_test:
        from app.ui.smoke import SmokeTest

        SmokeTest(app, window)  # one prompt, one JSON line, then it ends the event loop
    window.show()
    controller.start()
    code = app.exec()
    window.close()  # also when the loop ended without a close event: stops work, closes the store
    return code


def _open_profile() -> Profile:
    from app import logs
    from app.runtime import Profile

    profile = Profile.open()
    logs.install(profile.paths.logs)
    return profile


def _load_engine(profile: Profile, progress: Progress) -> ChatEngine:
    from app.runtime import load_engine

    return load_engine(profile, progress=progress)
