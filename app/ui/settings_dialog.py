"""Settings › one form for the typed schema in `app.settings`.

The dialog edits a copy; OK validates it through the schema (so the rules live in one place)
and hands the new value back. Nothing here touches the disk: the window saves off the GUI thread.

The Voice tab lists the speech models and voices the window read from the catalog, and the
microphones and speakers of a `DeviceList`. Audio devices are enumerated only once that tab is
opened (the list is then kept up to date as devices come and go), so opening Settings for
anything else never wakes the sound system.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import (
    QCheckBox,
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

from app.secrets import API_KEY_ENV, Saved, delete_api_key, set_api_key
from app.settings import THEMES, VOICE_MODES, GenerationSettings, Settings, VoiceSettings

ENGINE_CHOICES = (("local", "Local (this computer)"), ("remote", "Remote (OpenAI-compatible server)"))
MODE_LABELS = {"hands-free": "Hands-free (listens by itself)", "push-to-talk": "Push to talk (hold a key or button)"}
SYSTEM_DEFAULT = "System default"
# Languages offered for multilingual speech models; "auto" lets the model tell.
LANGUAGES = (
    ("auto", "Detect automatically"),
    ("en", "English"),
    ("de", "German"),
    ("fr", "French"),
    ("es", "Spanish"),
    ("it", "Italian"),
    ("pt", "Portuguese"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("sv", "Swedish"),
    ("da", "Danish"),
    ("no", "Norwegian"),
    ("fi", "Finnish"),
    ("cs", "Czech"),
    ("tr", "Turkish"),
    ("ru", "Russian"),
    ("uk", "Ukrainian"),
    ("el", "Greek"),
    ("ar", "Arabic"),
    ("he", "Hebrew"),
    ("hi", "Hindi"),
    ("zh", "Chinese"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("vi", "Vietnamese"),
    ("id", "Indonesian"),
)


@dataclass(frozen=True)
class SpeechModel:
    """A speech recognition model ("stt") or a voice ("tts") from the catalog, for the Voice tab."""

    id: str
    name: str
    kind: str
    multilingual: bool = False


@dataclass(frozen=True)
class ApiKeyChange:
    """A key typed in Settings › Model for the server at `base_url`; `key` None forgets the saved one.

    `apply` talks to the system keyring, which can block: run it off the GUI thread.
    """

    base_url: str
    key: str | None

    def apply(self) -> Saved | None:
        if self.key is None:
            delete_api_key(self.base_url)
            return None
        return set_api_key(self.base_url, self.key)


class DeviceList(Protocol):
    """Microphones ("input") and speakers ("output") as (id, name) pairs, the system default ("")
    first; `changed` fires when one comes or goes (`app.ui.audio_devices.AudioDevices`)."""

    @property
    def changed(self) -> SignalInstance: ...

    def choices(self, kind: str) -> list[tuple[str, str]]: ...


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


def _choices(name: str, items: Sequence[tuple[str, str]], current: str) -> QComboBox:
    """A combo box of (value, label) items with `current` selected (added when it is not listed)."""
    box = QComboBox()
    box.setAccessibleName(name)
    for value, label in items:
        box.addItem(label, value)
    if box.findData(current) < 0:
        box.addItem(current or SYSTEM_DEFAULT, current)
    box.setCurrentIndex(box.findData(current))
    return box


class SettingsDialog(QDialog):
    """`speech_models` fills the Voice tab's model lists; `devices`, called when that tab is first
    opened, gives its microphones and speakers (without it only the system default is offered)."""

    def __init__(
        self,
        settings: Settings,
        models: Sequence[tuple[str, str]],
        backend: str,
        parent: QWidget | None = None,
        speech_models: Sequence[SpeechModel] = (),
        devices: Callable[[], DeviceList] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self._settings = settings
        self._device_source = devices
        self._device_list: DeviceList | None = None
        self.result_settings: Settings | None = None
        self.api_key_change: ApiKeyChange | None = None  # set by OK when a key was typed or forgotten
        self.tabs = tabs = QTabWidget(self)
        tabs.addTab(self._model_tab(settings, models, backend), "Model")
        tabs.addTab(self._sampling_tab(settings.generation), "Replies")
        self._voice_page = self._voice_tab(settings.voice, speech_models)
        tabs.addTab(self._voice_page, "Voice")
        tabs.addTab(self._general_tab(settings), "General")
        tabs.currentChanged.connect(self._on_tab)
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
        own = QLabel("A model's own settings, set in Models… (Ctrl+Shift+M), take the place of these.")
        own.setWordWrap(True)
        form.addRow("", own)
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
        self.remote_vision = QCheckBox("The remote model &sees pictures (send them, not only the text read from them)")
        self.remote_vision.setAccessibleName("The remote model sees pictures")
        self.remote_vision.setChecked(s.remote_vision)
        # The key is never shown again nor put in the settings: the field starts empty and a typed
        # key goes to the system keyring (app/secrets.py) when OK is pressed.
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setAccessibleName("Remote API key")
        self.api_key.setPlaceholderText("empty keeps the saved key, if any")
        self.forget_key = QCheckBox("&Forget the saved key")
        self.forget_key.setAccessibleName("Forget the saved API key")
        if os.environ.get(API_KEY_ENV):
            where = f"{API_KEY_ENV} is set: Hearth uses it, not a saved key."
        else:
            where = "Kept in the system keyring, never in the settings file (with no keyring: until Hearth closes)."
        self.key_note = QLabel(where)
        self.key_note.setWordWrap(True)
        form.addRow("&Engine", self.engine)
        form.addRow("Server &URL", self.remote_url)
        form.addRow("Remote m&odel", self.remote_model)
        form.addRow("", self.remote_vision)
        form.addRow("API &key", self.api_key)
        form.addRow("", self.forget_key)
        form.addRow("", self.key_note)
        self.engine.currentIndexChanged.connect(self._show_engine)
        self._show_engine()

    def _show_engine(self) -> None:
        remote = self.engine.currentData() == "remote"
        self.remote_url.setEnabled(remote)
        self.remote_model.setEnabled(remote)
        self.remote_vision.setEnabled(remote)
        self.api_key.setEnabled(remote)
        self.forget_key.setEnabled(remote)

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

    def _voice_tab(self, v: VoiceSettings, speech_models: Sequence[SpeechModel]) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self._multilingual = {m.id for m in speech_models if m.kind == "stt" and m.multilingual}
        self.stt_model = _choices(
            "Speech recognition model", [(m.id, m.name) for m in speech_models if m.kind == "stt"], v.stt_model_id
        )
        self.language = _choices("Spoken language", list(LANGUAGES), v.language)
        self.voice = _choices("Voice", [(m.id, m.name) for m in speech_models if m.kind == "tts"], v.voice_id)
        self.speaking_rate = _dspin(0.5, 2.0, 0.1, v.speaking_rate, "Speaking rate")
        self.speaking_rate.setSuffix(" ×")
        self.patience = _spin(200, 3000, v.patience_ms, "End-of-turn patience in milliseconds")
        self.patience.setSingleStep(50)
        self.patience.setSuffix(" ms")
        self.patience.setToolTip("How long a pause ends your turn (shorter once your words end a sentence)")
        self.voice_mode = _choices("Voice mode", [(m, MODE_LABELS.get(m, m)) for m in VOICE_MODES], v.mode)
        self.microphone = _choices("Microphone", [("", SYSTEM_DEFAULT)], v.input_device)
        self.speaker = _choices("Speaker", [("", SYSTEM_DEFAULT)], v.output_device)
        self.echo_cancellation = QCheckBox("&Echo cancellation (lets you interrupt Hearth on speakers)")
        self.echo_cancellation.setAccessibleName("Echo cancellation")
        self.echo_cancellation.setChecked(v.echo_cancellation)
        self.speak_replies = QCheckBox("Read replies &aloud")
        self.speak_replies.setAccessibleName("Read replies aloud")
        self.speak_replies.setChecked(v.speak_replies)
        form.addRow("Speech &model", self.stt_model)
        form.addRow("&Language", self.language)
        form.addRow("&Voice", self.voice)
        form.addRow("Speaking &rate", self.speaking_rate)
        form.addRow("End-of-turn &patience", self.patience)
        form.addRow("M&ode", self.voice_mode)
        form.addRow("Micro&phone", self.microphone)
        form.addRow("Spea&ker", self.speaker)
        form.addRow("", self.echo_cancellation)
        form.addRow("", self.speak_replies)
        self.stt_model.currentIndexChanged.connect(self._show_language)
        self._show_language()
        return page

    def _show_language(self) -> None:
        multilingual = self.stt_model.currentData() in self._multilingual
        self.language.setEnabled(multilingual)
        self.language.setToolTip("" if multilingual else "This speech model understands English only")

    def _on_tab(self, index: int) -> None:
        if (
            self.tabs.widget(index) is self._voice_page
            and self._device_list is None
            and self._device_source is not None
        ):
            self._device_list = self._device_source()
            self._device_list.changed.connect(self._fill_devices)
            self._fill_devices()

    def _fill_devices(self) -> None:
        devices = self._device_list
        if devices is None:
            return
        for box, kind in ((self.microphone, "input"), (self.speaker, "output")):
            chosen = box.currentData()
            box.blockSignals(True)
            box.clear()
            box.addItem(SYSTEM_DEFAULT, "")
            for device_id, name in devices.choices(kind):
                if device_id:
                    box.addItem(name, device_id)
            if box.findData(chosen) < 0:
                box.addItem(f"{chosen} (not connected)", chosen)
            box.setCurrentIndex(box.findData(chosen))
            box.blockSignals(False)

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
        voice = dataclasses.replace(
            self._settings.voice,
            stt_model_id=self.stt_model.currentData(),
            language=self.language.currentData(),
            voice_id=self.voice.currentData(),
            speaking_rate=round(self.speaking_rate.value(), 2),
            patience_ms=self.patience.value(),
            mode=self.voice_mode.currentData(),
            input_device=self.microphone.currentData(),
            output_device=self.speaker.currentData(),
            echo_cancellation=self.echo_cancellation.isChecked(),
            speak_replies=self.speak_replies.isChecked(),
        )
        return self._settings.replace(
            voice=voice,
            engine=engine,
            remote_url=url,
            remote_model=self.remote_model.text().strip(),
            remote_vision=self.remote_vision.isChecked(),
            model_id=self.model.currentData() or self._settings.model_id,
            n_threads=self.threads.value(),
            n_gpu_layers=self.gpu_layers.value(),
            n_ctx=self.n_ctx.value(),
            default_instructions=self.instructions.toPlainText(),
            theme=self.theme.currentData(),
            generation=generation,
        )

    def collect_api_key(self, base_url: str) -> ApiKeyChange | None:
        """The key typed (or forgotten) for the server at `base_url`; None when nothing changes."""
        key = self.api_key.text().strip()
        if not key and not self.forget_key.isChecked():
            return None
        if not base_url:
            raise ValueError("An API key belongs to a server: enter the server URL too.")
        return ApiKeyChange(base_url, key or None)

    def accept(self) -> None:
        try:
            self.result_settings = self.collect()
            self.api_key_change = self.collect_api_key(self.result_settings.remote_url)
        except ValueError as exc:
            QMessageBox.warning(self, "Settings", str(exc))
            return
        super().accept()
