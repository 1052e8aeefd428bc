"""The Models page (Ctrl+Shift+M): the catalog grouped by kind, downloads with pause and resume,
importing a local GGUF, removing a model, choosing the one to use, and each model's own settings.

Everything that touches the disk or the network runs on the Runner (`ModelJobs` on the ``fetch``
lane; listing on ``io``); this module only shows what comes back. The page hands chosen settings to
the window through `settingsChosen`, which saves them and reloads the model when needed.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.catalog.catalog import ModelEntry
from app.catalog.library import ModelLibrary
from app.catalog.overview import (
    GROUPS,
    ModelRow,
    ProgressReport,
    fit_rule,
    megabytes,
    model_rows,
    percent,
    total_memory,
)
from app.engines.worker import LoadCrashes
from app.settings import Settings
from app.ui.chat_controller import describe
from app.ui.model_jobs import IMPORT_JOB, Job, ModelJobs
from app.ui.model_settings_form import ModelSettingsForm
from app.ui.tasks import Runner

COLUMNS = ("Model", "Size", "Licence", "Can do", "Fits", "State")
COLUMN_WIDTHS = (0, 75, 95, 115, 55, 150)  # the name takes the rest; long cells have tooltips
STATE_COLUMN = COLUMNS.index("State")
ERROR_STYLE = "background: #f8d7d3; color: #5a1610; padding: 6px; border-radius: 4px;"
INFO_STYLE = "background: #dcefdc; color: #173d17; padding: 6px; border-radius: 4px;"
USABLE_KINDS = ("chat", "stt", "tts")
STALLED_S = 3.0


class ModelsPage(QDialog):
    settingsChosen = Signal(object, bool)  # the new Settings; True when a model was chosen to load now
    libraryChanged = Signal()  # a model was imported or removed

    def __init__(
        self,
        runner: Runner,
        library: ModelLibrary,
        settings: Callable[[], Settings],
        parent: QWidget | None = None,
        memory: int | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setAccessibleName("Models")
        self.resize(1200, 680)
        self.runner = runner
        self.library = library
        self._settings = settings
        self.memory = total_memory() if memory is None else memory
        self.jobs = ModelJobs(runner, library, self)
        self.rows: dict[str, ModelRow] = {}
        self.crashes: dict[str, str] = {}  # model id → why it is not loaded automatically any more
        self.items: dict[str, QTreeWidgetItem] = {}
        self._select_after_refresh: str | None = None
        self._changed: set[str] = set()  # jobs whose progress is not on screen yet
        self._redraw = QTimer(self)  # progress is drawn at most ten times a second
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(100)
        self._redraw.timeout.connect(self._draw_later)
        self._tick = QTimer(self)  # while downloads run, so a stalled one says so
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._on_tick)
        self._build()
        self._connect()

    # -- construction ---------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.intro = QLabel(self)
        self.intro.setWordWrap(True)
        self.notice = QLabel(self)
        self.notice.setWordWrap(True)
        self.notice.setAccessibleName("Models notice")
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.hide()
        splitter = QSplitter(self)
        splitter.addWidget(self._build_tree())
        splitter.addWidget(self._build_details())
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([780, 420])
        layout.addWidget(self.intro)
        layout.addWidget(self.notice)
        layout.addWidget(splitter, 1)
        layout.addLayout(self._build_bottom())

    def _build_tree(self) -> QTreeWidget:
        self.tree = QTreeWidget(self)
        self.tree.setAccessibleName("Model catalog")
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in enumerate(COLUMN_WIDTHS):
            if width:
                self.tree.setColumnWidth(column, width)
        return self.tree

    def _build_details(self) -> QWidget:
        panel = QFrame(self)
        panel.setMinimumWidth(360)
        panel.setMaximumWidth(480)
        column = QVBoxLayout(panel)
        column.setContentsMargins(8, 0, 0, 0)
        self.title = QLabel(panel)
        title_font = QFont(self.title.font())
        title_font.setPointSizeF(title_font.pointSizeF() * 1.25)
        title_font.setBold(True)
        self.title.setFont(title_font)
        self.title.setWordWrap(True)
        self.description = QLabel(panel)
        self.description.setWordWrap(True)
        self.facts = QLabel(panel)
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar(panel)
        self.progress.setAccessibleName("Download progress")
        self.progress.setRange(0, 1000)
        self.stage = QLabel(panel)
        self.stage.setAccessibleName("Download stage")
        self.stage.setWordWrap(True)
        self.error = QLabel(panel)
        self.error.setAccessibleName("Model error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for widget in (self.title, self.description, self.facts, self.progress, self.stage, self.error):
            column.addWidget(widget)
        column.addLayout(self._build_buttons())
        self.own = ModelSettingsForm(panel)
        self.own.saveRequested.connect(self._save_own)
        column.addWidget(self.own)
        column.addStretch(1)
        return panel

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.download_button = self._button("&Download", self._download)
        self.resume_button = self._button("&Resume", self._download)
        self.pause_button = self._button("&Pause", self._pause)
        self.cancel_button = self._button("Cancel download", self._cancel)
        self.use_button = self._button("&Use this model", self._use)
        self.remove_button = self._button("Re&move…", self._confirm_remove)
        for button in self._state_buttons():
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.remove_button)
        return row

    def _button(self, text: str, slot: Callable[[], object]) -> QPushButton:
        button = QPushButton(text, self)
        button.setAutoDefault(False)
        button.clicked.connect(slot)
        return button

    def _build_bottom(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.import_button = self._button("&Import a GGUF file…", self._choose_import)
        self.reference = QCheckBox("Use the file where it is (do not copy it)", self)
        self.reference.setAccessibleName("Import by reference")
        close = self._button("Close", self.close)
        row.addWidget(self.import_button)
        row.addWidget(self.reference)
        row.addStretch(1)
        row.addWidget(close)
        return row

    def _connect(self) -> None:
        self.tree.currentItemChanged.connect(lambda *_: self._show_details())
        self.jobs.progressed.connect(self._on_progress)
        self.jobs.finished.connect(self._on_ended)
        self.jobs.stopped.connect(self._on_ended)
        self.jobs.removed.connect(self._on_removed)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.imported.connect(self._on_imported)

    # -- listing --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the library again (off the GUI thread) and show it."""
        settings = self._settings()
        self._show_intro(settings)
        job = self.runner.submit("io", _rows_and_crashes, self.library, settings, self.memory)
        job.then(self._show_rows).fail(lambda error: self._show_notice(*describe(error)))

    def _show_intro(self, settings: Settings) -> None:
        memory = megabytes(self.memory) if self.memory > 0 else "an unknown amount"
        self.intro.setText(
            f"Choose the models Hearth runs on this computer. Downloads are checked (size and sha256) before "
            f"they are used. This computer has {memory} of memory. {fit_rule(settings.n_ctx)}"
        )

    def _show_rows(self, found: tuple[list[ModelRow], dict[str, str]]) -> None:
        rows, self.crashes = found
        selected = self._select_after_refresh or self.selected_id()
        self._select_after_refresh = None
        self.rows = {row.entry.id: row for row in rows}
        self.tree.blockSignals(True)
        self.tree.clear()
        self.items = {}
        for group in GROUPS:
            members = [row for row in rows if row.group == group]
            if members:
                self._add_group(group, members)
        self.tree.expandAll()
        self.tree.blockSignals(False)
        target = self.items.get(selected or "") or next(iter(self.items.values()), None)
        if target is not None:
            self.tree.setCurrentItem(target)
        self._show_details()

    def _add_group(self, group: str, rows: list[ModelRow]) -> None:
        heading = QTreeWidgetItem(self.tree, [group])
        heading.setFirstColumnSpanned(True)
        heading.setFlags(Qt.ItemFlag.ItemIsEnabled)
        font = QFont(heading.font(0))
        font.setBold(True)
        heading.setFont(0, font)
        for row in rows:
            cells = self._cells(row)
            item = QTreeWidgetItem(heading, cells)
            item.setData(0, Qt.ItemDataRole.UserRole, row.entry.id)
            for column, text in enumerate(cells):
                item.setToolTip(column, text)
            item.setToolTip(0, row.entry.description or row.entry.name)
            item.setToolTip(COLUMNS.index("Fits"), self._fit_text(row))
            item.setToolTip(STATE_COLUMN, self._state_tip(row.entry.id))
            self.items[row.entry.id] = item

    def _cells(self, row: ModelRow) -> list[str]:
        size = megabytes(row.entry.total_size) if row.entry.total_size else "?"
        fits = {True: "fits", False: "too big", None: "?"}[row.fits]
        return [row.entry.name, size, row.entry.licence, row.capabilities, fits, self.state_text(row.entry.id)]

    def selected_id(self) -> str | None:
        item = self.tree.currentItem()
        value = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        return value if isinstance(value, str) else None

    def select(self, model_id: str) -> None:
        item = self.items.get(model_id)
        if item is not None:
            self.tree.setCurrentItem(item)

    def state_text(self, model_id: str) -> str:
        """What the State column says: a job's progress, a failure, or what is on disk."""
        job = self.jobs.job(model_id)
        if job is not None:
            return _job_state(job)
        if model_id in self.jobs.errors:
            return "failed"
        row = self.rows.get(model_id)
        if row is None:
            return ""
        if model_id in self.crashes:
            return f"{row.state} · crashed while loading"
        return f"{row.state} · in use" if row.in_use and row.here else row.state

    def _state_tip(self, model_id: str) -> str:
        """A failed model's row says why when pointed at: the error and what to do."""
        failure = self.jobs.errors.get(model_id)
        return " ".join(failure) if failure is not None else self.state_text(model_id)

    # -- details of the selected model ----------------------------------------------------

    def _show_details(self) -> None:
        row = self.rows.get(self.selected_id() or "")
        for label in (self.title, self.description, self.facts):
            label.setVisible(row is not None)
        if row is None:
            self.title.setText("")
            for widget in (self.progress, self.stage, self.error, self.own):
                widget.hide()
            self._show_buttons(None)
            return
        entry = row.entry
        self.title.setText(entry.name)
        self.description.setText(entry.description)
        self.description.setVisible(bool(entry.description))
        self.facts.setText(self._facts(row))
        self._show_job(row)
        self._show_error(entry.id)
        self._show_buttons(row)
        self._show_own(row)

    def _facts(self, row: ModelRow) -> str:
        entry = row.entry
        size = megabytes(entry.total_size) if entry.total_size else "unknown size"
        lines = [
            f"<b>{html.escape(size)}</b> · licence {html.escape(entry.licence)} · {html.escape(row.capabilities)}",
            html.escape(self._fit_text(row)),
            f"Source: {html.escape(_source_text(entry))}",
        ]
        if row.here:
            lines.append(f"File: {html.escape(row.path)}")
        return "<br>".join(lines)

    def _fit_text(self, row: ModelRow) -> str:
        if row.needed is None or self.memory <= 0:
            return "Memory needed: unknown."
        verdict = "fits" if row.fits else "does not fit"
        return f"Needs about {megabytes(row.needed)} of this computer's {megabytes(self.memory)}: {verdict}."

    def _show_job(self, row: ModelRow) -> None:
        job = self.jobs.job(row.entry.id)
        report = job.report if job is not None else None
        total = row.entry.total_size or 0
        if job is not None and report is not None:
            self._set_progress(report.done, report.total, _speed_text(report))
            self.stage.setText(_stage_text(job))
        elif job is not None:
            self._set_progress(row.partial, total, "")
            self.stage.setText(_stage_text(job))
        elif row.resumable:
            self._set_progress(row.partial, total, "")
            self.stage.setText("Paused. Resume continues from here; Cancel download deletes what has arrived.")
        else:
            self.progress.hide()
            self.stage.hide()
            return
        self.progress.show()
        self.stage.show()

    def _set_progress(self, done: int, total: int, speed: str) -> None:
        if total <= 0:
            self.progress.setRange(0, 0)  # busy: the size is not known yet
            self.progress.setFormat(megabytes(done))
            return
        self.progress.setRange(0, 1000)
        self.progress.setValue(min(1000, int(1000 * done / total)))
        self.progress.setFormat(f"{percent(done, total)} · {megabytes(done)} of {megabytes(total)}{speed}")

    def _show_error(self, model_id: str) -> None:
        failure = self.jobs.errors.get(model_id)
        if failure is None and model_id in self.crashes:
            failure = (
                f"This model stopped the engine twice in a row while loading: {self.crashes[model_id]}",
                "Hearth no longer loads it by itself. Click Use this model to try once more.",
            )
        self.error.setVisible(failure is not None)
        if failure is not None:
            self.error.setText(_message_html(*failure))

    def _state_buttons(self) -> tuple[QPushButton, ...]:
        """The buttons shown or hidden by the chosen model's state (Remove is always there)."""
        return (self.download_button, self.resume_button, self.pause_button, self.cancel_button, self.use_button)

    def _show_buttons(self, row: ModelRow | None) -> None:
        if row is None:
            for button in self._state_buttons():
                button.hide()
            self.remove_button.setEnabled(False)
            return
        job = self.jobs.job(row.entry.id)
        idle, running = job is None, job is not None and job.phase in ("waiting", "running")
        self.download_button.setVisible(idle and not row.here and not row.resumable)
        self.download_button.setEnabled(not row.imported)
        self.download_button.setToolTip(
            "Copies it out of the installed package; nothing is downloaded." if row.packaged else ""
        )
        self.resume_button.setVisible(idle and row.resumable)
        self.pause_button.setVisible(running and row.entry.source.type == "url")  # only a URL download can resume
        self.cancel_button.setVisible(running or (idle and row.resumable))
        self.use_button.setVisible(row.entry.kind in USABLE_KINDS)
        self.use_button.setEnabled(idle and row.here)
        self.remove_button.setEnabled(idle and (row.here or row.imported) and not row.in_use)
        self.remove_button.setToolTip("Choose another model first: this one is in use." if row.in_use else "")

    def _show_own(self, row: ModelRow) -> None:
        self.own.setVisible(row.entry.kind == "chat")
        if row.entry.kind == "chat":
            projectors = [
                (other.entry.id, other.entry.name if other.here else f"{other.entry.name} (not here yet)")
                for other in self.rows.values()
                if other.entry.kind == "vision-projector"
            ]
            self.own.show_model(row.entry, self._settings(), projectors)

    # -- progress and results -------------------------------------------------------------

    def _on_tick(self) -> None:
        if not self.jobs.jobs:
            self._tick.stop()
        selected = self.selected_id()
        if selected is not None and selected in self.jobs.jobs:
            self._show_details()

    def _on_progress(self, key: str) -> None:
        """Draw a change at once, unless one was drawn in the last 100 ms: then when they are up."""
        if self.jobs.jobs and not self._tick.isActive():
            self._tick.start()
        self._changed.add(key)
        if not self._redraw.isActive():
            self._draw_later()

    def _draw_later(self) -> None:
        changed, self._changed = self._changed, set()
        for key in changed:
            self._draw_job(key)
        if changed:
            self._redraw.start()

    def _draw_job(self, key: str) -> None:
        if key == IMPORT_JOB:
            job = self.jobs.job(key)
            if job is not None and job.report is not None:
                self._show_notice(
                    f"Importing: {_stage_text(job)} {percent(job.report.done, job.report.total)}", "", INFO_STYLE
                )
            return
        item = self.items.get(key)
        if item is not None:
            item.setText(STATE_COLUMN, self.state_text(key))
            item.setToolTip(STATE_COLUMN, self._state_tip(key))
        if key == self.selected_id():
            self._show_details()

    def _on_ended(self, key: str) -> None:
        self._changed.discard(key)
        self._draw_job(key)  # the job is over: drawn at once, and the files are read again
        self.refresh()

    def _on_removed(self, key: str) -> None:
        self._on_ended(key)
        self.libraryChanged.emit()

    def _on_failed(self, key: str, message: str, hint: str) -> None:
        if key == IMPORT_JOB:
            self._show_notice(message, hint)
            return
        self._on_ended(key)

    def _on_imported(self, entry: ModelEntry) -> None:
        self._show_notice(
            f"Imported {entry.name}.", "Choose it below and press Use this model to chat with it.", INFO_STYLE
        )
        self._select_after_refresh = entry.id
        self.libraryChanged.emit()
        self.refresh()

    def _show_notice(self, message: str, hint: str, style: str = ERROR_STYLE) -> None:
        self.notice.setStyleSheet(style)
        self.notice.setText(_message_html(message, hint))
        self.notice.show()

    # -- actions --------------------------------------------------------------------------

    def _selected_entry(self) -> ModelEntry | None:
        row = self.rows.get(self.selected_id() or "")
        return row.entry if row is not None else None

    def _download(self) -> None:
        entry = self._selected_entry()
        if entry is not None:
            self.jobs.download(entry)

    def _pause(self) -> None:
        model_id = self.selected_id()
        if model_id is not None:
            self.jobs.pause(model_id)

    def _cancel(self) -> None:
        entry = self._selected_entry()
        if entry is not None:
            self.jobs.cancel(entry)

    def _use(self) -> None:
        entry = self._selected_entry()
        if entry is None:
            return
        settings = self._settings()
        if entry.kind == "chat" and entry.id in self.crashes:  # asked for again: it may load once more
            root = self.library.paths.root
            self.runner.submit("io", lambda: LoadCrashes.in_folder(root).forget(entry.id)).then(lambda _: self._use())
            del self.crashes[entry.id]
            return
        if entry.kind == "chat":
            new = settings.replace(model_id=entry.id, engine="local")
        elif entry.kind == "stt":
            new = settings.replace(voice=dataclasses.replace(settings.voice, stt_model_id=entry.id))
        else:
            new = settings.replace(voice=dataclasses.replace(settings.voice, voice_id=entry.id))
        self.settingsChosen.emit(new, entry.kind == "chat")
        self.refresh()

    def _confirm_remove(self) -> None:
        row = self.rows.get(self.selected_id() or "")
        if row is None:
            return
        answer = QMessageBox.question(self, "Remove model", _removal_question(row))
        if answer == QMessageBox.StandardButton.Yes:
            self.jobs.remove(row.entry)

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a GGUF model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.import_file(Path(path), copy=not self.reference.isChecked())

    def import_file(self, path: Path, copy: bool = True) -> None:
        self._show_notice(f"Importing {path.name}…", "The file is checked before it is added.", INFO_STYLE)
        self.jobs.import_file(path, copy)

    def _save_own(self) -> None:
        model_id = self.selected_id()
        if model_id is None:
            return
        self.settingsChosen.emit(self._settings().with_model_overrides(model_id, self.own.overrides()), False)
        self._show_notice("Saved the settings for this model.", "They apply the next time it loads.", INFO_STYLE)
        self.refresh()

    def shutdown(self) -> None:
        """Pause every download (the window is closing); each resumes where it stopped."""
        self.jobs.shutdown()


