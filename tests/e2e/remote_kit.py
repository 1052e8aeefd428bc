"""Servers for the remote-engine tests: the real llama-cpp-python server, and a stub that misbehaves on purpose.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from app.bench.network import LlamaServerProcess, free_port
from tests.fixtures.tiny_gguf import write_tiny_llama

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MODEL_ALIAS = "tiny"
STUB_HOLD_S = 30  # how long the "slow" stub keeps a request waiting unless the test releases it


def closed_port_url() -> str:
    """An address where nothing listens: the port was just free and nothing took it."""
    return f"http://127.0.0.1:{free_port()}/v1"


class LlamaServer(LlamaServerProcess):
    """`python -m llama_cpp.server` with the tiny chatml model, in its own process (the launcher
    `hearth bench` uses too, there with the embedded default model)."""

    def __init__(self, folder: Path) -> None:
        model = write_tiny_llama(folder / "tiny-chatml.gguf", chat_template=CHATML)
        super().__init__(model, folder / "llama-server.log", MODEL_ALIAS, n_ctx=512, n_threads=1)


class Stub:
    """A tiny chat server that behaves in one chosen `mode`:

    "ok" streams two pieces; "auth" does too, but only with `Authorization: Bearer <key>`;
    "json" ignores `stream` and answers one JSON completion; "malformed" and "not_sse" send a
    broken stream; "slow" holds the request until released; "die_eof" and "die_chunked" send
    two pieces and then drop the connection.
    """

    PIECES = ("Hello", " there")

    def __init__(self, mode: str, api_key: str = "") -> None:
        self.mode = mode
        self.api_key = api_key
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.paths: list[str] = []
        self.bodies: list[Any] = []  # each POST's JSON body, as it arrived
        handler = type("StubHandler", (_Handler,), {"stub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, name="stub-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(event)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    stub: Stub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: the tests read results, not access logs."""

    def do_GET(self) -> None:
        self.stub.paths.append(self.path)
        if self._refused():
            return
        if self.path != "/v1/models":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    def do_POST(self) -> None:
        self.stub.paths.append(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.stub.bodies.append(json.loads(raw) if raw else None)
        if self._refused():
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        self.stub.arrived.set()
        getattr(self, f"_mode_{self.stub.mode}")()

    def _refused(self) -> bool:
        if self.stub.mode != "auth" or self.headers.get("Authorization") == f"Bearer {self.stub.api_key}":
            return False
        self._json(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}})
        return True

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def _mode_ok(self) -> None:
        self._start_stream()
        for piece in Stub.PIECES:
            self.wfile.write(_chunk(piece))
        self.wfile.write(_chunk(finish="stop") + b"data: [DONE]\n\n")

    _mode_auth = _mode_ok

    def _mode_json(self) -> None:
        message = {"role": "assistant", "content": "The whole answer at once."}
        usage = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
        self._json(
            200,
            {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            },
        )

    def _mode_malformed(self) -> None:
        self._start_stream()
        self.wfile.write(_chunk("ok") + b"data: {not json\n\n")

    def _mode_not_sse(self) -> None:
        self._start_stream()
        self.wfile.write(b"hello, this is not an event stream\n")

    def _mode_slow(self) -> None:
        self.stub.release.wait(STUB_HOLD_S)

    def _mode_die_eof(self) -> None:
        self._start_stream()
        for piece in Stub.PIECES:
            self.wfile.write(_chunk(piece))
        self.wfile.flush()
        self.close_connection = True  # HTTP/1.0: the body simply ends, with no [DONE]

    def _mode_die_chunked(self) -> None:
        self.protocol_version = "HTTP/1.1"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in Stub.PIECES:
            data = _chunk(piece)
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)  # gone mid-chunk-stream, as a crashed server would be
        self.close_connection = True
