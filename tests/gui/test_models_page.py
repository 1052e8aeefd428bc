"""The Models page: the real page, a real ModelLibrary in the test's data folder, and a catalog whose
downloads come from a real HTTP server on 127.0.0.1 (tests/catalog/helpers.py)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from app.catalog.catalog import Catalog, ModelEntry
from app.catalog.library import ModelLibrary
from app.catalog.overview import ProgressRelay, ProgressReport, Throughput, needs_first_run
from app.catalog.transfer import partial_path
from app.paths import DataPaths
from app.runtime import Profile, load_engine
from app.settings import ModelOverrides, Settings, load_settings
from app.ui.chat_controller import ChatController
from app.ui.main_window import MainWindow
from app.ui.model_jobs import Job
from app.ui.models_page import STATE_COLUMN, ModelsPage, _job_state, _stage_text
from app.ui.tasks import Runner
from tests.catalog.helpers import Served, serve, sha256, url_entry
from tests.conftest import require
from tests.fixtures.tiny_gguf import write_tiny_llama
from tests.gui.window_kit import OFFSCREEN_NOISE, WAIT_MS

# The offscreen platform also cannot raise a window above others; that says nothing about Hearth.
pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE, "does not support raise")

DATA = os.urandom(3 * 1024 * 1024 + 321)
STALL_AT = 1_000_000
GIB = 2**30


class Pages:
    """Builds Models pages over a real library in the test's data folder, and closes them after."""

    def __init__(self, qtbot: QtBot, home: Path) -> None:
        self.qtbot = qtbot
        self.paths = DataPaths(home).ensure()
        self.settings = Settings()
        self.chosen: list[tuple[Settings, bool]] = []
        self.runners: list[Runner] = []
        self.pages: list[ModelsPage] = []

    def __call__(self, *entries: ModelEntry) -> ModelsPage:
        runner = Runner()
        self.runners.append(runner)
        library = ModelLibrary(self.paths, Catalog(tuple(entries)))
        page = ModelsPage(runner, library, lambda: self.settings, memory=16 * GIB)
        page.settingsChosen.connect(self._chosen)
        self.qtbot.addWidget(page)
        self.pages.append(page)
        page.show()
        page.refresh()
        self.qtbot.waitUntil(lambda: len(page.rows) == len(page.library.entries()), timeout=WAIT_MS)
        return page

    def _chosen(self, settings: Settings, load: bool) -> None:
        self.settings = settings
        self.chosen.append((settings, load))

    def close(self) -> None:
        for page in self.pages:
            page.shutdown()
        for runner in self.runners:
            runner.shutdown(wait=True)


@pytest.fixture
def pages(qtbot: QtBot, hearth_home: Path) -> Iterator[Pages]:
    factory = Pages(qtbot, hearth_home)
    yield factory
    factory.close()


def click(qtbot: QtBot, button: QPushButton) -> None:
    """Click the button once it is there to click (progress is drawn up to ten times a second)."""
    qtbot.waitUntil(lambda: button.isVisible() and button.isEnabled(), timeout=WAIT_MS)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_state(qtbot: QtBot, page: ModelsPage, model_id: str, test: Callable[[str], bool]) -> None:
    qtbot.waitUntil(lambda: test(page.state_text(model_id)), timeout=WAIT_MS)


def reports_of(page: ModelsPage, model_id: str) -> list[ProgressReport]:
    """Every progress report the page shows for a model, collected as they arrive."""
    seen: list[ProgressReport] = []

    def collect(key: str) -> None:
        job = page.jobs.job(key)
        if key == model_id and job is not None and job.report is not None:
            seen.append(job.report)

    page.jobs.progressed.connect(collect)
    return seen


def wait_received(qtbot: QtBot, page: ModelsPage, model_id: str, count: int) -> None:
    """Until the download of `model_id` has written at least `count` bytes."""

    def received() -> bool:
        job = page.jobs.job(model_id)
        return job is not None and job.report is not None and job.report.done >= count

    qtbot.waitUntil(received, timeout=WAIT_MS)


