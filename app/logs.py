"""Logging for the application (libraries below `app` only create named loggers).

One rotating log file in the data folder, and an excepthook that logs uncaught errors
instead of losing them.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from types import TracebackType


def install(log_dir: Path, level: int = logging.INFO, console: bool = False) -> None:
    root = logging.getLogger("hearth")
    if root.handlers:
        return
    root.setLevel(level)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / "hearth.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.WARNING)
        root.addHandler(stream)

    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        root.critical("uncaught exception", exc_info=(kind, value, tb))
        previous(kind, value, tb)

    sys.excepthook = hook