def _rows_and_crashes(library: ModelLibrary, settings: Settings, memory: int) -> tuple[list[ModelRow], dict[str, str]]:
    return model_rows(library, settings, memory), LoadCrashes.in_folder(library.paths.root).blocked_reasons()


def _job_state(job: Job) -> str:
    if job.phase == "waiting":
        return "waiting"
    if job.phase == "pausing":
        return "pausing…"
    if job.phase == "cancelling":
        return "cancelling…"
    report = job.report
    if report is None:
        return "starting…"
    if _checking(report):
        return "checking"
    return f"{report.stage.split(' ')[0].lower()} {percent(report.done, report.total)}"


def _checking(report: ProgressReport) -> bool:
    """The size and sha256 check: a stage of its own, or the moment every byte is in (a download
    hashes as it goes, so only the comparison is left)."""
    complete = report.total > 0 and report.done >= report.total
    return report.stage.startswith("Verifying") or (complete and report.stage.startswith(("Downloading", "Copying")))


def _speed_text(report: ProgressReport) -> str:
    """The speed, or how long nothing has arrived once the transfer has stalled."""
    quiet = time.monotonic() - report.at
    if quiet >= STALLED_S and 0 < report.done < report.total:
        return f" · nothing for {quiet:.0f} s"
    return f" · {megabytes(int(report.rate))}/s" if report.rate else ""