@contextlib.contextmanager
def stalled_download(qtbot: QtBot, pages: Pages, served: Served) -> Iterator[tuple[ModelsPage, ModelEntry, str]]:
    """The page downloading from a loopback server that has sent `STALL_AT` bytes and now waits
    for `served.release`; yields the page, the entry and the server's URL."""
    with serve(served) as url:
        entry = url_entry(DATA, url)
        page = pages(entry)
        click(qtbot, page.download_button)
        wait_received(qtbot, page, entry.id, STALL_AT)
        yield page, entry, url


# -- downloads -------------------------------------------------------------------------------


def test_download_shows_progress_then_checks_and_is_here(qtbot: QtBot, pages: Pages) -> None:
    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        page = pages(entry)
        assert page.state_text(entry.id) == "not here"
        seen = reports_of(page, entry.id)
        with qtbot.waitSignal(page.jobs.finished, timeout=WAIT_MS):
            click(qtbot, page.download_button)
    wait_state(qtbot, page, entry.id, lambda state: state == "here")
    assert seen and all(report.stage == f"Downloading {entry.file}" and report.total == len(DATA) for report in seen)
    assert seen[-1].done == len(DATA)  # the last report before the check is never lost
    assert served.ranges == [None]
    assert page.library.status(entry) == "verified"
    assert (page.library.paths.models / entry.file).read_bytes() == DATA
    assert page.use_button.isEnabled() and not page.progress.isVisible()


def test_pause_keeps_the_partial_and_resume_continues_it_with_a_range_request(qtbot: QtBot, pages: Pages) -> None:
    served = Served(DATA, stall_at=STALL_AT)
    with stalled_download(qtbot, pages, served) as (page, entry, url):
        qtbot.waitUntil(lambda: page.progress.isVisible() and "MB" in page.progress.format(), timeout=WAIT_MS)
        with qtbot.waitSignal(page.jobs.stopped, timeout=WAIT_MS):
            click(qtbot, page.pause_button)
            served.release.set()  # more bytes arrive; the download stops before the next chunk
        wait_state(qtbot, page, entry.id, lambda state: state.startswith("paused at"))
        kept = page.library.partial_bytes(entry)
        assert STALL_AT <= kept < len(DATA)
        assert page.resume_button.isVisible() and page.cancel_button.isVisible()
        with qtbot.waitSignal(page.jobs.finished, timeout=WAIT_MS):
            click(qtbot, page.resume_button)
    assert served.ranges == [None, f"bytes={kept}-"]
    wait_state(qtbot, page, entry.id, lambda state: state == "here")
    assert (page.library.paths.models / entry.file).read_bytes() == DATA


def test_cancel_deletes_what_has_arrived(qtbot: QtBot, pages: Pages) -> None:
    served = Served(DATA, stall_at=STALL_AT)
    with stalled_download(qtbot, pages, served) as (page, entry, url):
        with qtbot.waitSignal(page.jobs.stopped, timeout=WAIT_MS):
            click(qtbot, page.cancel_button)
            served.release.set()
    qtbot.waitUntil(lambda: page.download_button.isVisible() and not page.resume_button.isVisible(), timeout=WAIT_MS)
    assert page.state_text(entry.id) == "not here"
    assert page.library.partial_bytes(entry) == 0


def test_a_download_cancelled_while_it_waits_its_turn_never_starts(qtbot: QtBot, pages: Pages) -> None:
    first, second = Served(DATA, stall_at=STALL_AT), Served(DATA)
    with serve(first) as first_url, serve(second) as second_url:
        page = pages(url_entry(DATA, first_url, "first"), url_entry(DATA, second_url, "second"))
        page.select("first")
        click(qtbot, page.download_button)
        wait_received(qtbot, page, "first", STALL_AT)
        page.select("second")
        click(qtbot, page.download_button)
        assert page.state_text("second") == "waiting"  # one download at a time
        click(qtbot, page.cancel_button)
        assert page.state_text("second") == "cancelling…"
        with qtbot.waitSignal(page.jobs.stopped, timeout=WAIT_MS, check_params_cb=lambda key: key == "second"):
            first.release.set()
        wait_state(qtbot, page, "first", lambda state: state == "here")
    assert second.ranges == []
    assert page.state_text("second") == "not here"


