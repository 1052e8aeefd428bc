"""The main window: sidebar, chat, voice bar, composer, status bar — wired to the `ChatController`
and the `VoiceController`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.catalog.overview import needs_first_run
from app.engines.llm import EngineInfo
from app.paths import default_paths
from app.ui.chat_controller import RELOAD_KEYS, ChatController
from app.ui.chat_view import ChatView
from app.ui.composer import Composer
from app.ui.models_page import ModelsPage
from app.ui.pictures import Picture
from app.ui.settings_dialog import SettingsDialog
from app.ui.sidebar import Sidebar
from app.ui.theme import apply_theme
from app.ui.voice_controller import DeviceFactory, VoiceController
from app.ui.voice_panel import TOGGLE_KEYS, TalkKey, VoicePanel
from app.ui.welcome import WelcomePanel
from app.ui.window_pictures import WindowPictures

if TYPE_CHECKING:
    from app.secrets import Saved
    from app.settings import Settings
    from app.ui.audio_devices import AudioDevices
    from app.ui.settings_dialog import ApiKeyChange

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
NOTICE_BACKGROUND = "#f6d98b"


class MessageBar(QWidget):
    """A dismissable line above the chat for errors and notices: what failed, what to do."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAccessibleName("Notice")
        close = QToolButton(self)
        close.setText("Dismiss")
        close.setAccessibleName("Dismiss notice")
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 10, 6)
        row.addWidget(self.label, 1)
        row.addWidget(close)
        # A plain QWidget ignores a style-sheet background unless asked; without it the dark
        # text would sit on the dark theme's window colour.
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(f"MessageBar {{ background: {NOTICE_BACKGROUND}; }} QLabel {{ color: #3a2a00; }}")
        self.hide()

    def show_notice(self, message: str, hint: str = "") -> None:
        self.label.setText(f"<b>{_escape(message)}</b>" + (f"<br>{_escape(hint)}" if hint else ""))
        self.show()

    def withdraw(self, message: str) -> None:
        """Hide the bar if it still shows `message` (a problem that has since gone away)."""
        if self.isVisible() and self.label.text().startswith(f"<b>{_escape(message)}</b>"):
            self.hide()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class MainWindow(QMainWindow):
    shown = Signal()

    def __init__(self, controller: ChatController, voice_devices: DeviceFactory | None = None) -> None:
        """`voice_devices` opens the microphone and speaker for voice (QtMultimedia by default)."""
        super().__init__()
        self.controller = controller
        self.voice = VoiceController(controller, voice_devices, self)
        self._qt_audio = voice_devices is None  # then unplugging a chosen device is watched for too
        self._engine_problem = ""  # the notice shown when the model last failed to load
        self._audio_devices: AudioDevices | None = None
        self.setWindowTitle(APP_NAME)
        self.resize(1100, 760)
        self.sidebar = Sidebar(self)
        self.chat = ChatView(self, allowed_roots=[ASSETS, default_paths().images])
        self.voice_panel = VoicePanel(self)
        self.composer = Composer(controller.runner, self)
        self.message_bar = MessageBar(self)
        self.talk_key = TalkKey(self)
        self.welcome = WelcomePanel(self)  # first run: no chat model is usable yet
        self.models_page: ModelsPage | None = None  # made when first opened; its downloads outlive closing it
        self._build_layout()
        self._build_status()
        self._build_menu()
        self._connect()
        self.pictures = WindowPictures(self)  # drops on the window, the enlarged view
        self.composer.editor.setFocus()

    # -- construction ---------------------------------------------------------------------

    def _build_layout(self) -> None:
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.message_bar)
        column.addWidget(self.welcome, 1)
        column.addWidget(self.chat, 1)
        column.addWidget(self.voice_panel)
        column.addWidget(self.composer)
        splitter = QSplitter(self)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        self.setCentralWidget(splitter)

    def _build_status(self) -> None:
        self.model_label = QLabel("Starting…", self)
        self.model_label.setAccessibleName("Model status")
        self.load_progress = QProgressBar(self)
        self.load_progress.setAccessibleName("Model loading progress")
        self.load_progress.setMaximumWidth(180)
        self.context_meter = QProgressBar(self)
        self.context_meter.setAccessibleName("Context used")
        self.context_meter.setFormat("%v / %m tokens")
        self.context_meter.setMinimumWidth(200)
        self.context_meter.setToolTip("How much of the model's context window this conversation uses")
        context_label = QLabel("Context", self)
        context_label.setBuddy(self.context_meter)
        self.context_meter.setRange(0, 1)
        self.context_meter.setValue(0)
        bar = self.statusBar()
        bar.addWidget(self.model_label, 1)
        bar.addPermanentWidget(self.load_progress)
        bar.addPermanentWidget(context_label)
        bar.addPermanentWidget(self.context_meter)

    def _build_menu(self) -> None:
        chat = self.menuBar().addMenu("&Chat")
        self.new_action = self._action(
            chat, "&New conversation", QKeySequence.StandardKey.New, lambda: self.controller.open_conversation(None)
        )
        self.regenerate_action = self._action(
            chat, "&Regenerate reply", QKeySequence("Ctrl+R"), lambda: self.voice.when_idle(self.controller.regenerate)
        )
        self.stop_action = self._action(chat, "&Stop reply", None, self._stop_reply)
        self._action(chat, "&Find in conversations", QKeySequence.StandardKey.Find, self._focus_search)
        self._action(chat, "&Export conversation…", QKeySequence("Ctrl+E"), self._export_current)
        self._action(chat, "Conversation &instructions…", QKeySequence("Ctrl+I"), self._instructions_current)
        chat.addSeparator()
        self.voice_action = self._action(chat, "Hands-free &voice", QKeySequence(TOGGLE_KEYS), self._toggle_voice)
        self.voice_action.setCheckable(True)
        chat.addSeparator()
        self._action(chat, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        settings = self.menuBar().addMenu("&Settings")
        self._action(settings, "&Preferences…", QKeySequence("Ctrl+,"), self.open_settings)
        self._action(settings, "&Models…", QKeySequence("Ctrl+Shift+M"), self.open_models)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self._escape)
        QShortcut(QKeySequence("Ctrl+L"), self, self.composer.editor.setFocus)

    def _action(self, menu: Any, text: str, keys: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        if keys is not None:
            action.setShortcut(keys)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _connect(self) -> None:
        c = self.controller
        # Pictures waiting in the composer go with a question asked aloud, as with a typed one.
        self.composer.picturesChanged.connect(lambda: self.voice.set_waiting_pictures(self.composer.pictures()))
        self.voice.picturesUsed.connect(self._on_pictures_spoken_about)
        c.notice.connect(self.message_bar.show_notice)
        c.engineLoading.connect(self._on_loading)
        c.engineReady.connect(self._on_engine_ready)
        c.engineReady.connect(lambda _info: self.show_welcome(False))
        c.profileReady.connect(self._check_first_run)
        self.welcome.openModels.connect(self.open_models)
        c.engineFailed.connect(self._on_engine_failed)
        c.conversationsChanged.connect(lambda convs: self.sidebar.set_conversations(convs, c.current))
        c.searchResults.connect(self.sidebar.set_search_results)
        c.conversationOpened.connect(self._on_opened)
        c.userMessageAdded.connect(self._on_user_message)
        c.sendFailed.connect(self._on_send_failed)
        c.replyStarted.connect(self.chat.begin_reply)
        c.replyDelta.connect(self.chat.append_delta)
        c.contextTrimmed.connect(self.chat.append_message)
        c.replyFinished.connect(self.chat.finish_reply)
        c.busyChanged.connect(self.composer.set_busy)
        c.contextUsage.connect(self._on_usage)
        self.composer.sendRequested.connect(self._send)
        self.composer.stopRequested.connect(c.stop)
        self.sidebar.conversationSelected.connect(c.open_conversation)
        self.sidebar.newRequested.connect(lambda: c.open_conversation(None))
        self.sidebar.searchChanged.connect(c.search)
        self.sidebar.renameRequested.connect(self._rename)
        self.sidebar.deleteRequested.connect(self._delete)
        self.sidebar.exportRequested.connect(self._export)
        self.sidebar.instructionsRequested.connect(self._instructions)
        self.chat.actionRequested.connect(self._on_chat_action)
        c.spokenMessageAdded.connect(self.chat.append_message)
        c.messageUpdated.connect(self.chat.update_message)
        c.messagesTakenBack.connect(self.chat.remove_messages_from)
        v, panel = self.voice, self.voice_panel
        v.stateChanged.connect(self._on_voice_state)
        v.level.connect(panel.set_level)
        v.partial.connect(panel.set_partial)
        v.modeChanged.connect(panel.set_mode)
        v.notice.connect(self.message_bar.show_notice)
        panel.enableRequested.connect(v.set_enabled)
        panel.talkRequested.connect(v.push_to_talk)
        panel.stopRequested.connect(v.interrupt)
        self.talk_key.held.connect(v.push_to_talk)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.talk_key)

    # -- controller → widgets -------------------------------------------------------------

    def _on_loading(self, done: int, total: int, stage: str) -> None:
        self.model_label.setText(stage)
        self.load_progress.show()
        self.load_progress.setRange(0, total if total > 0 else 0)
        if total > 0:
            self.load_progress.setValue(done)

    def _on_pictures_spoken_about(self, used: list[Picture]) -> None:
        """Pictures that went with a spoken message leave the composer (others added since stay)."""
        for picture in used:
            self.composer.strip.remove(picture)

    def _on_engine_ready(self, info: EngineInfo) -> None:
        self.load_progress.hide()
        if self._engine_problem:  # the model (or server) that failed to load now answers: the notice is stale
            self.message_bar.withdraw(self._engine_problem)
            self._engine_problem = ""
        self.composer.set_model_sees(info.vision)
        gpu = f", {info.gpu_layers} layers on GPU" if info.gpu_layers else ""
        fallback = f" (GPU not used: {info.fallback_reason})" if info.fallback_reason else ""
        self.model_label.setText(f"{info.model_name} · {info.backend}{gpu}{fallback} · ready")
        self.model_label.setToolTip(
            f"Model {info.model_id}; chat format {info.chat_format}; context {info.n_ctx} tokens"
        )
        if info.fallback_reason:  # peers fall back to the CPU silently; say why, and what to change
            self.message_bar.show_notice(
                f"{info.model_name} runs on the CPU: {info.fallback_reason}.", info.fallback_hint
            )

    def _on_engine_failed(self, message: str, hint: str) -> None:
        self.load_progress.hide()
        self.model_label.setText("No model loaded")
        if not self.welcome.isVisible():  # on first run the welcome panel already says what to do
            self.message_bar.show_notice(message, hint)
            self._engine_problem = message

    def _on_opened(self, conversation_id: int | None, messages: list[Any]) -> None:
        self.chat.show_messages(messages)
        self.sidebar.select(conversation_id)

    def _on_user_message(self, message: Any) -> None:
        self.composer.clear()
        self.chat.append_message(message)

    def _on_send_failed(self, text: str, pictures: Sequence[object] = ()) -> None:
        if not self.composer.text():
            self.composer.editor.setPlainText(text)
        self.composer.put_back(pictures)

    def _on_voice_state(self, state: str) -> None:
        self.voice_panel.set_state(state)
        self.voice_action.setChecked(state != "off")
        self.talk_key.enabled = state not in ("off", "loading")
        if self._qt_audio and state in ("off", "loading"):
            self._watch_devices(on=state == "loading")

    def _watch_devices(self, on: bool) -> None:
        """Follow the chosen microphone and speaker (not the system default, which voice follows)."""
        profile = self.controller.profile
        if profile is None:
            return
        devices = self.audio_devices()
        voice = profile.settings.voice
        devices.watch("input", (voice.input_device or None) if on else None)
        devices.watch("output", (voice.output_device or None) if on else None)

    def _toggle_voice(self) -> None:
        self.voice.set_enabled(not self.voice.enabled)

    def _on_usage(self, used: int, total: int) -> None:
        self.context_meter.setRange(0, max(total, 1))
        self.context_meter.setValue(min(used, max(total, 1)))

    # -- widgets → controller -------------------------------------------------------------

    # A typed action while a spoken reply is under way interrupts it and goes ahead once it has
    # settled, so the two replies never interleave (VoiceController.when_idle).

    def _send(self, text: str) -> None:
        editing = self.composer.editing_id
        if editing is not None:
            self.composer.leave_edit_mode()  # hides the banner and clears the box
            self.voice.when_idle(lambda: self.controller.edit_and_resend(editing, text))
            return
        self.composer.clear()
        pictures = self.composer.take_pictures()
        self.voice.when_idle(lambda: self._send_or_restore(text, pictures))

    def _send_or_restore(self, text: str, pictures: Sequence[Picture]) -> None:
        if self.controller.busy or self.controller.profile is None:  # it cannot go now: keep the words and pictures
            self._on_send_failed(text, pictures)
        else:
            self.controller.send(text, pictures)

    def _stop_reply(self) -> None:
        """Stop whichever reply is under way: a typed one, or a spoken one (kept as far as heard)."""
        if self.controller.busy:
            self.controller.stop()
        elif self.voice.answering:
            self.voice.interrupt()

    def _escape(self) -> None:
        if self.controller.busy or self.voice.answering:
            self._stop_reply()
        else:
            self.composer.leave_edit_mode()

    def _on_chat_action(self, action: str, message_id: int) -> None:
        if action == "regenerate":
            self.voice.when_idle(self.controller.regenerate)
        elif action == "edit":
            message = self.chat.message(message_id)
            if message is not None:
                self.composer.enter_edit_mode(message_id, message.content)

    def _focus_search(self) -> None:
        self.sidebar.search.setFocus()
        self.sidebar.search.selectAll()

    def _rename(self, conversation_id: int) -> None:
        title, ok = QInputDialog.getText(self, "Rename conversation", "New name:")
        if ok and title.strip():
            self.controller.rename(conversation_id, title.strip())

    def _delete(self, conversation_id: int) -> None:
        answer = QMessageBox.question(
            self, "Delete conversation", "Delete this conversation, all its messages and the pictures only it holds?"
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.controller.delete(conversation_id)

    def _export(self, conversation_id: int) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", "conversation.md", "Markdown (*.md);;JSON (*.json)"
        )
        if path:
            self.controller.export(conversation_id, Path(path))

    def _export_current(self) -> None:
        if self.controller.current is not None:
            self._export(self.controller.current)

    def _instructions_current(self) -> None:
        if self.controller.current is not None:
            self._instructions(self.controller.current)

    def _instructions(self, conversation_id: int) -> None:
        self.controller.conversation(conversation_id).then(self._edit_instructions)

    def _edit_instructions(self, conversation: Any) -> None:
        current = conversation.system_prompt or ""
        text, ok = QInputDialog.getMultiLineText(
            self,
            "Conversation instructions",
            "Instructions for this conversation (leave empty to use the default):",
            current,
        )
        if ok:
            self.controller.set_instructions(conversation.id, text.strip() or None)

    def open_settings(self) -> None:
        profile = self.controller.profile
        if profile is None:
            return
        models = self.controller.chat_models or [(profile.settings.model_id, profile.settings.model_id)]
        backend = self.model_label.text().split(" · ")[1] if " · " in self.model_label.text() else "not loaded"
        devices = self.audio_devices if self._qt_audio else None  # other devices have no list to offer
        dialog = SettingsDialog(profile.settings, models, backend, self, self.voice.speech_models, devices)
        if dialog.exec() and dialog.result_settings is not None:
            new, old = dialog.result_settings, profile.settings
            reconnect = self._save_api_key(dialog.api_key_change, new, old)
            if new.theme != old.theme:
                apply_theme(QApplication.instance(), new.theme)  # type: ignore[arg-type]
                self.controller.apply_settings(new)
                self.controller.open_conversation(self.controller.current)
            else:
                self.controller.apply_settings(new)
            self.voice.apply_settings(old.voice, new.voice)
            if reconnect:
                self.controller.load_engine()

    def _save_api_key(self, change: ApiKeyChange | None, new: Settings, old: Settings) -> bool:
        """Store (or forget) a key typed in Settings off the GUI thread: a keyring can block.

        It runs on the engine's lane, so an engine load queued after it connects with the new key.
        Returns True when the remote engine must reconnect because nothing but the key changed.
        """
        if change is None:
            return False
        job = self.controller.runner.submit("llm", change.apply)
        job.then(self._on_api_key_saved).fail(
            lambda e: self.message_bar.show_notice("The API key could not be saved.", str(e))
        )
        return new.engine == "remote" and all(getattr(new, k) == getattr(old, k) for k in RELOAD_KEYS)

    def _on_api_key_saved(self, saved: Saved | None) -> None:
        if saved is not None and not saved.remembered:
            self.message_bar.show_notice(*saved.notice)

    def open_models(self) -> None:
        """The Models page: one per window, kept while hidden so its downloads carry on."""
        profile = self.controller.profile
        if profile is None:
            return
        if self.models_page is None:
            page = ModelsPage(self.controller.runner, profile.library, lambda: profile.settings, self)
            page.settingsChosen.connect(self._apply_model_settings)
            page.libraryChanged.connect(self.controller.refresh_models)
            self.models_page = page
        self.models_page.refresh()
        self.models_page.show()
        self.models_page.raise_()
        self.models_page.activateWindow()

    def _apply_model_settings(self, new: Settings, load: bool) -> None:
        """Settings from the Models page: a model chosen to use (`load`), or a model's own settings."""
        profile = self.controller.profile
        if profile is None:
            return
        old = profile.settings
        reloads = any(getattr(new, k) != getattr(old, k) for k in RELOAD_KEYS)
        self.controller.apply_settings(new)
        options_changed = new.model_options(new.model_id) != old.model_options(old.model_id)
        if new.engine == "local" and not reloads and (options_changed or (load and self.controller.session is None)):
            self.controller.load_engine()  # the same model, with new settings or after it failed to load
        self.voice.apply_settings(old.voice, new.voice)

    def _check_first_run(self, profile: Any) -> None:
        """Show the welcome panel when no chat model can load without the network."""
        if profile.settings.engine == "local":
            job = self.controller.runner.submit("io", needs_first_run, profile.library)
            job.then(lambda needed: self.show_welcome(needed and self.controller.session is None))

    def show_welcome(self, on: bool) -> None:
        self.welcome.setVisible(on)
        self.chat.setVisible(not on)
        if on:
            self.message_bar.hide()  # "no model" is what the welcome explains

    def audio_devices(self) -> AudioDevices:
        """The computer's microphones and speakers, enumerated the first time they are needed
        (QtMultimedia is not even imported before: the sound system stays untouched until then)."""
        if self._audio_devices is None:
            from app.ui.audio_devices import AudioDevices

            self._audio_devices = AudioDevices(self)
            self._audio_devices.lost.connect(self.voice.device_lost)
        return self._audio_devices

    # -- Qt events ------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.shown.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.talk_key)
        self.controller.stop()  # a typed reply stops first: a spoken one may be waiting on it
        self.voice.shutdown()
        if self.models_page is not None:
            self.models_page.shutdown()  # downloads pause; they resume next time
        self.controller.shutdown()
        super().closeEvent(event)
