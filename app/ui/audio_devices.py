"""Microphones and speakers for the window: Qt Multimedia behind Hearth's audio protocols.

* `AudioDevices` lists the system's inputs and outputs, finds the one a setting names (settings keep
  `device_id(device)`; an empty string means "the system default"), and announces hot-plugging:
  `changed` whenever the lists change, `lost(kind, description)` when a watched device disappears.
* `QtAudioInput` is an `app.voice.audio.AudioInput`: it captures with a `QAudioSource` and hands the
  sink 16 kHz mono float32 chunks (~10 ms each), converting on the way when the device will not
  deliver 16 kHz mono itself. It also keeps `level_db`, the loudness of the last ~50 ms, for a meter.
* `QtAudioOutput` is an `app.voice.audio.AudioOutput`: a `QAudioSink` fed every 10 ms with as much
  queued audio as the device buffer (~60 ms) has room for, so audio leaves at real-time pace and
  `stop()` never has much to discard. Silence is written while nothing is queued, and everything
  written — silence included — goes to a `ReferenceTap`, so the echo canceller's reference
  (`take_reference`) runs in lockstep with the microphone.

Threads: each device runs on a dedicated audio `QThread` that owns its `QAudioSource` / `QAudioSink`
and their timers; the GUI thread only posts requests to it. `start()` waits (briefly, bounded) for
the device to open so that it can raise; nothing else waits on audio. The input's sink is called on
its audio thread; `on_error` handlers are called on the thread that created the device (the GUI
thread) through its event loop.

Failures never escape into Qt: a device that is missing or cannot be opened raises `VoiceError`
from `start()`; one that fails or disappears mid-stream is reported once through `on_error` (a
`VoiceError`) and the stream stops. A device chosen as "system default" (empty id) instead follows
the new default when the one in use disappears.

Known limit (Qt 6.11, PulseAudio backend): Qt does not announce a device's removal by itself, and
PulseAudio moves the streams of a removed device to the default one. Removal is therefore seen when
the device list next changes for another reason — which includes the default device changing, the
usual case when the device in use is unplugged.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtMultimedia import QAudioDevice, QAudioFormat, QAudioSink, QAudioSource, QMediaDevices, QtAudio

from app.errors import VoiceError
from app.voice.audio import RATE, ReferenceTap, SampleQueue, Samples, SampleSink
from app.voice.audiofile import SILENCE_DBFS, Resampler, dbfs

log = logging.getLogger("hearth.ui.audio")

INPUT = "input"
OUTPUT = "output"

ErrorHandler = Callable[[VoiceError], None]

OPEN_TIMEOUT_S = 5.0  # how long start() waits for the audio thread to open a device
LEVEL_WINDOW = RATE // 20  # level_db covers the last 50 ms
TICK_MS = 10  # the output's feeding interval

_MIC_HINT = "Check that a microphone is connected, or choose another one in Settings ▸ Voice."
_SPEAKER_HINT = "Check that speakers or headphones are connected, or choose another output in Settings ▸ Voice."
_MIC_OPEN_HINT = (
    "Check that it is plugged in and not in use by another program, or choose another microphone in Settings ▸ Voice."
)
_SPEAKER_OPEN_HINT = (
    "Check that it is plugged in and not in use by another program, or choose another output in Settings ▸ Voice."
)

_QT_ERRORS = {
    QtAudio.Error.OpenError: "the system refused to open it",
    QtAudio.Error.IOError: "the device stopped working",
    QtAudio.Error.UnderrunError: "audio did not arrive in time",
    QtAudio.Error.FatalError: "the audio system failed",
}


# ------------------------------------------------------------------ devices


def device_id(device: QAudioDevice) -> str:
    """The id a setting stores for `device` (stable across runs for the same device)."""
    return bytes(device.id().data()).decode("utf-8", "replace")


def _kind_name(kind: str) -> str:
    return "microphone" if kind == INPUT else "speaker"


def list_devices(kind: str) -> list[QAudioDevice]:
    """The system's inputs (`INPUT`) or outputs (`OUTPUT`)."""
    _check_kind(kind)
    return list(QMediaDevices.audioInputs() if kind == INPUT else QMediaDevices.audioOutputs())


def default_device(kind: str) -> QAudioDevice | None:
    """The system's default input or output; None when there is none."""
    _check_kind(kind)
    device = QMediaDevices.defaultAudioInput() if kind == INPUT else QMediaDevices.defaultAudioOutput()
    return None if device.isNull() else device


