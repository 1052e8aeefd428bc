"""One model's own settings on the Models page: context size, GPU layers, threads, chat format and
vision projector. Each field can say "as in Settings", which stores nothing for it, so the general
value (Settings › Model) still applies; `overrides()` gives what was chosen as a `ModelOverrides`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QPushButton, QSpinBox, QWidget

from app.catalog.catalog import ModelEntry
from app.settings import CHAT_FORMATS, ModelOverrides, Settings

FORMAT_LABELS = {
    "auto": "The model's own template",
    "chatml": "ChatML",
    "llama3": "Llama 3",
    "gemma": "Gemma",
    "plain": "Plain text",
}
AS_IN_SETTINGS = 0  # the context and threads boxes' "as in Settings" value
GPU_AS_IN_SETTINGS = -2  # the GPU box's: -1 already means "all layers"
MIN_CTX = 256


class WordSpin(QSpinBox):
    """A spin box that shows words for some values ("as in Settings (4096)", "all")."""

    def __init__(self, low: int, high: int, name: str, step: int = 1) -> None:
        super().__init__()
        self._words: dict[int, str] = {}
        self.setRange(low, high)
        self.setSingleStep(step)
        self.setAccessibleName(name)

    def show_value(self, value: int, words: dict[int, str]) -> None:
        self._words = words
        self.setValue(value)
        self.lineEdit().setText(self.textFromValue(value))  # the words may change while the value stays

    def textFromValue(self, value: int) -> str:
        return self._words.get(value, str(value))

    def valueFromText(self, text: str) -> int:
        for value, word in self._words.items():
            if text == word:
                return value
        try:
            return int(text)
        except ValueError:
            return self.minimum()

    def validate(self, text: str, pos: int) -> Any:
        if text in self._words.values():
            return QValidator.State.Acceptable
        if text and any(word.startswith(text) for word in self._words.values()):
            return QValidator.State.Intermediate
        return super().validate(text, pos)


class ModelSettingsForm(QGroupBox):
    saveRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings for this model", parent)
        form = QFormLayout(self)
        self.ctx = WordSpin(AS_IN_SETTINGS, 262144, "Context size for this model", step=1024)
        self.gpu = WordSpin(GPU_AS_IN_SETTINGS, 999, "GPU layers for this model")
        self.threads = WordSpin(AS_IN_SETTINGS, 512, "CPU threads for this model")
        self.chat_format = QComboBox(self)
        self.chat_format.setAccessibleName("Chat format for this model")
        for value in CHAT_FORMATS:
            self.chat_format.addItem(FORMAT_LABELS.get(value, value), value)
        self.projector = QComboBox(self)
        self.projector.setAccessibleName("Vision projector for this model")
        self.save = QPushButton("&Save for this model", self)
        self.save.setAutoDefault(False)
        self.save.clicked.connect(self.saveRequested.emit)
        form.addRow("&Context size (tokens)", self.ctx)
        form.addRow("&GPU layers", self.gpu)
        form.addRow("CPU &threads", self.threads)
        form.addRow("C&hat format", self.chat_format)
        form.addRow("&Vision projector", self.projector)
        note = QLabel("Used whenever this model loads; the rest come from Settings › Model.", self)
        note.setWordWrap(True)
        form.addRow(note)
        form.addRow("", self.save)

    def show_model(self, entry: ModelEntry, settings: Settings, projectors: Sequence[tuple[str, str]]) -> None:
        """Fill the form with `entry`'s own settings; `projectors` are (id, label) to choose from."""
        own = settings.model_overrides.get(entry.id, ModelOverrides())
        self.ctx.show_value(own.n_ctx or AS_IN_SETTINGS, {AS_IN_SETTINGS: f"as in Settings ({settings.n_ctx:,})"})
        general_gpu = "all" if settings.n_gpu_layers == -1 else str(settings.n_gpu_layers)
        gpu_words = {GPU_AS_IN_SETTINGS: f"as in Settings ({general_gpu})", -1: "all", 0: "none (CPU only)"}
        self.gpu.show_value(GPU_AS_IN_SETTINGS if own.n_gpu_layers is None else own.n_gpu_layers, gpu_words)
        threads_words = {AS_IN_SETTINGS: f"as in Settings ({settings.n_threads})"}
        self.threads.show_value(own.n_threads or AS_IN_SETTINGS, threads_words)
        self.chat_format.setCurrentIndex(max(0, self.chat_format.findData(own.chat_format or "auto")))
        self._fill_projectors(entry, own.projector, projectors)

    def _fill_projectors(self, entry: ModelEntry, chosen: str | None, projectors: Sequence[tuple[str, str]]) -> None:
        box = self.projector
        box.clear()
        box.addItem("Its own projector" if entry.projector else "None (text only)", None)
        for projector_id, label in projectors:
            box.addItem(label, projector_id)
        if chosen is not None and box.findData(chosen) < 0:
            box.addItem(f"{chosen} (not in the catalog)", chosen)
        box.setCurrentIndex(max(0, box.findData(chosen)))

    def overrides(self) -> ModelOverrides:
        ctx, gpu = self.ctx.value(), self.gpu.value()
        chat_format = self.chat_format.currentData()
        return ModelOverrides(
            n_ctx=max(ctx, MIN_CTX) if ctx != AS_IN_SETTINGS else None,
            n_gpu_layers=None if gpu == GPU_AS_IN_SETTINGS else gpu,
            n_threads=self.threads.value() or None,
            chat_format=None if chat_format == "auto" else chat_format,
            projector=self.projector.currentData(),
        )