def _stage_text(job: Job) -> str:
    report = job.report
    if job.phase != "running" or report is None:
        return _job_state(job).capitalize()
    if _checking(report):
        return "Checking size and sha256…"
    return report.stage.replace(".part", "") + "…"


def _source_text(entry: ModelEntry) -> str:
    source = entry.source
    if source.type == "url":
        return f"download from {source.url}"
    if source.type == "imported":
        return f"your file {source.path}" if source.path else "imported, copied into Hearth's folder"
    packages = list(dict.fromkeys(part.package for part in source.parts))
    named = f"the package {packages[0]}" if len(packages) == 1 else f"{len(packages)} packages ({packages[0]} …)"
    return f"{named}, copied when installed, else downloaded"


def _removal_question(row: ModelRow) -> str:
    entry = row.entry
    if entry.source.type == "imported" and entry.source.path:
        return f"Forget {entry.name}? Your file {entry.source.path} stays where it is."
    if entry.source.type == "imported":
        return f"Remove {entry.name} and delete Hearth's copy of it ({row.path})?"
    size = megabytes(entry.total_size) if entry.total_size else "its files"
    return f"Remove {entry.name} and delete its files ({size})? You can download it again later."


def _message_html(message: str, hint: str) -> str:
    return f"<b>{html.escape(message)}</b>" + (f"<br>{html.escape(hint)}" if hint else "")
