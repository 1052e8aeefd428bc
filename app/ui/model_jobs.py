"""Model downloads and imports for the Models page, on the Runner's ``fetch`` lane.

Each model has at most one job. Pause sets the job's cancel event: the fetch stops between chunks
and keeps its partial file, which the next fetch continues with an HTTP Range request. Cancel does
the same and then deletes the partial. Progress comes back through a Qt signal, the newest report
each time (they never queue up); a failure is kept per model (message and hint) until the model is tried again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.catalog.catalog import ModelEntry
from app.catalog.library import ModelLibrary
from app.catalog.overview import ProgressRelay, ProgressReport
from app.catalog.transfer import check_cancel
from app.errors import Cancelled, ModelError
from app.ui.chat_controller import describe
from app.ui.tasks import Runner

log = logging.getLogger("hearth.ui.models")

IMPORT_JOB = "import"  # the key of the one import that can run at a time


@dataclass
class Job:
    """A download (or import) under way.

    `started` is written by the worker only and `stopping` by the GUI thread only, so a Pause or
    Cancel asked while the job still waits for the lane is never overwritten when it starts.
    """

    key: str
    entry: ModelEntry | None = None  # the model being downloaded; None for an import
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    stopping: str = ""  # "pause" or "cancel", as the user asked
    report: ProgressReport | None = None
    relay: ProgressRelay | None = None

    @property
    def phase(self) -> str:
        """waiting, running, pausing or cancelling."""
        if self.stopping:
            return "cancelling" if self.stopping == "cancel" else "pausing"
        return "running" if self.started else "waiting"

    def stop(self, how: str) -> None:
        self.stopping = how
        self.cancel.set()


class ModelJobs(QObject):
    progressed = Signal(str)  # model id (or IMPORT_JOB): its job's report changed
    finished = Signal(str)  # a model is here (downloaded and verified)
    removed = Signal(str)  # a model's files were deleted (an imported one forgotten)
    failed = Signal(str, str, str)  # key, message, hint
    imported = Signal(object)  # the new ModelEntry
    stopped = Signal(str)  # a job ended by Pause or Cancel

    def __init__(self, runner: Runner, library: ModelLibrary, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.library = library
        self.jobs: dict[str, Job] = {}
        self.errors: dict[str, tuple[str, str]] = {}
        self._relayed = _Relay()
        self._relayed.report.connect(self._on_report)

    def job(self, key: str) -> Job | None:
        return self.jobs.get(key)

    # -- downloads ------------------------------------------------------------------------

    def download(self, entry: ModelEntry) -> None:
        """Fetch the model (continuing a partial download), then check its size and sha256."""
        if entry.id in self.jobs:
            return
        job = self._start(entry.id, entry)
        work = self.runner.submit("fetch", self._fetch, entry, job)
        work.then(lambda _path: self._done(job)).fail(lambda error: self._failed(job, error))

    def _fetch(self, entry: ModelEntry, job: Job) -> Path:
        job.started = True
        check_cancel(job.cancel, "the download was stopped before it began")  # paused while it waited
        progress = self._relay(job)
        try:
            if self.library.verify(entry, progress, job.cancel):
                return self.library.path_for(entry)
        except ModelError:
            pass  # damaged: the fetch replaces it once the new copy checks out
        return self.library.fetch(entry, progress, job.cancel)

    def pause(self, model_id: str) -> None:
        """Stop the download and keep what has arrived."""
        job = self.jobs.get(model_id)
        if job is not None and job.phase in ("waiting", "running"):
            job.stop("pause")
            self.progressed.emit(model_id)

    def cancel(self, entry: ModelEntry) -> None:
        """Stop the download and delete what has arrived (at once when it is already paused)."""
        job = self.jobs.get(entry.id)
        if job is not None:
            job.stop("cancel")
            self.progressed.emit(entry.id)
            return
        self.errors.pop(entry.id, None)
        work = self.runner.submit("io", self.library.discard_partial, entry)
        work.then(lambda _: self.stopped.emit(entry.id)).fail(lambda error: self._report(entry.id, error))

    def shutdown(self) -> None:
        """Pause everything: the window is closing, and partial downloads resume next time."""
        for job in self.jobs.values():
            job.stop("pause")

    # -- import and remove ----------------------------------------------------------------

    def import_file(self, path: Path, copy: bool) -> None:
        """Add a local GGUF (checked: magic, metadata, architecture), copied or used where it is."""
        if IMPORT_JOB in self.jobs:
            return
        job = self._start(IMPORT_JOB)

        def work() -> ModelEntry:
            job.started = True
            return self.library.import_gguf(path, copy=copy, progress=self._relay(job), cancel=job.cancel)

        submitted = self.runner.submit("fetch", work)
        submitted.then(lambda entry: self._imported(job, entry)).fail(lambda error: self._failed(job, error))

    def remove(self, entry: ModelEntry) -> None:
        """Delete Hearth's copy of the model (an imported file is only forgotten)."""
        self.errors.pop(entry.id, None)
        work = self.runner.submit("io", self.library.remove, entry)
        work.then(lambda _: self.removed.emit(entry.id)).fail(lambda error: self._report(entry.id, error))

    # -- job bookkeeping (GUI thread) -----------------------------------------------------

    def _start(self, key: str, entry: ModelEntry | None = None) -> Job:
        self.errors.pop(key, None)
        job = self.jobs[key] = Job(key, entry)
        self.progressed.emit(key)
        return job

    def _relay(self, job: Job) -> ProgressRelay:
        job.relay = ProgressRelay(lambda: self._relayed.report.emit(job))
        return job.relay

    def _on_report(self, job: Job) -> None:
        reports = job.relay.take() if job.relay is not None else []
        for report in reports:
            if self.jobs.get(job.key) is not job:
                return  # the job has ended meanwhile
            job.report = report
            self.progressed.emit(job.key)

    def _done(self, job: Job) -> None:
        self.jobs.pop(job.key, None)
        self.finished.emit(job.key)

    def _imported(self, job: Job, entry: ModelEntry) -> None:
        self.jobs.pop(job.key, None)
        self.imported.emit(entry)

    def _failed(self, job: Job, error: BaseException) -> None:
        self.jobs.pop(job.key, None)
        if not isinstance(error, Cancelled):
            self._report(job.key, error)
            return
        if job.stopping == "cancel" and job.entry is not None:
            discard = self.runner.submit("fetch", self.library.discard_partial, job.entry)
            discard.then(lambda _: self.stopped.emit(job.key)).fail(lambda error: self._report(job.key, error))
            return
        self.stopped.emit(job.key)

    def _report(self, key: str, error: BaseException) -> None:
        self.errors[key] = describe(error)
        self.failed.emit(key, *self.errors[key])


class _Relay(QObject):
    """Carries progress reports from the fetch lane to the GUI thread (a queued signal)."""

    report = Signal(object)  # the Job whose relay has a new report
