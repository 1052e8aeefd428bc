"""Errors a user can act on.

Every failure that reaches a person carries two parts: what failed, and what to do about it.
The CLI prints both; the window shows both in a message bar. Nothing here imports Qt.
"""

from __future__ import annotations


class HearthError(Exception):
    """A failure with a message for people and a hint on what to do next."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[type[HearthError], tuple[str, str]]:
        # Errors cross from the model's process to the app's pickled: keep the hint with the message.
        return type(self), (self.message, self.hint)


class ModelError(HearthError):
    """A model file is missing, damaged, unsupported, or could not be loaded."""


class EngineCrashed(ModelError):
    """The model's process stopped by itself (a signal, an out-of-memory kill, an abort).

    `phase` is "load" or "reply"; `signal_name` the signal's name ("SIGILL"), or "" for an exit."""

    def __init__(self, message: str, hint: str = "", phase: str = "reply", signal_name: str = "") -> None:
        super().__init__(message, hint)
        self.phase = phase
        self.signal_name = signal_name

    def __reduce__(self) -> tuple[type[EngineCrashed], tuple[str, str, str, str]]:  # type: ignore[override]
        return type(self), (self.message, self.hint, self.phase, self.signal_name)


class RemoteError(ModelError):
    """A remote chat server cannot be reached, refuses us, or answers in a way Hearth cannot read."""


class CatalogError(HearthError):
    """The catalog is malformed or names a model Hearth does not know."""


class FetchError(HearthError):
    """A model download or copy failed; nothing half-written is left in place."""


class StoreError(HearthError):
    """The conversation database could not be read or written."""


class StoreBusyError(StoreError):
    """Another process holds the database lock for longer than we wait."""


class DataDirError(HearthError):
    """Hearth's data folder cannot be created or written."""


class ImageError(HearthError):
    """A picture cannot be read, is too large, or its text cannot be read or stored."""


class PromptError(HearthError):
    """A prompt cannot be sent: it is empty, or it does not fit in the context."""


class Cancelled(Exception):
    """Raised inside workers when the user stopped the work."""


class AudioError(HearthError):
    """An audio file or stream cannot be read: missing, empty, or not audio at all."""


class VoiceError(HearthError):
    """Voice input or output failed: no microphone, a device unplugged, permission denied."""
