"""`hearth bench` figures for Hearth's two network paths, each measured side by side with a plain client:

- remote_decode_ratio: decode tokens/s through Hearth's `RemoteEngine` ÷ the same llama.cpp server
  (`python -m llama_cpp.server`, the embedded default model, on 127.0.0.1) read by a bare
  streaming `http.client` request, rounds alternating who goes first, median of per-round ratios;
- download_ratio: throughput of Hearth's model fetch (`app/catalog/fetch.py`: download, size and
  sha256 check, move into place) ÷ plain `curl -o` from the same loopback HTTP server, a ~200 MB
  file, alternating, median of per-round ratios.

Both servers run in their own processes, so the Python client under test never shares its
interpreter (and its GIL) with the server it reads from, just as with a real server.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.bench.common import Figure
from app.core.conversation import ChatMessage
from app.settings import GenerationSettings, physical_cores

STORY = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
SERVER_ALIAS = "bench"
DOWNLOAD_MB = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServerProcess:
    """`python -m llama_cpp.server` (llama-cpp-python's server extra) on 127.0.0.1, in its own process."""

    def __init__(self, model: Path, log: Path, alias: str, n_ctx: int, n_threads: int) -> None:
        self.model_path = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        args = ["--model", str(model), "--model_alias", alias, "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--n_ctx", str(n_ctx), "--n_threads", str(n_threads)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", *args], stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, deadline_s: float = 60.0) -> None:
        """Poll GET /models until it answers, the process dies, or the deadline passes."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            try:
                self.process.wait(timeout=0.2)  # the pause between polls, which also notices an early exit
            except subprocess.TimeoutExpired:
                continue
            break
        raise RuntimeError(f"llama_cpp.server did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _rate(stamps: list[float]) -> float:
    """Pieces per second from the first piece to the last (the decode phase, as `bench_decode` times it)."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else 0.0


# -- the remote engine ----------------------------------------------------------------------


def _hearth_remote_tps(engine: Any, messages: list[ChatMessage], settings: GenerationSettings) -> float:
    return _rate([time.perf_counter() for _ in engine.stream(messages, settings)])


def _direct_tps(url: str, body: dict[str, Any]) -> float:
    """The server read by a bare client: one streaming POST, each content delta timed as it arrives."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    stamps: list[float] = []
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        for line in response:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            choices = json.loads(payload).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                stamps.append(time.perf_counter())
    finally:
        conn.close()
    return _rate(stamps)


def bench_remote_decode(model: Path, folder: Path, rounds: int = 7, max_tokens: int = 128) -> Figure:
    """Hearth's remote engine vs a bare client on one llama.cpp server, alternating who goes first.

    The server gets all cores but one, the one the client reads on (a real server is another
    machine). Both ask for the same greedy reply, so the server does the same work for each.
    """
    from app.engines.remote import RemoteEngine

    server = LlamaServerProcess(
        model, folder / "bench-llama-server.log", SERVER_ALIAS, 2048, max(1, physical_cores() - 1)
    )
    try:
        server.wait_ready()
        engine = RemoteEngine(server.url, SERVER_ALIAS, n_ctx=2048)
        engine.connect()
        messages = [ChatMessage("system", "You are a storyteller."), ChatMessage("user", STORY)]
        settings = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=1)
        body = engine._body(messages, settings)  # the very request Hearth sends
        hearth_tps, direct_tps = _alternate(
            lambda: _hearth_remote_tps(engine, messages, settings), lambda: _direct_tps(server.url, body), rounds
        )
    finally:
        server.stop()
    ratios = [h / d for h, d in zip(hearth_tps, direct_tps, strict=True)]
    return Figure(
        "remote_decode_ratio",
        statistics.median(ratios),
        0.95,
        "higher",
        "×",
        {
            "hearth_tok_s": statistics.median(hearth_tps),
            "direct_tok_s": statistics.median(direct_tps),
            "worst_round": min(ratios),
            "server_threads": max(1, physical_cores() - 1),
        },
    )


def _alternate(ours: Callable[[], float], theirs: Callable[[], float], rounds: int) -> tuple[list[float], list[float]]:
    """One warm-up of each, then `rounds` rounds in which the two take turns going first."""
    ours(), theirs()
    mine, other = [], []
    for n in range(rounds):
        if n % 2:
            other.append(theirs())
            mine.append(ours())
        else:
            mine.append(ours())
            other.append(theirs())
    return mine, other


# -- downloads ------------------------------------------------------------------------------


def _test_file(path: Path, megabytes: int) -> str:
    """Random bytes (nothing on the way can compress them), written once; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(megabytes):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


class FileServer:
    """Python's `http.server` serving one folder on 127.0.0.1, in its own process."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.port = free_port()
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(folder),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the loopback file server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _hearth_fetch_s(url: str, size: int, sha256: str, folder: Path) -> float:
    """Hearth's whole fetch of a catalog entry: download, size and sha256 check, move into place."""
    from app.catalog.catalog import ModelEntry, ModelSource
    from app.catalog.fetch import fetch_entry

    entry = ModelEntry(
        id="bench-download",
        name="bench download",
        kind="chat",
        format="gguf",
        file="bench.gguf",
        sha256=sha256,
        size=size,
        licence="n/a",
        capabilities=("chat",),
        source=ModelSource("url", url=url),
    )
    dest = folder / "models" / entry.file
    started = time.perf_counter()
    fetch_entry(entry, dest, folder / "partial")
    elapsed = time.perf_counter() - started
    dest.unlink()
    return elapsed


def _curl_s(url: str, folder: Path) -> float:
    target = folder / "curl.bin"
    started = time.perf_counter()
    subprocess.run(["curl", "--silent", "--show-error", "--fail", "-o", str(target), url], check=True)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def bench_download(folder: Path, rounds: int = 9, megabytes: int = DOWNLOAD_MB) -> Figure:

    if shutil.which("curl") is None:
        raise RuntimeError("download_ratio compares with curl, which is not installed (./dev.sh setup installs it)")
    served = folder / "served"
    served.mkdir(exist_ok=True)
    source = served / "model.bin"
    sha256 = _test_file(source, megabytes)
    size = source.stat().st_size
    server = FileServer(served, folder / "bench-file-server.log")
    try:
        url = f"{server.url}/{source.name}"
        hearth_s, curl_s = _alternate(
            lambda: _hearth_fetch_s(url, size, sha256, folder), lambda: _curl_s(url, folder), rounds
        )
    finally:
        server.stop()
        source.unlink()
    ratios = [c / h for h, c in zip(hearth_s, curl_s, strict=True)]  # throughput ratio: the inverse of the time ratio
    return Figure(
        "download_ratio",
        statistics.median(ratios),
        0.9,
        "higher",
        "×",
        {
            "hearth_mb_s": size / 1e6 / statistics.median(hearth_s),
            "curl_mb_s": size / 1e6 / statistics.median(curl_s),
            "worst_round": min(ratios),
            "size_mb": size / 1e6,
        },
    )
