"""HTTP plumbing for the remote engine: one request per connection, errors a person can act on, SSE.

Only the standard library. `http.client` (rather than urllib) hands us the socket, so a set
cancel event can shut it down under a read that is blocked waiting for a slow server.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.errors import Cancelled, RemoteError

# How often the cancel watcher looks at the cancel event: the worst-case delay of a Stop.
CANCEL_POLL_S = 0.05
ERROR_BODY_LIMIT = 4096
# Longest line read at once: a server that never ends a line cannot fill the memory, and the
# cut line then fails to parse, which reports the stream as malformed.
MAX_LINE = 1 << 20
URL_HINT = "Check the server address in Settings › Model: a base URL such as http://127.0.0.1:8080/v1."


@dataclass(frozen=True)
class Endpoint:
    """A base URL split into what `http.client` needs."""

    scheme: str
    host: str
    port: int
    path: str  # the base path without a trailing slash, e.g. "/v1"

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise RemoteError(f"'{url}' is not a valid server address ({exc}).", URL_HINT) from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"'{url}' is not an http:// or https:// address.", URL_HINT)
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    @property
    def root(self) -> str:
        """The server's root path: llama.cpp's extra routes (/tokenize) live beside /v1, not under it."""
        return self.path.removesuffix("/v1")

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)


class HttpCall:
    """One request on its own connection. A set `cancel` shuts the socket, which ends any blocked read."""

    def __init__(
        self, endpoint: Endpoint, api_key: str | None, timeout_s: float, cancel: threading.Event | None = None
    ) -> None:
        self._endpoint = endpoint
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._cancel = cancel
        self._done = threading.Event()
        self._conn = endpoint.connection(timeout_s)
        self._url = endpoint.url(endpoint.path)

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        """Send the request and wait for the status line; raise RemoteError or Cancelled."""
        self._url = self._endpoint.url(path)
        try:
            self._conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            raise self._explain(exc, "connect") from exc
        self._watch()
        try:
            payload = json.dumps(body).encode("utf-8") if body is not None else None
            self._conn.request(method, path, body=payload, headers=self._headers(payload is not None))
            return self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise self._explain(exc, "wait") from exc

    def lines(self, response: http.client.HTTPResponse) -> Iterator[bytes]:
        """The body line by line, until the server ends it."""
        while True:
            try:
                raw = response.readline(MAX_LINE)
            except (OSError, http.client.HTTPException) as exc:
                raise self._explain(exc, "read") from exc
            if not raw:
                if self._cancel is not None and self._cancel.is_set():
                    raise Cancelled()
                return
            yield raw

    def read_json(self, response: http.client.HTTPResponse) -> Any:
        try:
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._explain(exc, "read") from exc
        try:
            return json.loads(data)
        except ValueError as exc:
            raise RemoteError(f"The server at {self._url} answered with something that is not JSON.", URL_HINT) from exc

    def close(self) -> None:
        self._done.set()
        self._conn.close()

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _watch(self) -> None:
        if self._cancel is not None:
            threading.Thread(
                target=self._shut_on_cancel, args=(self._cancel,), name="remote-cancel", daemon=True
            ).start()

    def _shut_on_cancel(self, cancel: threading.Event) -> None:
        while not self._done.is_set():
            if cancel.wait(CANCEL_POLL_S):
                sock = self._conn.sock
                if sock is not None and not self._done.is_set():
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:  # already closed by the other side: nothing left to interrupt
                        pass
                return

    def _explain(self, exc: BaseException, phase: str) -> Exception:
        if self._cancel is not None and self._cancel.is_set():
            return Cancelled()
        return explain_failure(exc, phase, self._url, self._timeout_s)


def explain_failure(exc: BaseException, phase: str, url: str, timeout_s: float) -> RemoteError:
    """A network failure as a message and a hint; `phase` is "connect", "wait" or "read"."""
    if isinstance(exc, TimeoutError):
        what = "did not accept a connection" if phase == "connect" else "sent nothing"
        return RemoteError(
            f"The server at {url} {what} for {timeout_s:g} s.",
            "It may be busy or still loading its model: try again, or check the server.",
        )
    if isinstance(exc, ssl.SSLError):
        return RemoteError(
            f"The secure connection to {url} failed ({exc}).",
            "Check the address (http:// or https://) and the server's certificate.",
        )
    if phase == "connect":
        return RemoteError(
            f"Cannot reach the server at {url} ({exc}).",
            "Check that the server is running, and the address in Settings › Model.",
        )
    when = "before answering" if phase == "wait" else "in the middle of the reply"
    return RemoteError(
        f"The server at {url} closed the connection {when} ({type(exc).__name__}).",
        "What arrived is kept. Check the server (it may have stopped or crashed), then regenerate the reply.",
    )


def check_status(response: http.client.HTTPResponse, url: str, has_key: bool) -> None:
    """Raise a RemoteError for any answer but 2xx, with the server's own words when it gave some."""
    status = response.status
    if 200 <= status < 300:
        return
    detail = _error_detail(response)
    said = f": {detail}" if detail else ""
    if status in (401, 403):
        hint = (
            "Enter a key this server accepts under API key in Settings › Model (HEARTH_REMOTE_API_KEY, when set, comes first)."
            if has_key
            else "This server needs an API key: enter it under API key in Settings › Model, or set HEARTH_REMOTE_API_KEY."
        )
        raise RemoteError(f"The server at {url} refused the request (HTTP {status}{said}).", hint)
    if status == 404:
        raise RemoteError(
            f"The server has no {url}, or not the model asked for (HTTP 404{said}).",
            "Check the base URL (it usually ends in /v1) and the remote model name in Settings › Model.",
        )
    raise RemoteError(
        f"The server at {url} answered HTTP {status}{said}.", "Check the server's log; the reply could not be made."
    )


def _error_detail(response: http.client.HTTPResponse) -> str:
    try:
        raw = response.read(ERROR_BODY_LIMIT)
    except (OSError, http.client.HTTPException):
        return ""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    error = data.get("error", data.get("detail")) if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return str(error)[:200] if error else text[:200]


def is_json(response: http.client.HTTPResponse) -> bool:
    return "json" in (response.getheader("Content-Type") or "").lower()


def sse_events(lines: Iterable[bytes], url: str) -> Iterator[dict[str, Any] | None]:
    """Server-sent events' `data:` payloads as JSON objects; None for `data: [DONE]`, then stop."""
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line or line.startswith(":"):
            continue  # blank lines end events; ":" lines are keep-alive comments
        field, _, value = line.partition(":")
        if field in ("event", "id", "retry"):
            continue
        if field != "data":
            raise malformed(url, f"a line that is not server-sent events: {line[:80]!r}")
        value = value.removeprefix(" ")
        if value.strip() == "[DONE]":
            yield None
            return
        try:
            event = json.loads(value)
        except ValueError:
            raise malformed(url, f"an event that is not JSON: {value[:80]!r}") from None
        if not isinstance(event, dict):
            raise malformed(url, f"an event that is not an object: {value[:80]!r}")
        yield event


def malformed(url: str, what: str) -> RemoteError:
    return RemoteError(
        f"The server at {url} sent {what}.",
        "Check that the address points at an OpenAI-compatible chat-completions server.",
    )