def find_device(kind: str, wanted: str) -> QAudioDevice | None:
    """The device a setting names: "" is the system default; an id that is not connected gives None."""
    if not wanted:
        return default_device(kind)
    for device in list_devices(kind):
        if device_id(device) == wanted:
            return device
    return None


def resolve_device(kind: str, wanted: str) -> QAudioDevice:
    """Like `find_device`, but a missing device raises `VoiceError` with what to do about it."""
    device = find_device(kind, wanted)
    if device is not None:
        return device
    hint = _MIC_HINT if kind == INPUT else _SPEAKER_HINT
    if not wanted:
        raise VoiceError("No microphone found." if kind == INPUT else "No speaker found.", hint)
    raise VoiceError(f"The {_kind_name(kind)} “{wanted}” is not connected.", hint)


def _check_kind(kind: str) -> None:
    if kind not in (INPUT, OUTPUT):
        raise ValueError(f"kind must be {INPUT!r} or {OUTPUT!r}, not {kind!r}")


class AudioDevices(QObject):
    """The system's audio devices, for the settings page and for noticing hot-plugging.

    `watch(kind, id)` names the device in use; `lost(kind, description)` fires once when it is no
    longer listed. `changed` fires on any change to either list.
    """

    changed = Signal()
    lost = Signal(str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._media = QMediaDevices(self)
        self._media.audioInputsChanged.connect(self._inputs_changed)
        self._media.audioOutputsChanged.connect(self._outputs_changed)
        self._watched: dict[str, tuple[str, str]] = {}  # kind -> (id, description)

    def inputs(self) -> list[QAudioDevice]:
        return list_devices(INPUT)

    def outputs(self) -> list[QAudioDevice]:
        return list_devices(OUTPUT)

    def default_input(self) -> QAudioDevice | None:
        return default_device(INPUT)

    def default_output(self) -> QAudioDevice | None:
        return default_device(OUTPUT)

    def find_input(self, wanted: str) -> QAudioDevice | None:
        """The input a setting names ("" = default); None when it is not connected."""
        return find_device(INPUT, wanted)

    def find_output(self, wanted: str) -> QAudioDevice | None:
        """The output a setting names ("" = default); None when it is not connected."""
        return find_device(OUTPUT, wanted)

    def choices(self, kind: str) -> list[tuple[str, str]]:
        """(id, label) pairs for a settings list, the system default first."""
        return [("", "System default")] + [(device_id(d), d.description()) for d in list_devices(kind)]

    def watch(self, kind: str, wanted: str | None) -> None:
        """Watch the device in use for `kind` (its id; "" = whatever is the default now; None = none)."""
        _check_kind(kind)
        device = None if wanted is None else find_device(kind, wanted)
        if device is None:
            self._watched.pop(kind, None)
        else:
            self._watched[kind] = (device_id(device), device.description())

    def _inputs_changed(self) -> None:
        self._check(INPUT)
        self.changed.emit()

    def _outputs_changed(self) -> None:
        self._check(OUTPUT)
        self.changed.emit()

    def _check(self, kind: str) -> None:
        watched = self._watched.get(kind)
        if watched is None:
            return
        if not any(device_id(device) == watched[0] for device in list_devices(kind)):
            del self._watched[kind]
            log.info("%s %r disappeared", _kind_name(kind), watched[1])
            self.lost.emit(kind, watched[1])


# ------------------------------------------------------------------ formats


_DTYPES: dict[QAudioFormat.SampleFormat, str] = {
    QAudioFormat.SampleFormat.UInt8: "u1",
    QAudioFormat.SampleFormat.Int16: "<i2",
    QAudioFormat.SampleFormat.Int32: "<i4",
    QAudioFormat.SampleFormat.Float: "<f4",
}


def speech_format() -> QAudioFormat:
    """16 kHz mono 16-bit: what Hearth asks every device for first."""
    fmt = QAudioFormat()
    fmt.setSampleRate(RATE)
    fmt.setChannelCount(1)
    fmt.setSampleFormat(QAudioFormat.SampleFormat.Int16)
    return fmt


def choose_format(device: QAudioDevice, native: bool = False) -> QAudioFormat:
    """16 kHz mono Int16 when the device takes it (unless `native`), else the device's own format."""
    wanted = speech_format()
    if not native and device.isFormatSupported(wanted):
        return wanted
    fmt = device.preferredFormat()
    if fmt.sampleFormat() not in _DTYPES:
        fmt.setSampleFormat(QAudioFormat.SampleFormat.Float)
    if fmt.sampleRate() <= 0:
        fmt.setSampleRate(48_000)
    if fmt.channelCount() <= 0:
        fmt.setChannelCount(2)
    return fmt


def decode(data: bytes, fmt: QAudioFormat) -> Samples:
    """Whole frames of device audio as mono float32 at the device's rate (channels averaged)."""
    kind = fmt.sampleFormat()
    raw = np.frombuffer(data, dtype=_DTYPES[kind])
    if kind == QAudioFormat.SampleFormat.UInt8:
        x = (raw.astype(np.float32) - 128.0) / 128.0
    elif kind == QAudioFormat.SampleFormat.Int16:
        x = raw.astype(np.float32) / 32768.0
    elif kind == QAudioFormat.SampleFormat.Int32:
        x = (raw.astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        x = np.nan_to_num(raw.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    channels = max(1, fmt.channelCount())
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return x.astype(np.float32, copy=False)


def encode(samples: Samples, fmt: QAudioFormat) -> bytes:
    """Mono float samples (at the device's rate) as device bytes, copied to every channel."""
    x = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0), -1.0, 1.0)
    channels = max(1, fmt.channelCount())
    if channels > 1:
        x = np.repeat(x, channels)
    kind = fmt.sampleFormat()
    if kind == QAudioFormat.SampleFormat.UInt8:
        out = np.round(x * 127.0 + 128.0).astype("u1")
    elif kind == QAudioFormat.SampleFormat.Int16:
        out = np.round(x * 32767.0).astype("<i2")
    elif kind == QAudioFormat.SampleFormat.Int32:
        out = np.round(x.astype(np.float64) * 2147483647.0).astype("<i4")
    else:
        out = x.astype("<f4")
    return out.tobytes()


class _CaptureConverter:
    """Device bytes in, 16 kHz mono float32 out; keeps partial frames and resampler history."""

    def __init__(self, fmt: QAudioFormat) -> None:
        self.fmt = fmt
        self._frame = max(1, fmt.bytesPerFrame())
        self._carry = b""
        self._resampler = Resampler(fmt.sampleRate(), RATE) if fmt.sampleRate() != RATE else None

    def process(self, data: bytes) -> Samples:
        data = self._carry + data
        usable = len(data) - len(data) % self._frame
        self._carry = data[usable:]
        mono = decode(data[:usable], self.fmt)
        return self._resampler.process(mono) if self._resampler is not None else mono


class _PlaybackConverter:
    """16 kHz mono float32 in, device bytes out."""

    def __init__(self, fmt: QAudioFormat) -> None:
        self.fmt = fmt
        self._resampler = Resampler(RATE, fmt.sampleRate()) if fmt.sampleRate() != RATE else None

    def samples_for(self, frames: int) -> int:
        """16 kHz samples that make at least `frames` device frames."""
        return frames if self._resampler is None else math.ceil(frames * RATE / self.fmt.sampleRate())

    def process(self, samples: Samples) -> bytes:
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        return encode(samples, self.fmt)

    def reset(self) -> None:
        if self._resampler is not None:
            self._resampler.reset()


def _describe_error(error: QtAudio.Error) -> str:
    return _QT_ERRORS.get(error, str(error))


# ------------------------------------------------------------------ permission


def check_microphone_permission() -> None:
    """Raise `VoiceError` unless the system lets Hearth use the microphone (macOS asks the user).

    Qt ≥ 6.5 reports the permission; platforms without one (Linux) report it granted.
    """
    app = QCoreApplication.instance()
    try:
        from PySide6.QtCore import QMicrophonePermission
    except ImportError:  # Qt before 6.5: no permission API, nothing to check
        return
    if app is None:
        return
    permission = QMicrophonePermission()
    status = app.checkPermission(permission)
    if status == Qt.PermissionStatus.Granted:
        return
    hint = "Allow Hearth in System Settings ▸ Privacy & Security ▸ Microphone, then start voice again."
    if status == Qt.PermissionStatus.Denied:
        raise VoiceError("Hearth is not allowed to use the microphone.", hint)
    app.requestPermission(permission, app, lambda _permission: None)  # the system shows its question
    raise VoiceError(
        "Hearth is asking for permission to use the microphone.",
        "Answer the system's question, then start voice again.",
    )


# ------------------------------------------------------------------ threads


class _Runner(QObject):
    """Lives on an audio thread; callables emitted to it run there, in order."""

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a failing request must not take the audio thread's loop down
            log.exception("audio thread request failed")


class _AudioThread:
    """A dedicated QThread with an event loop, and a way to run code on it."""

    def __init__(self, name: str) -> None:
        self._home = QThread.currentThread()
        self.thread = QThread()
        self.thread.setObjectName(name)
        self._runner = _Runner()
        self._runner.moveToThread(self.thread)
        self.thread.start()
        self.closed = False
        self.held: Any = None  # the device's audio-thread half (touched on the audio thread only)
        _LIVE.add(self)

    def release(self) -> None:
        """Shut down and drop the audio-thread half (on the audio thread)."""
        held, self.held = self.held, None
        if held is not None:
            held.shutdown()

    def on_thread(self) -> bool:
        return QThread.currentThread() == self.thread

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the audio thread, later (from any thread)."""
        if not self.closed:
            self._runner.call.emit(fn)

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run `fn` on the audio thread and return its result or raise its exception."""
        if self.on_thread():
            return fn()
        done = threading.Event()
        box: dict[str, Any] = {}

        def task() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self.post(task)
        if not done.wait(timeout):
            raise TimeoutError(f"the audio thread did not answer within {timeout:.0f} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def close(self, before: Callable[[], None] | None = None, timeout: float = 5.0) -> None:
        """Run `before` on the thread, release what it holds, end it and wait (unless called from it)."""
        if self.closed:
            return
        home = self._home

        def finish() -> None:
            try:
                if before is not None:
                    before()
                self.release()
            finally:
                self._runner.moveToThread(home)
                QThread.currentThread().quit()

        self.post(finish)
        self.closed = True
        _LIVE.discard(self)
        # A QThread destroyed while it runs aborts the process: keep it until it has finished.
        _ENDING[:] = [lane for lane in _ENDING if not lane.thread.isFinished()]
        if self.on_thread():
            _ENDING.append(self)
        elif not self.thread.wait(int(timeout * 1000)):
            log.warning("audio thread %s did not stop within %.0f s", self.thread.objectName(), timeout)
            _ENDING.append(self)


_LIVE: set[_AudioThread] = set()
_ENDING: list[_AudioThread] = []


@atexit.register
def _close_all() -> None:
    """A QThread destroyed while running aborts the process: end any still running at exit."""
    for lane in list(_LIVE):
        lane.close(timeout=2.0)
    for lane in _ENDING:
        lane.thread.wait(2000)


class _ErrorRelay(QObject):
    """Carries errors from an audio thread to the thread that created the device."""

    error = Signal(object)

    def __init__(self, handler: ErrorHandler | None) -> None:
        super().__init__()
        self._handler = handler
        self.error.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _deliver(self, error: VoiceError) -> None:
        if self._handler is None:
            log.warning("audio device error: %s", error)
            return
        try:
            self._handler(error)
        except Exception:  # a failing handler must not take the event loop down
            log.exception("audio error handler failed")


# ------------------------------------------------------------------ input


class _DeviceSession(QObject):
    """What the capture and playback halves share on their audio thread: following the device
    list (a vanished device is replaced by the default when the user chose "System default",
    else reported), turning Qt's error states into a `VoiceError`, and reporting to the owner."""

    KIND = INPUT
    LABEL = "microphone"
    HINT = _MIC_HINT

    def __init__(self, owner: Any) -> None:
        super().__init__()
        # Weak: a device dropped without close() must not be kept alive by, or take down, its thread.
        self._owner_ref = weakref.ref(owner)
        self._native, self._buffer_ms, self._follow_default = owner.native_format, owner.buffer_ms, not owner.device_id
        self.device: QAudioDevice | None = None
        self._watcher = QMediaDevices(self)
        changed = self._watcher.audioInputsChanged if self.KIND == INPUT else self._watcher.audioOutputsChanged
        changed.connect(self._devices_changed)

    def open(self, device: QAudioDevice) -> QAudioFormat:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _stream(self) -> QAudioSource | QAudioSink | None:
        """The open Qt audio object, None when closed."""
        raise NotImplementedError

    def _report(self, owner: Any, error: VoiceError) -> None:
        raise NotImplementedError

    def _failed_with(self, exc: Exception, doing: str) -> None:
        log.exception("%s %s failed", self.LABEL, doing)
        self._fail(VoiceError(f"The {self.LABEL} failed: {exc}", self.HINT))

    @Slot(QtAudio.State)
    def _state_changed(self, state: QtAudio.State) -> None:
        try:
            stream = self._stream()
            if stream is None:
                return
            error = stream.error()
            if error in (QtAudio.Error.OpenError, QtAudio.Error.IOError, QtAudio.Error.FatalError):
                name = self.device.description() if self.device is not None else self.LABEL
                self._fail(VoiceError(f"The {self.LABEL} “{name}” stopped: {_describe_error(error)}.", self.HINT))
        except Exception as exc:
            self._failed_with(exc, "state handling")

    @Slot()
    def _devices_changed(self) -> None:
        try:
            if self._stream() is None or self.device is None:
                return
            in_use = device_id(self.device)
            if any(device_id(d) == in_use for d in list_devices(self.KIND)):
                return
            description = self.device.description()
            replacement = default_device(self.KIND) if self._follow_default else None
            if replacement is None:
                self._fail(VoiceError(f"The {self.LABEL} “{description}” was disconnected.", self.HINT))
                return
            log.info("%s %r disappeared; following the default, %r", self.LABEL, description, replacement.description())
            self.close()
            self.open(replacement)
            owner = self._owner_ref()
            if owner is not None:
                owner.device = replacement
                owner.name = replacement.description()
        except VoiceError as exc:
            self._fail(exc)
        except Exception as exc:
            self._failed_with(exc, "hot-plug handling")

    def _fail(self, error: VoiceError) -> None:
        self.close()
        owner = self._owner_ref()
        if owner is not None:
            self._report(owner, error)


class _Capture(_DeviceSession):
    """One capture session on the audio thread: the QAudioSource and its QIODevice."""

    def __init__(self, owner: QtAudioInput, device: QAudioDevice, session: int) -> None:
        super().__init__(owner)
        self._session = session
        self.device = device
        self._source: QAudioSource | None = None
        self._io: Any = None
        self._converter: _CaptureConverter | None = None

    def open(self, device: QAudioDevice) -> QAudioFormat:
        fmt = choose_format(device, self._native)
        source = QAudioSource(device, fmt)
        source.setBufferSize(fmt.bytesForDuration(self._buffer_ms * 1000))
        io = source.start()
        if io is None or source.error() != QtAudio.Error.NoError or source.state() == QtAudio.State.StoppedState:
            reason = _describe_error(source.error())
            source.stop()
            raise VoiceError(f"The microphone “{device.description()}” could not be opened: {reason}.", _MIC_OPEN_HINT)
        self.device = device
        self._source, self._io = source, io
        self._converter = _CaptureConverter(fmt)
        source.stateChanged.connect(self._state_changed)
        io.readyRead.connect(self._ready)
        return fmt

    def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        source, self._source, self._io = self._source, None, None
        if source is not None:
            try:
                source.stateChanged.disconnect(self._state_changed)
            except (RuntimeError, TypeError):
                pass
            source.stop()

    @Slot()
    def _ready(self) -> None:
        try:
            if self._io is None or self._converter is None:
                return
            data = bytes(self._io.readAll().data())
            if not data:
                return
            samples = self._converter.process(data)
            owner = self._owner_ref()
            if owner is None:
                self.close()
            elif len(samples):
                owner._deliver(self._session, samples)
        except Exception as exc:
            self._failed_with(exc, "capture")

    def _stream(self) -> QAudioSource | None:
        return self._source

    def _report(self, owner: Any, error: VoiceError) -> None:
        owner._failed(self._session, error)


class QtAudioInput:
    """A microphone through Qt Multimedia (an `AudioInput`).

    `device_id` is the setting's value: "" for the system default (followed if it changes while in
    use), else a device id. The device is looked up at `start()`, so one plugged in later is found.
    `on_error` receives a `VoiceError` when the stream fails after starting; it is called on the
    thread that created this object. `native_format=True` captures in the device's own format and
    converts in Hearth even when the device offers 16 kHz mono. `buffer_ms` is the capture buffer.

    The sink runs on the audio thread and must return quickly; `stop()` waits for a call in
    progress to finish (that is how no call can follow it), so the sink must never wait for the
    thread that calls `stop()`.
    """

    def __init__(
        self,
        device_id: str = "",
        on_error: ErrorHandler | None = None,
        *,
        buffer_ms: int = 30,
        native_format: bool = False,
    ) -> None:
        self.device_id = device_id
        self.buffer_ms = buffer_ms
        self.native_format = native_format
        device = find_device(INPUT, device_id)
        self.name = device.description() if device is not None else (device_id or "default microphone")
        self.device: QAudioDevice | None = None  # the device in use while capturing
        self.format: QAudioFormat | None = None  # the format the device delivers
        self._relay = _ErrorRelay(on_error)
        self._lock = threading.RLock()
        self._sink: SampleSink | None = None
        self._session = 0
        self._recent = np.zeros(0, dtype=np.float32)
        self._level = SILENCE_DBFS
        self._thread: _AudioThread | None = None

    @property
    def level_db(self) -> float:
        """RMS loudness of the last ~50 ms in dBFS (`SILENCE_DBFS` when silent or stopped)."""
        return self._level

    @property
    def capturing(self) -> bool:
        return self._sink is not None

    def start(self, sink: SampleSink) -> None:
        """Open the device and start calling `sink`; raises `VoiceError` when that is impossible."""
        self.stop()
        check_microphone_permission()
        device = resolve_device(INPUT, self.device_id)
        if self._thread is None or self._thread.closed:
            self._thread = _AudioThread("hearth-audio-in")
            weakref.finalize(self, self._thread.close)  # dropped without close(): end the thread anyway
        with self._lock:
            self._session += 1
            session = self._session
            self._sink = sink
            self._recent = np.zeros(0, dtype=np.float32)
        try:
            self.format = self._thread.call(lambda: self._open(device, session), OPEN_TIMEOUT_S)
        except TimeoutError as exc:
            self.stop()
            raise VoiceError(f"The microphone “{device.description()}” did not open in time.", _MIC_HINT) from exc
        except VoiceError:
            self.stop()
            raise
        except Exception as exc:
            self.stop()
            raise VoiceError(f"The microphone could not be opened: {exc}", _MIC_OPEN_HINT) from exc
        self.device = device
        self.name = device.description()

    def _open(self, device: QAudioDevice, session: int) -> QAudioFormat:
        assert self._thread is not None
        if session != self._session:
            raise VoiceError("The microphone was stopped while it opened.", "Start voice again.")
        capture = _Capture(self, device, session)
        try:
            fmt = capture.open(device)
        except BaseException:
            capture.close()
            raise
        self._thread.release()
        self._thread.held = capture
        return fmt

    def stop(self) -> None:
        """Stop capturing; the sink is not called after this returns. Safe from any thread."""
        with self._lock:
            self._session += 1
            was_capturing = self._sink is not None
            self._sink = None
            self._level = SILENCE_DBFS
        thread = self._thread
        if was_capturing and thread is not None:
            thread.post(thread.release)

    def close(self) -> None:
        """Stop and end the audio thread."""
        self.stop()
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def _deliver(self, session: int, samples: Samples) -> None:
        with self._lock:
            sink = self._sink
            if session != self._session or sink is None:
                return
            recent = np.concatenate([self._recent, samples])[-LEVEL_WINDOW:]
            self._recent = recent
            self._level = (
                dbfs(float(np.sqrt(np.mean(np.square(recent, dtype=np.float64))))) if len(recent) else SILENCE_DBFS
            )
            try:
                sink(samples)
            except Exception as exc:
                log.exception("the microphone's consumer failed")
                self._session += 1
                self._sink = None
                self._level = SILENCE_DBFS
                if self._thread is not None:
                    self._thread.post(self._thread.release)
                self._relay.error.emit(
                    VoiceError(f"Listening failed: {exc}", "Try again; if it keeps failing, restart Hearth.")
                )

    def _failed(self, session: int, error: VoiceError) -> None:
        with self._lock:
            if session != self._session:
                return
            self._session += 1
            self._sink = None
            self._level = SILENCE_DBFS
        log.warning("%s", error)
        self._relay.error.emit(error)


# ------------------------------------------------------------------ output


class _Playback(_DeviceSession):
    """The output's audio-thread half: the QAudioSink and its 10 ms feeding timer."""

    KIND = OUTPUT
    LABEL = "speaker"
    HINT = _SPEAKER_HINT

    def __init__(self, owner: QtAudioOutput) -> None:
        super().__init__(owner)
        self._sink: QAudioSink | None = None
        self._io: Any = None
        self._fmt: QAudioFormat | None = None
        self._converter: _PlaybackConverter | None = None
        self._spill = b""  # converted bytes the device had no room for yet
        self._failed = False
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def open(self, device: QAudioDevice) -> QAudioFormat:
        fmt = choose_format(device, self._native)
        sink = QAudioSink(device, fmt)
        sink.setBufferSize(fmt.bytesForDuration(self._buffer_ms * 1000))
        io = sink.start()
        if io is None or sink.error() != QtAudio.Error.NoError or sink.state() == QtAudio.State.StoppedState:
            reason = _describe_error(sink.error())
            sink.stop()
            raise VoiceError(f"The speaker “{device.description()}” could not be opened: {reason}.", _SPEAKER_OPEN_HINT)
        self.device, self._sink, self._io, self._fmt = device, sink, io, fmt
        self._converter = _PlaybackConverter(fmt)
        self._spill = b""
        sink.stateChanged.connect(self._state_changed)
        self._timer.start()
        self._tick()
        return fmt

    def close(self) -> None:
        self._timer.stop()
        sink, self._sink, self._io = self._sink, None, None
        if sink is not None:
            try:
                sink.stateChanged.disconnect(self._state_changed)
            except (RuntimeError, TypeError):
                pass
            sink.stop()

    def shutdown(self) -> None:
        self.close()
        self._watcher.audioOutputsChanged.disconnect(self._devices_changed)
        self._timer.timeout.disconnect(self._tick)

    def discard(self) -> None:
        """Throw away what the device holds, at once (the queue was already emptied)."""
        sink = self._sink
        if sink is None:
            return
        try:
            self._spill = b""
            if self._converter is not None:
                self._converter.reset()
            sink.stateChanged.disconnect(self._state_changed)
            sink.reset()  # drops the device buffer; the sink stops
            self._io = sink.start()
            sink.stateChanged.connect(self._state_changed)
            if self._io is None or sink.error() not in (QtAudio.Error.NoError, QtAudio.Error.UnderrunError):
                raise VoiceError(f"The speaker could not restart: {_describe_error(sink.error())}.", _SPEAKER_HINT)
            self._tick()
        except VoiceError as exc:
            self._fail(exc)
        except Exception as exc:
            log.exception("speaker reset failed")
            self._fail(VoiceError(f"The speaker failed: {exc}", _SPEAKER_HINT))

    @Slot()
    def _tick(self) -> None:
        try:
            sink, io, fmt, converter = self._sink, self._io, self._fmt, self._converter
            if sink is None or io is None or fmt is None or converter is None:
                return
            frame = fmt.bytesPerFrame()
            free = sink.bytesFree()
            free -= free % frame
            if free <= 0:
                return
            missing = free - len(self._spill)
            if missing > 0:
                owner = self._owner_ref()
                if owner is None:
                    self.close()
                    return
                samples = owner._take(converter.samples_for(-(-missing // frame)))
                self._spill += converter.process(samples)
            n = min(free, len(self._spill))
            n -= n % frame
            if n <= 0:
                return
            written = io.write(self._spill[:n])
            if written > 0:
                self._spill = self._spill[written:]
        except Exception as exc:
            self._failed_with(exc, "feeding")

    def _stream(self) -> QAudioSink | None:
        return self._sink

    def _report(self, owner: Any, error: VoiceError) -> None:
        owner._failed(error)


def _discard(thread: _AudioThread) -> None:
    if isinstance(thread.held, _Playback):
        thread.held.discard()


class QtAudioOutput:
    """A speaker through Qt Multimedia (an `AudioOutput`).

    `start()` opens the device (raising `VoiceError` when it cannot) and from then on the device
    is fed continuously — queued audio, else silence — until `close()`. `buffer_ms` is the device
    buffer: the most `stop()` ever has to throw away and the delay from `play()` to sound.
    `on_error` receives a `VoiceError` when the device fails or disappears while open, on the
    thread that created this object. `native_format=True` plays in the device's own format and
    converts in Hearth even when the device takes 16 kHz mono. `reference` is the tap that
    receives everything written to the device (a new `ReferenceTap` unless one is given).

    The reference fills from `start()` on, ~`buffer_ms` ahead of the sound. A reader that begins
    later (a microphone started after the speaker) should `reference.clear()` just before it
    starts reading, or its reference begins behind the echo by that gap. `stop()` does not take
    back what the reference already holds of the discarded device buffer (at most `buffer_ms`).
    """

    def __init__(
        self,
        device_id: str = "",
        on_error: ErrorHandler | None = None,
        *,
        buffer_ms: int = 60,
        native_format: bool = False,
        reference: ReferenceTap | None = None,
    ) -> None:
        self.device_id = device_id
        self.buffer_ms = buffer_ms
        self.native_format = native_format
        device = find_device(OUTPUT, device_id)
        self.name = device.description() if device is not None else (device_id or "default speaker")
        self.device: QAudioDevice | None = None
        self.format: QAudioFormat | None = None
        self.reference = reference if reference is not None else ReferenceTap()
        self._relay = _ErrorRelay(on_error)
        self._lock = threading.Lock()
        self._queue = SampleQueue()
        self._played = 0
        self._thread: _AudioThread | None = None
        self._broken = False  # the device failed or disappeared since start()

    @property
    def running(self) -> bool:
        """Open and being fed (False before `start()`, after `close()` and after a failure)."""
        return self._thread is not None and not self._thread.closed and not self._broken

    def start(self) -> None:
        """Open the device and start feeding it; raises `VoiceError` when that is impossible.

        Does nothing while running; after a failure it reopens (the device named, or the default).
        """
        if self.running:
            return
        if self._thread is not None:
            self.close()
        device = resolve_device(OUTPUT, self.device_id)
        self._broken = False
        self._thread = _AudioThread("hearth-audio-out")
        weakref.finalize(self, self._thread.close)  # dropped without close(): end the thread anyway
        try:
            self.format = self._thread.call(lambda: self._open(device), OPEN_TIMEOUT_S)
        except TimeoutError as exc:
            self.close()
            raise VoiceError(f"The speaker “{device.description()}” did not open in time.", _SPEAKER_HINT) from exc
        except VoiceError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise VoiceError(f"The speaker could not be opened: {exc}", _SPEAKER_OPEN_HINT) from exc
        self.device = device
        self.name = device.description()

    def _open(self, device: QAudioDevice) -> QAudioFormat:
        assert self._thread is not None
        playback = _Playback(self)
        try:
            fmt = playback.open(device)
        except BaseException:
            playback.shutdown()
            raise
        self._thread.held = playback
        return fmt

    def close(self) -> None:
        """Stop playing and end the audio thread (the device is released)."""
        self.stop()
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def play(self, samples: Samples) -> None:
        """Queue 16 kHz mono float32 after what is already queued. Never blocks."""
        chunk = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not len(chunk):
            return
        with self._lock:
            self._queue.append(chunk)

    def stop(self) -> None:
        """Drop the queue and what the device holds, at once. Safe from any thread."""
        with self._lock:
            self._queue.clear()
            self._played = 0
        thread = self._thread
        if thread is not None and not thread.closed:
            thread.post(lambda: _discard(thread))

    @property
    def played_samples(self) -> int:
        """Queued samples handed to the device since the last stop() (silence not counted)."""
        return self._played

    @property
    def pending_samples(self) -> int:
        """Samples queued but not yet handed to the device."""
        return self._queue.size

    def take_reference(self, n: int) -> Samples:
        """The next `n` samples of what went to the device (16 kHz; zeros where nothing was written)."""
        return self.reference.take(n)

    def reference_ready(self, n: int) -> bool:
        """Whether the next `n` samples of the reference were written (or the output went quiet)."""
        return self.reference.ready(n)

    def clear_reference(self) -> None:
        """Forget the reference kept so far (a microphone starting now reads from here)."""
        self.reference.clear()

    def _take(self, n: int) -> Samples:
        """The next `n` samples for the device: queued audio, then silence. Feeds the reference."""
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            self._played += self._queue.take_into(out)
        self.reference.push(out)
        return out

    def _failed(self, error: VoiceError) -> None:
        with self._lock:
            self._queue.clear()
        self._broken = True
        log.warning("%s", error)
        self._relay.error.emit(error)
