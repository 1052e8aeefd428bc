"""A private PulseAudio server for the test session: a virtual microphone and a speaker to listen to.

The server runs in a fresh runtime folder of its own, never the developer's sound system. It has

* ``app_speaker`` (AppSpeaker): a null sink, the default output. What Hearth plays there can be
  recorded from ``app_speaker.monitor`` (`PulseServer.record`).
* ``mic_feed`` (MicFeed): a null sink that test audio is played into (`PulseServer.feed`), and
  ``virtual_mic`` (VirtualMic): a remap of its monitor, the default input. QtMultimedia hides
  ``.monitor`` sources, which is why the remap exists.

`PulseServer.loopback` routes the speaker into the microphone, as a laptop's speakers do.

Use it through the session fixture: ``from tests.pulse import pulse  # noqa: F401`` in a folder's
``conftest.py``, then ask for ``pulse`` in a test. Every folder that does so shares one server.

The server must be up before QtMultimedia first enumerates devices: Qt's PulseAudio backend
connects once per process and does not retry. The fixture checks this and fails with an
explanation when some earlier test touched QtMultimedia without asking for ``pulse``.

Importing this module also turns off QtMultimedia's PipeWire probe warnings ("Couldn't load
pipewire-0.3 library"), which the suite's ``qt_log_level_fail = WARNING`` would count as failures.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from tests.conftest import require

RATE = 16_000

SPEAKER = "app_speaker"
MIC_FEED = "mic_feed"
MIC = "virtual_mic"

# QtMultimedia probes for PipeWire first and warns when it is absent; that is not a test failure.
_QUIET_RULES = "qt.multimedia.symbolsresolver.warning=false"


def _quiet_qt_multimedia() -> None:
    rules = os.environ.get("QT_LOGGING_RULES", "")
    if _QUIET_RULES not in rules:
        os.environ["QT_LOGGING_RULES"] = f"{rules};{_QUIET_RULES}" if rules else _QUIET_RULES


_quiet_qt_multimedia()


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2")


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """A 16-bit mono wav file of float samples in [-1, 1]."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(to_int16(samples).tobytes())
    return path


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child set-up that ends the daemon if the test process dies without teardown."""
    if not sys.platform.startswith("linux"):
        return None

    def arrange() -> None:
        PR_SET_PDEATHSIG = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return arrange


class Recording:
    """What ``parec`` hears from a source, kept in memory as 16 kHz mono float32.

    `started_at` is the monotonic time the recorder was launched. Each block read from ``parec``
    is stamped with its arrival time, so `time_of` can say when a given sample reached the
    recorder (the least-delayed block fixes the clock; PulseAudio's own latency is ~10 ms here).
    Use as a context manager, or call `stop()`.
    """

    def __init__(self, env: dict[str, str], device: str) -> None:
        self.device = device
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(
            [
                "parec",
                f"--device={device}",
                f"--rate={RATE}",
                "--channels=1",
                "--format=s16le",
                "--raw",
                "--latency-msec=10",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._blocks: list[bytes] = []
        self._arrivals: list[tuple[int, float]] = []  # (samples received so far, monotonic time)
        self._received = 0
        self._first_block = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="pulse-record", daemon=True)
        self._reader.start()
        self._samples: np.ndarray | None = None

    def _read(self) -> None:
        assert self._proc.stdout is not None
        stream = self._proc.stdout
        carry = b""
        while True:
            block = stream.read1(4096)  # type: ignore[attr-defined]
            if not block:
                break
            now = time.monotonic()
            block = carry + block
            usable = len(block) - len(block) % 2
            carry = block[usable:]
            with self._lock:
                self._blocks.append(block[:usable])
                self._received += usable // 2
                self._arrivals.append((self._received, now))
                if self._received:
                    self._first_block.set()

    @property
    def received(self) -> int:
        """Samples received so far."""
        with self._lock:
            return self._received

    def wait_for_audio(self, timeout: float = 5.0) -> None:
        """Wait until the recorder is actually receiving (its first block has arrived)."""
        if not self._first_block.wait(timeout):
            raise TimeoutError(f"parec on {self.device} delivered nothing in {timeout} s")

    def snapshot(self) -> np.ndarray:
        """Everything received so far, without stopping."""
        with self._lock:
            raw = b"".join(self._blocks)
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0

    def stop(self) -> np.ndarray:
        if self._samples is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._reader.join(timeout=5)
            self._samples = self.snapshot()
        return self._samples

    @property
    def samples(self) -> np.ndarray:
        """The recording (stops the recorder if it is still running)."""
        return self.stop()

    def time_of(self, index: int) -> float:
        """Monotonic time at which sample `index` reached the recorder."""
        with self._lock:
            arrivals = list(self._arrivals)
        if not arrivals:
            raise ValueError("nothing was recorded")
        offset = min(at - count / RATE for count, at in arrivals)
        return offset + index / RATE

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Feed:
    """A ``paplay`` into the virtual microphone that is still running."""

    def __init__(self, proc: subprocess.Popen[bytes], started_at: float, cleanup: Path | None) -> None:
        self.proc = proc
        self.started_at = started_at
        self._cleanup = cleanup

    def wait(self, timeout: float = 60.0) -> None:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self._cleanup is not None:
                self._cleanup.unlink(missing_ok=True)
        if self.proc.returncode != 0:
            raise RuntimeError(f"paplay failed with exit code {self.proc.returncode}")

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        with contextlib.suppress(RuntimeError):
            self.wait()


class PulseServer:
    """One private PulseAudio daemon, owned by this process."""

    starts = 0  # daemons started in this process (the session fixture starts exactly one)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime_dir = root / "runtime"
        self.socket = self.runtime_dir / "pulse" / "native"
        self.log_path = root / "pulseaudio.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._saved_env: dict[str, str | None] = {}
        self._keepalive: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        """os.environ with this server's address: the environment for its clients (pactl, paplay, …)."""
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        env["PULSE_SERVER"] = f"unix:{self.socket}"
        return env

    def start(self, timeout: float = 15.0) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        daemon_env = self.env
        # The daemon keeps its cookie and state in a home of its own, not the developer's.
        daemon_env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".state"))
        daemon_env.pop("PULSE_SERVER")
        log = open(self.log_path, "wb")  # closed in stop()
        self._log = log
        PulseServer.starts += 1
        self._proc = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit=yes",
                "--use-pid-file=no",
                "--log-target=stderr",
                "-n",
                "--load=module-native-protocol-unix auth-anonymous=1",
                f"--load=module-null-sink sink_name={SPEAKER} sink_properties=device.description=AppSpeaker",
                f"--load=module-null-sink sink_name={MIC_FEED} sink_properties=device.description=MicFeed",
                f"--load=module-remap-source master={MIC_FEED}.monitor source_name={MIC} source_properties=device.description=VirtualMic",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=daemon_env,
            preexec_fn=_die_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self._proc.returncode}: {self.log()}")
            probe = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pulseaudio did not answer in {timeout} s: {probe.stderr}\n{self.log()}")
            time.sleep(0.05)
        self.pactl("set-default-source", MIC)
        self.pactl("set-default-sink", SPEAKER)
        # A null sink renders in blocks as long as its latency allows: 2 s with nobody asking for
        # less, so a new stream's first audio could wait up to 2 s. A low-latency reader on each
        # monitor keeps both sinks rendering every 10 ms, like a sound card.
        for sink in (SPEAKER, MIC_FEED):
            self._keepalive.append(
                subprocess.Popen(
                    ["parec", f"--device={sink}.monitor", "--latency-msec=10", "--raw"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=self.env,
                )
            )
        for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
            self._saved_env[key] = os.environ.get(key)
        os.environ["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        os.environ["PULSE_SERVER"] = f"unix:{self.socket}"

    def stop(self) -> None:
        for reader in self._keepalive:
            reader.terminate()
        for reader in self._keepalive:
            try:
                reader.wait(timeout=5)
            except subprocess.TimeoutExpired:
                reader.kill()
                reader.wait()
        self._keepalive.clear()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- control ------------------------------------------------------------------------------

    def pactl(self, *args: str) -> str:
        result = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=15)
        if result.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def load_module(self, name: str, *args: str) -> int:
        """Load a module; returns its index for `unload_module`."""
        return int(self.pactl("load-module", name, *args).strip())

    def unload_module(self, index: int) -> None:
        self.pactl("unload-module", str(index))

    def sources(self) -> list[str]:
        """Names of all sources, monitors included."""
        return [line.split("\t")[1] for line in self.pactl("list", "short", "sources").splitlines() if line.strip()]

    def sinks(self) -> list[str]:
        return [line.split("\t")[1] for line in self.pactl("list", "short", "sinks").splitlines() if line.strip()]

    @contextlib.contextmanager
    def null_sink(self, name: str, description: str) -> Iterator[int]:
        """A temporary extra speaker (hot-plug)."""
        with self._module(
            "module-null-sink", f"sink_name={name}", f"sink_properties=device.description={description}"
        ) as index:
            yield index

    @contextlib.contextmanager
    def remap_source(self, name: str, description: str, master: str = f"{MIC_FEED}.monitor") -> Iterator[int]:
        """A temporary extra microphone hearing what is fed to `master` (hot-plug)."""
        with self._module(
            "module-remap-source",
            f"master={master}",
            f"source_name={name}",
            f"source_properties=device.description={description}",
        ) as index:
            yield index

    @contextlib.contextmanager
    def loopback(self, latency_msec: int = 200) -> Iterator[int]:
        """Route the speaker into the microphone, as a laptop's speakers reach its microphone."""
        with self._module(
            "module-loopback", f"source={SPEAKER}.monitor", f"sink={MIC_FEED}", f"latency_msec={latency_msec}"
        ) as index:
            yield index

    @contextlib.contextmanager
    def _module(self, name: str, *args: str) -> Iterator[int]:
        """A module loaded for the block's length (already gone at the end is fine)."""
        index = self.load_module(name, *args)
        try:
            yield index
        finally:
            with contextlib.suppress(RuntimeError):
                self.unload_module(index)

    # -- audio in and out ---------------------------------------------------------------------

    def feed(
        self, audio: np.ndarray | Path | str, block: bool = True, rate: int = RATE, latency_msec: int | None = None
    ) -> Feed | None:
        """Play samples (float32 at `rate`) or a wav file into the virtual microphone.

        With `block`, returns once paplay is done; otherwise returns the running `Feed`. paplay's
        default buffering is deep enough that a busy machine never starves it (a starved stream
        loses audio); a small `latency_msec` starts sooner but risks that.
        """
        cleanup: Path | None = None
        if isinstance(audio, np.ndarray):
            handle, name = tempfile.mkstemp(suffix=".wav", dir=self.root)
            os.close(handle)
            path = write_wav(Path(name), audio, rate)
            cleanup = path
        else:
            path = Path(audio)
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                "paplay",
                f"--device={MIC_FEED}",
                *([f"--latency-msec={latency_msec}"] if latency_msec else []),
                str(path),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        feed = Feed(proc, started, cleanup)
        if block:
            feed.wait()
            return None
        return feed

    def record(self, seconds: float | None = None, device: str = f"{SPEAKER}.monitor") -> Recording:
        """Record `device` (by default what Hearth played on AppSpeaker).

        With `seconds`, records that long and returns the finished recording; otherwise returns
        a running `Recording` to use as a context manager or stop by hand.
        """
        recording = Recording(self.env, device)
        if seconds is not None:
            recording.wait_for_audio()
            time.sleep(seconds)
            recording.stop()
        return recording


def _check_qt_sees_server(server: PulseServer) -> None:
    """Fail clearly when QtMultimedia connected (to nothing) before this server existed."""
    if "PySide6.QtMultimedia" not in sys.modules:
        return
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtMultimedia import QMediaDevices

    if QCoreApplication.instance() is None:
        return
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if any(device.description() == "AppSpeaker" for device in QMediaDevices.audioOutputs()):
            return
        QCoreApplication.processEvents()
        time.sleep(0.02)
    pytest.fail(
        "QtMultimedia does not see the private PulseAudio server: something enumerated audio devices before "
        "the `pulse` fixture started it (Qt connects once per process). Ask for `pulse` in that test too."
    )


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseServer]:
    """The session's private PulseAudio server (started on first use, stopped at the end)."""
    require(shutil.which("pulseaudio") is not None, "pulseaudio is not installed (dev.sh installs it)")
    require(
        all(shutil.which(tool) for tool in ("pactl", "paplay", "parec")),
        "pulseaudio-utils is not installed (pactl, paplay, parec)",
    )
    root = Path(tempfile.mkdtemp(prefix="hearth-pulse-"))
    server = PulseServer(root)
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"the private PulseAudio server did not start: {exc}")
    try:
        _check_qt_sees_server(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