def test_a_wrong_checksum_is_refused_and_the_model_is_not_usable(qtbot: QtBot, pages: Pages) -> None:
    with serve(Served(DATA)) as url:
        entry = url_entry(DATA, url, sha256=sha256(b"a different file"))
        page = pages(entry)
        with qtbot.waitSignal(page.jobs.failed, timeout=WAIT_MS) as failed:
            click(qtbot, page.download_button)
    assert "sha256" in failed.args[1]
    wait_state(qtbot, page, entry.id, lambda state: state == "failed")
    assert page.error.isVisible() and "sha256" in page.error.text()
    assert not page.use_button.isEnabled()
    assert not page.library.is_present(entry)
    assert not partial_path(page.library.paths.downloads, entry).exists()


def test_a_truncated_file_on_the_server_is_refused(qtbot: QtBot, pages: Pages) -> None:
    with serve(Served(DATA[:-1000])) as url:
        entry = url_entry(DATA, url)
        page = pages(entry)
        with qtbot.waitSignal(page.jobs.failed, timeout=WAIT_MS) as failed:
            click(qtbot, page.download_button)
    assert "bytes" in failed.args[1] and "catalog" in failed.args[1]
    wait_state(qtbot, page, entry.id, lambda state: state == "failed")
    assert failed.args[1] in page.items[entry.id].toolTip(STATE_COLUMN)  # the row says why
    assert not page.library.is_present(entry)


def test_server_gone_mid_download_keeps_the_partial_and_resumes_later(qtbot: QtBot, pages: Pages) -> None:
    served = Served(DATA, stall_at=STALL_AT, hang_up=True)
    with stalled_download(qtbot, pages, served) as (page, entry, url):
        pass  # the server stays stalled while it is closed
    with qtbot.waitSignal(page.jobs.failed, timeout=WAIT_MS) as failed:
        served.release.set()  # the connection drops, and nothing answers at that address any more
    assert failed.args[1].startswith("Cannot reach 127.0.0.1")
    assert "resumes" in failed.args[2]
    wait_state(qtbot, page, entry.id, lambda state: state == "failed")
    assert "Cannot reach" in page.error.text()
    assert page.library.partial_bytes(entry) == STALL_AT  # nothing lost
    again = Served(DATA)
    with serve(again, port=urlsplit(url).port or 0):
        with qtbot.waitSignal(page.jobs.finished, timeout=WAIT_MS):
            click(qtbot, page.resume_button)
    assert again.ranges == [f"bytes={STALL_AT}-"]
    wait_state(qtbot, page, entry.id, lambda state: state == "here")
    assert not page.error.isVisible()


def test_too_little_disk_space_is_said_before_anything_is_downloaded(qtbot: QtBot, pages: Pages) -> None:
    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url, size=10**15)  # a petabyte: no test machine has that free
        page = pages(entry)
        with qtbot.waitSignal(page.jobs.failed, timeout=WAIT_MS) as failed:
            click(qtbot, page.download_button)
    assert "is free on the disk" in failed.args[1] and "Free up space" in failed.args[2]
    assert served.ranges == []
    wait_state(qtbot, page, entry.id, lambda state: state == "failed")
    assert page.rows[entry.id].fits is False  # a petabyte does not fit in memory either


# -- import, remove, use ---------------------------------------------------------------------


def test_import_a_gguf_through_the_file_dialog(
    qtbot: QtBot, pages: Pages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = write_tiny_llama(tmp_path / "My-Tiny.gguf")
    page = pages()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(gguf), ""))
    with qtbot.waitSignal(page.jobs.imported, timeout=WAIT_MS) as done:
        click(qtbot, page.import_button)
    entry = done.args[0]
    wait_state(qtbot, page, entry.id, lambda state: state == "imported")
    assert page.selected_id() == entry.id
    assert (page.library.paths.models / entry.file).read_bytes() == gguf.read_bytes()  # a copy
    assert "Imported" in page.notice.text()
    assert page.use_button.isEnabled()


