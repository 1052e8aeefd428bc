"""The one place that runs background work for the window.

Work runs on named serial lanes — ``llm`` (one model, one stream at a time), ``io``
(database and files), ``fetch`` (model downloads and imports, which can take minutes without
holding up the database) and ``images`` (decoding and scaling pictures for previews, so a big
photo neither waits behind the database nor holds it up) — each a single worker thread, so jobs
on a lane never race each other.
Results, stream items and errors come back to the GUI thread through a queued Qt signal;
the GUI thread itself never waits on a model, a disk or a device.

    runner.submit("io", store.messages, cid).then(show).fail(report)
    runner.stream("llm", lambda: session.reply(cid, cancel), on_item=..., ...)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

log = logging.getLogger("hearth.ui.tasks")

LANES = ("llm", "io", "fetch", "images")


class _Bridge(QObject):
    """Lives on the GUI thread; a callable emitted from any thread runs there."""

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a failing callback must not take the event loop down
            log.exception("callback failed on the GUI thread")


class Job:
    """A submitted job; `then`/`fail`/`always` callbacks run on the GUI thread."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = bridge
        self._ok: list[Callable[[Any], None]] = []
        self._err: list[Callable[[BaseException], None]] = []
        self._done: list[Callable[[], None]] = []
        self.future: Future[Any] | None = None

    def then(self, fn: Callable[[Any], None]) -> Job:
        self._ok.append(fn)
        return self

    def fail(self, fn: Callable[[BaseException], None]) -> Job:
        self._err.append(fn)
        return self

    def always(self, fn: Callable[[], None]) -> Job:
        self._done.append(fn)
        return self

    def _finish(self, result: Any = None, error: BaseException | None = None) -> None:
        def deliver() -> None:
            if error is None:
                for fn in self._ok:
                    fn(result)
            else:
                if not self._err:
                    log.error("background job failed", exc_info=error)
                for on_error in self._err:
                    on_error(error)
            for done in self._done:
                done()

        self._bridge.call.emit(deliver)


class Runner:
    def __init__(self) -> None:
        self._bridge = _Bridge()
        self._lanes = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hearth-{name}") for name in LANES}
        self._closed = False

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the GUI thread (from any thread)."""
        self._bridge.call.emit(fn)

    def submit(self, lane: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        job = Job(self._bridge)
        if self._closed:
            # Results of the last jobs may still arrive after shutdown and ask for more work
            # (a refresh, a reload); with the window gone it has nowhere to go.
            log.debug("runner is shut down; dropped %s", getattr(fn, "__qualname__", fn))
            return job

        def work() -> None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # reported to the GUI, never lost in a thread
                job._finish(error=exc)
            else:
                job._finish(result)

        job.future = self._lanes[lane].submit(work)
        return job

    def stream(self, lane: str, make: Callable[[], Iterator[Any]], on_item: Callable[[Any], None]) -> Job:
        """Iterate a generator on a lane; each item reaches `on_item` on the GUI thread, in order."""

        def iterate() -> None:
            for item in make():
                self._bridge.call.emit(lambda item=item: on_item(item))

        return self.submit(lane, iterate)

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        for executor in self._lanes.values():
            executor.shutdown(wait=wait, cancel_futures=True)
