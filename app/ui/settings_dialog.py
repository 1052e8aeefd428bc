"""Settings › one form for the typed schema in `app.settings`.

The dialog edits a copy; OK validates it through the schema (so the rules live in one place)
and hands the new value back. Nothing here touches the disk: the window saves off the GUI thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.settings import THEMES, GenerationSettings, Settings

ENGINE_CHOICES = (("local", "Local (this computer)"), ("remote", "Remote (OpenAI-compatible server)"))


def _spin(low: int, high: int, value: int, name: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setAccessibleName(name)
    return box


def _dspin(low: float, high: float, step: float, value: float, name: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(value)
    box.setAccessibleName(name)
    return box


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, models: Sequence[tuple[str, str]], backend: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self._settings = settings
        self.result_settings: Settings | None = None
        tabs = QTabWidget(self)
        tabs.addTab(self._model_tab(settings, models, backend), "Model")
        tabs.addTab(self._sampling_tab(settings.generation), "Replies")
        tabs.addTab(self._general_tab(settings), "General")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)

    def _model_tab(self, s: Settings, models: Sequence[tuple[str, str]], backend: str) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.model = QComboBox()
        self.model.setAccessibleName("Model")
        for model_id, label in models:
            self.model.addItem(label, model_id)
        index = self.model.findData(s.model_id)
        self.model.setCurrentIndex(max(index, 0))
        self.threads = _spin(1, 256, s.n_threads, "CPU threads")
        self.gpu_layers = _spin(-1, 999, s.n_gpu_layers, "GPU layers")
        self.gpu_layers.setSpecialValueText("all")
        self.n_ctx = _spin(256, 262144, s.n_ctx, "Context size in tokens")
        self.n_ctx.setSingleStep(512)
        form.addRow("&Model", self.model)
        form.addRow("CPU &threads", self.threads)
        form.addRow("&GPU layers", self.gpu_layers)
        form.addRow("&Context size (tokens)", self.n_ctx)
        form.addRow("Backend", QLabel(backend))
        self._engine_rows(form, s)
        return page

    def _engine_rows(self, form: QFormLayout, s: Settings) -> None:
        self.engine = QComboBox()
        self.engine.setAccessibleName("Engine")
        for value, label in ENGINE_CHOICES:
            self.engine.addItem(label, value)
        self.engine.setCurrentIndex(max(self.engine.findData(s.engine), 0))
        self.remote_url = QLineEdit(s.remote_url)
        self.remote_url.setAccessibleName("Remote server URL")
        self.remote_url.setPlaceholderText("http://127.0.0.1:8080/v1")
        self.remote_model = QLineEdit(s.remote_model)
        self.remote_model.setAccessibleName("Remote model")
        self.remote_model.setPlaceholderText("the first model the server lists")
        form.addRow("&Engine", self.engine)
        form.addRow("Server &URL", self.remote_url)
        form.addRow("Remote m&odel", self.remote_model)
        self.engine.currentIndexChanged.connect(self._show_engine)
        self._show_engine()

    def _show_engine(self) -> None:
        remote = self.engine.currentData() == "remote"
        self.remote_url.setEnabled(remote)
        self.remote_model.setEnabled(remote)

    def _sampling_tab(self, g: GenerationSettings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.temperature = _dspin(0.0, 2.0, 0.05, g.temperature, "Temperature")
        self.top_p = _dspin(0.01, 1.0, 0.01, g.top_p, "Top P")
        self.max_tokens = _spin(1, 32768, g.max_tokens, "Longest reply in tokens")
        self.seed = _spin(-1, 2**31 - 1, g.seed, "Seed")
        self.seed.setSpecialValueText("random")
        form.addRow("&Temperature", self.temperature)
        form.addRow("Top &P", self.top_p)
        form.addRow("Longest &reply (tokens)", self.max_tokens)
        form.addRow("&Seed", self.seed)
        return page

    def _general_tab(self, s: Settings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.instructions = QPlainTextEdit(s.default_instructions)
        self.instructions.setAccessibleName("Default instructions")
        self.instructions.setTabChangesFocus(True)
        self.theme = QComboBox()
        self.theme.setAccessibleName("Theme")
        for name in THEMES:
            self.theme.addItem(name.capitalize(), name)
        self.theme.setCurrentIndex(max(self.theme.findData(s.theme), 0))
        form.addRow("Default &instructions", self.instructions)
        form.addRow("T&heme", self.theme)
        return page

    def collect(self) -> Settings:
        """The edited settings, validated by the schema (ValueError says what is wrong)."""
        generation = dataclasses.replace(
            self._settings.generation,
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            max_tokens=self.max_tokens.value(),
            seed=self.seed.value(),
        )
        engine, url = self.engine.currentData(), self.remote_url.text().strip()
        if engine == "remote" and not url:
            raise ValueError("The remote engine needs a server URL, such as http://127.0.0.1:8080/v1.")
        return self._settings.replace(
            engine=engine,
            remote_url=url,
            remote_model=self.remote_model.text().strip(),
            model_id=self.model.currentData() or self._settings.model_id,
            n_threads=self.threads.value(),
            n_gpu_layers=self.gpu_layers.value(),
            n_ctx=self.n_ctx.value(),
            default_instructions=self.instructions.toPlainText(),
            theme=self.theme.currentData(),
            generation=generation,
        )

    def accept(self) -> None:
        try:
            self.result_settings = self.collect()
        except ValueError as exc:
            QMessageBox.warning(self, "Settings", str(exc))
            return
        super().accept()