def test_a_file_that_is_not_a_gguf_is_refused_with_a_clear_error(qtbot: QtBot, pages: Pages, tmp_path: Path) -> None:
    notes = tmp_path / "notes.gguf"
    notes.write_text("These are my notes, not a model.\n")
    page = pages()
    with qtbot.waitSignal(page.jobs.failed, timeout=WAIT_MS) as failed:
        page.import_file(notes)
    assert failed.args[1].startswith("notes.gguf is not a GGUF model")
    assert page.notice.isVisible() and "is not a GGUF model" in page.notice.text()
    assert page.library.imported() == []


def test_removing_an_imported_reference_forgets_it_and_keeps_the_file(
    qtbot: QtBot, pages: Pages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = write_tiny_llama(tmp_path / "mine.gguf")
    page = pages()
    with qtbot.waitSignal(page.jobs.imported, timeout=WAIT_MS) as done:
        page.import_file(gguf, copy=False)
    entry = done.args[0]
    wait_state(qtbot, page, entry.id, lambda state: state == "imported")
    asked: list[str] = []
    answers = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])

    def question(parent: Any, title: str, text: str, *args: Any) -> QMessageBox.StandardButton:
        asked.append(text)
        return next(answers)

    monkeypatch.setattr(QMessageBox, "question", question)
    click(qtbot, page.remove_button)  # "No": nothing happens
    assert page.library.imported() == [entry]
    with qtbot.waitSignal(page.libraryChanged, timeout=WAIT_MS):
        click(qtbot, page.remove_button)
    assert "stays where it is" in asked[0]
    qtbot.waitUntil(lambda: entry.id not in page.rows, timeout=WAIT_MS)
    assert gguf.is_file() and page.library.imported() == []


def test_removing_a_downloaded_model_deletes_its_file(
    qtbot: QtBot, pages: Pages, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(Served(DATA)) as url:
        entry = url_entry(DATA, url)
        page = pages(entry)
        with qtbot.waitSignal(page.jobs.finished, timeout=WAIT_MS):
            click(qtbot, page.download_button)
    wait_state(qtbot, page, entry.id, lambda state: state == "here")
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(page.jobs.removed, timeout=WAIT_MS):
        click(qtbot, page.remove_button)
    wait_state(qtbot, page, entry.id, lambda state: state == "not here")
    assert not (page.library.paths.models / entry.file).exists()


def test_use_this_model_and_its_own_settings(qtbot: QtBot, pages: Pages, tmp_path: Path) -> None:
    page = pages()
    with qtbot.waitSignal(page.jobs.imported, timeout=WAIT_MS) as done:
        page.import_file(write_tiny_llama(tmp_path / "tiny.gguf"))
    entry = done.args[0]
    wait_state(qtbot, page, entry.id, lambda state: state == "imported")
    assert not page.remove_button.toolTip()
    click(qtbot, page.use_button)
    chosen, load = pages.chosen[-1]
    assert (chosen.model_id, chosen.engine, load) == (entry.id, "local", True)
    wait_state(qtbot, page, entry.id, lambda state: state == "imported · in use")
    assert not page.remove_button.isEnabled()  # the model in use cannot be removed
    assert page.own.isVisible() and page.own.ctx.text().startswith("as in Settings")
    page.own.ctx.setValue(2048)
    page.own.gpu.setValue(0)
    page.own.threads.setValue(1)
    page.own.chat_format.setCurrentIndex(page.own.chat_format.findData("plain"))
    click(qtbot, page.own.save)
    chosen, load = pages.chosen[-1]
    assert not load
    assert chosen.model_overrides == {
        entry.id: ModelOverrides(n_ctx=2048, n_threads=1, n_gpu_layers=0, chat_format="plain")
    }
    assert page.own.gpu.text() == "none (CPU only)"


# -- the parts without Qt --------------------------------------------------------------------


def test_progress_reports_never_queue_up_and_no_stage_is_skipped() -> None:
    now = [0.0]
    notified: list[int] = []
    relay = ProgressRelay(lambda: notified.append(1), clock=lambda: now[0])
    for step in range(1, 101):  # a megabyte every 10 ms for a second, while the reader is busy
        now[0] = step / 100
        relay(step * 1_000_000, 100_000_000, "Downloading model.gguf")
    relay(50_000_000, 100_000_000, "Verifying model.gguf")
    relay(100_000_000, 100_000_000, "Verifying model.gguf")
    assert len(notified) == 1  # one notice until the reader takes the reports
    downloaded, verified = relay.take()
    assert downloaded.done == downloaded.total == 100_000_000
    assert downloaded.rate == pytest.approx(100e6, rel=0.05)
    assert (verified.stage, verified.done, verified.rate) == ("Verifying model.gguf", 100_000_000, 0.0)
    assert relay.take() == []
    relay(5, 10, "Verifying model.gguf")
    assert len(notified) == 2 and relay.take() == [ProgressReport(5, 10, "Verifying model.gguf", 0.0, now[0])]
    speed = Throughput()
    assert speed.add(0.0, 0) == 0.0 and speed.add(1.0, 500) == 500.0


def test_the_size_and_sha256_check_is_shown_as_a_stage_of_its_own() -> None:
    job = Job("m", started=True)
    job.report = ProgressReport(40, 100, "Downloading m.gguf", 5e6)
    assert (_job_state(job), _stage_text(job)) == ("downloading 40 %", "Downloading m.gguf…")
    job.report = ProgressReport(100, 100, "Downloading m.gguf", 5e6)  # every byte is in: only the check is left
    assert (_job_state(job), _stage_text(job)) == ("checking", "Checking size and sha256…")
    job.report = ProgressReport(10, 100, "Verifying m.gguf", 0.0)  # a file already here, checked again
    assert _stage_text(job) == "Checking size and sha256…"


def test_first_run_is_needed_only_when_no_chat_model_can_load_offline(hearth_home: Path, tmp_path: Path) -> None:
    paths = DataPaths(hearth_home).ensure()
    entry = url_entry(b"weights", "http://127.0.0.1:9/model.gguf")
    library = ModelLibrary(paths, Catalog((entry,)))
    assert needs_first_run(library)
    library.import_gguf(write_tiny_llama(tmp_path / "tiny.gguf"))
    assert not needs_first_run(library)


# -- the window ------------------------------------------------------------------------------


def test_first_run_welcome_leads_to_a_downloaded_model_that_loads(
    qtbot: QtBot, hearth_home: Path, tmp_path: Path
) -> None:
    """No model at all: the window welcomes, the Models page downloads one, and it loads for real."""
    require(_has_llama_cpp(), "llama-cpp-python is not installed")
    weights = write_tiny_llama(tmp_path / "tiny.gguf").read_bytes()
    served = Served(weights)
    with serve(served) as url:
        entry = url_entry(weights, url, model_id="tiny-chat", name="Tiny chat")
        window = _window(qtbot, Catalog((entry,)))
        try:
            qtbot.waitUntil(lambda: window.welcome.isVisible(), timeout=WAIT_MS)
            assert not window.chat.isVisible()
            qtbot.mouseClick(window.welcome.button, Qt.MouseButton.LeftButton)
            page = window.models_page
            assert page is not None and page.isVisible()
            qtbot.waitUntil(lambda: entry.id in page.rows, timeout=WAIT_MS)
            page.select(entry.id)
            page.own.ctx.setValue(256)
            click(qtbot, page.own.save)
            with qtbot.waitSignal(page.jobs.finished, timeout=WAIT_MS):
                click(qtbot, page.download_button)
            wait_state(qtbot, page, entry.id, lambda state: state == "here")
            with qtbot.waitSignal(window.controller.engineReady, timeout=WAIT_MS * 4) as ready:
                click(qtbot, page.use_button)
            assert ready.args[0].model_id == entry.id and ready.args[0].n_ctx == 256  # its own context size
            assert not window.welcome.isVisible() and window.chat.isVisible()
            qtbot.waitUntil(
                lambda: load_settings(DataPaths(hearth_home).settings).model_id == entry.id, timeout=WAIT_MS
            )
            page.own.ctx.setValue(512)  # the model in use gets new settings of its own: it loads again
            with qtbot.waitSignal(window.controller.engineReady, timeout=WAIT_MS * 4) as again:
                click(qtbot, page.own.save)
            assert again.args[0].n_ctx == 512
        finally:
            window.close()


def test_models_page_opens_from_the_menu_shortcut(qtbot: QtBot, tmp_path: Path) -> None:
    window = _window(qtbot, Catalog((url_entry(b"weights", "http://127.0.0.1:9/model.gguf"),)))
    try:
        window.activateWindow()
        qtbot.keyClick(window, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        qtbot.waitUntil(lambda: window.models_page is not None and window.models_page.isVisible(), timeout=WAIT_MS)
    finally:
        window.close()


def test_closing_the_window_pauses_a_download_and_keeps_what_arrived(qtbot: QtBot) -> None:
    served = Served(DATA, stall_at=STALL_AT)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        window = _window(qtbot, Catalog((entry,)))
        window.open_models()
        page = window.models_page
        assert page is not None
        qtbot.waitUntil(lambda: entry.id in page.rows, timeout=WAIT_MS)
        page.select(entry.id)
        click(qtbot, page.download_button)
        wait_received(qtbot, page, entry.id, STALL_AT)
        # The server sends more a moment after the window starts closing; the download stops there.
        threading.Timer(0.3, served.release.set).start()
        window.close()
    assert STALL_AT <= page.library.partial_bytes(entry) < len(DATA)
    assert served.ranges == [None]


def _window(qtbot: QtBot, catalog: Catalog) -> MainWindow:
    """The real window over a library with this catalog, loading models with the real load_engine."""

    def open_profile() -> Profile:
        profile = Profile.open()
        profile.library = ModelLibrary(profile.paths, catalog)
        return profile

    controller = ChatController(
        Runner(), open_profile, lambda profile, progress: load_engine(profile, progress=progress)
    )
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(controller.engineFailed, timeout=WAIT_MS):  # no model yet
        controller.start()
    return window


def _has_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def test_pause_takes_effect_at_once_while_the_server_sends_nothing(qtbot: QtBot, pages: Pages) -> None:
    """The server stops sending mid-file and stays silent (it would for 30 s): pausing still stops
    the download at once, keeping what arrived, instead of waiting for the connection to time out."""
    served = Served(DATA, stall_at=STALL_AT)
    with stalled_download(qtbot, pages, served) as (page, entry, url):
        with qtbot.waitSignal(page.jobs.stopped, timeout=WAIT_MS):
            click(qtbot, page.pause_button)
        wait_state(qtbot, page, entry.id, lambda state: state.startswith("paused at"))
        assert page.library.partial_bytes(entry) == STALL_AT
        served.release.set()  # let the server's stalled response end


def test_a_model_that_crashed_while_loading_says_why_and_use_tries_it_again(
    qtbot: QtBot, pages: Pages, tmp_path: Path
) -> None:
    from app.engines.worker import LoadCrashes
    from app.errors import EngineCrashed

    page = pages()
    with qtbot.waitSignal(page.jobs.imported, timeout=WAIT_MS) as done:
        page.import_file(write_tiny_llama(tmp_path / "tiny.gguf"))
    entry = done.args[0]
    crashes = LoadCrashes.in_folder(pages.paths.root)
    for _ in range(LoadCrashes.LIMIT):
        crashes.record(entry.id, EngineCrashed("The engine crashed while loading tiny (segmentation fault)."))
    page.refresh()
    wait_state(qtbot, page, entry.id, lambda state: state == "imported · crashed while loading")
    page.select(entry.id)
    assert page.error.isVisible() and "segmentation fault" in page.error.text()
    assert "Use this model" in page.error.text()

    click(qtbot, page.use_button)
    qtbot.waitUntil(lambda: bool(pages.chosen), timeout=WAIT_MS)
    chosen, load = pages.chosen[-1]
    assert (chosen.model_id, load) == (entry.id, True)
    assert crashes.count(entry.id) == 0, "the record was kept: the model would be refused again"
    wait_state(qtbot, page, entry.id, lambda state: state == "imported · in use")
