"""The remote engine: any OpenAI-compatible chat-completions server (llama.cpp, vLLM, Ollama, LM Studio).

The server applies its own chat template, so the prompt is sent as messages. Replies are
asked for as a stream (server-sent events); a server that answers with one JSON object is
accepted too. This is the one place Hearth opens a network connection for chat, and only to
the configured address.

Token counts come from the server's tokenizer when it offers one (llama.cpp's `/tokenize`,
llama-cpp-python's `/extras/tokenize`); otherwise they are estimated (see `estimate_tokens`).
Either way the chat template's own tokens are approximated by `PER_MESSAGE` per message.
"""

from __future__ import annotations

import base64
import http.client
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from app.engines.llm import ChatMessage, EngineInfo, GenerationStats
from app.engines.remote_http import Endpoint, HttpCall, check_status, is_json, malformed, sse_events
from app.errors import Cancelled, RemoteError
from app.settings import GenerationSettings

log = logging.getLogger("hearth.remote")

PER_MESSAGE = 4  # a chat template's role markers and separators, per message
CHARS_PER_TOKEN = 4  # English text with a BPE tokenizer averages about four characters a token
# Tokenize routes, tried in order: (path under the server root, the field that carries the text).
TOKENIZE_ROUTES = (("/tokenize", "content"), ("/extras/tokenize", "input"))
ESTIMATE = "estimate"


def estimate_tokens(messages: Sequence[ChatMessage]) -> int:
    """Tokens without a tokenizer: characters / 4, plus `PER_MESSAGE` per message."""
    chars = sum(len(m.content) for m in messages)
    return -(-chars // CHARS_PER_TOKEN) + PER_MESSAGE * len(messages)


class RemoteEngine:
    """A model served over HTTP, answering one stream at a time."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        n_ctx: int = 8192,
        timeout_s: float = 30.0,
        pictures: Callable[[str], bytes] | None = None,
    ) -> None:
        """`pictures` (an address → PNG bytes) says the server's model sees: a message's pictures
        then travel as `data:` URLs beside its text. Without it only the text read from them goes."""
        self._endpoint = Endpoint.parse(base_url)
        self._pictures = pictures
        self._api_key = api_key or None
        self._timeout_s = timeout_s
        self._model = model
        self._n_ctx = n_ctx
        self._info = self._make_info()
        self._stats = GenerationStats()
        self._token_route: str | None = None  # a route from TOKENIZE_ROUTES, or ESTIMATE, once known
        self._counted: tuple[tuple[ChatMessage, ...], int] | None = None
        self._lock = threading.Lock()

    def _make_info(self) -> EngineInfo:
        return EngineInfo(
            model_id=self._model, model_name=self._model, backend="remote", n_ctx=self._n_ctx, chat_format="server",
            vision=self._pictures is not None,
        )  # fmt: skip

    def connect(self) -> list[str]:
        """Check the address, the key and the model now rather than at the first reply.

        Returns the models the server offers. With no model named, the first one is used.
        """
        models = self._request_json("GET", self._endpoint.path + "/models")
        listed = models.get("data") if isinstance(models, dict) else None
        ids = [str(m["id"]) for m in listed or [] if isinstance(m, dict) and "id" in m]
        if not self._model:
            if not ids:
                raise RemoteError(
                    f"The server at {self._endpoint.url(self._endpoint.path)} lists no models, and none is set.",
                    "Type the model's name under Remote model in Settings › Model.",
                )
            self._model = ids[0]
            self._info = self._make_info()
        elif ids and self._model not in ids:
            # Some servers take names they do not list (Ollama's "name" for "name:latest"): let the first reply decide.
            log.warning("model %r is not among the server's models %s", self._model, ids[:10])
        log.info("remote engine at %s, model %s", self._endpoint.url(self._endpoint.path), self._model)
        return ids

    # -- the Protocol -------------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def last_stats(self) -> GenerationStats:
        return self._stats

    @property
    def token_route(self) -> str | None:
        """How tokens are counted: a tokenize path, "estimate", or None before the first count."""
        return self._token_route

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        key = tuple(messages)
        if self._counted is not None and self._counted[0] == key:
            return self._counted[1]  # the context planner and the stats ask about the same prompt
        count = self._count(messages)
        self._counted = (key, count)
        return count

    def stream(
        self,
        messages: Sequence[ChatMessage],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        with self._lock:
            yield from self._stream_locked(messages, settings, cancel or threading.Event())

    def close(self) -> None:
        """Nothing is held open between requests: each call has its own connection."""

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], settings: GenerationSettings
    ) -> Any:
        """Servers differ in how (and whether) they hold a reply to a schema: not offered yet."""
        raise RemoteError(
            "The remote engine cannot write answers held to a schema yet.", "Use a local model for tools."
        )

    # -- token counts -------------------------------------------------------------------

    def _count(self, messages: Sequence[ChatMessage]) -> int:
        text = "\n".join(m.content for m in messages)
        routes = (
            TOKENIZE_ROUTES if self._token_route is None else [r for r in TOKENIZE_ROUTES if r[0] == self._token_route]
        )
        for path, field in routes:
            try:
                tokens = self._tokenize(path, field, text)
            except RemoteError:
                return estimate_tokens(messages)  # the server is unreachable now: do not decide for good
            if tokens is not None:
                self._token_route = path
                return tokens + PER_MESSAGE * len(messages)
        self._token_route = ESTIMATE
        return estimate_tokens(messages)

    def _tokenize(self, path: str, field: str, text: str) -> int | None:
        """Token count from this route, or None when the server does not offer it."""
        call = HttpCall(self._endpoint, self._api_key, self._timeout_s)
        try:
            response = call.send("POST", self._endpoint.root + path, {field: text, "model": self._model})
            if response.status != 200 or not is_json(response):
                return None
            data = call.read_json(response)
        finally:
            call.close()
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    # -- generation ---------------------------------------------------------------------

    def _body(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": self._content(m)} for m in messages],
            "stream": True,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
        }
        if settings.seed >= 0:
            body["seed"] = settings.seed
        return body

    def _content(self, message: ChatMessage) -> str | list[dict[str, Any]]:
        if not message.images or self._pictures is None:
            return message.content
        parts: list[dict[str, Any]] = []
        for address in message.images:
            data = base64.b64encode(self._pictures(address)).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
        return [*parts, {"type": "text", "text": message.content}]

    def _stream_locked(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event
    ) -> Iterator[str]:
        started = time.perf_counter()
        prompt_tokens = self.count_tokens(messages)
        # The server's prompt cache is invisible from here: count the whole prompt as evaluated.
        stats = self._stats = GenerationStats(prompt_tokens=prompt_tokens, prompt_evaluated=prompt_tokens)
        clock = _Clock(started, stats)
        call = HttpCall(self._endpoint, self._api_key, self._timeout_s, cancel)
        path = self._endpoint.path + "/chat/completions"
        try:
            response = call.send("POST", path, self._body(messages, settings))
            check_status(response, self._endpoint.url(path), self._api_key is not None)
            if is_json(response):
                yield from self._whole(call, response, clock)
            else:
                yield from self._events(call, response, clock, cancel)
        except Cancelled:
            stats.finish_reason = "cancelled"
        finally:
            call.close()
            clock.finish()

    def _whole(self, call: HttpCall, response: http.client.HTTPResponse, clock: _Clock) -> Iterator[str]:
        """A server that ignored `stream: true` and answered with one JSON completion."""
        url = self._endpoint.url(self._endpoint.path + "/chat/completions")
        data = call.read_json(response)
        choice = _first_choice(data, url)
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise malformed(url, "a completion with no message text")
        clock.stats.finish_reason = _finish(choice.get("finish_reason")) or "stop"
        if text:
            clock.piece()
            yield text
        _apply_usage(clock.stats, data)

    def _events(
        self, call: HttpCall, response: http.client.HTTPResponse, clock: _Clock, cancel: threading.Event
    ) -> Iterator[str]:
        url = self._endpoint.url(self._endpoint.path + "/chat/completions")
        stats = clock.stats
        for event in sse_events(call.lines(response), url):
            if cancel.is_set():
                raise Cancelled()
            if event is None:
                stats.finish_reason = stats.finish_reason or "stop"
                break
            if "error" in event:
                raise RemoteError(
                    f"The server at {url} stopped with an error: {_error_text(event['error'])}",
                    "Check the server's log.",
                )
            if not event.get("choices"):
                _apply_usage(stats, event)
                continue  # servers send usage alone in a last event
            choice = _first_choice(event, url)
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
            if piece:
                clock.piece()
            _apply_usage(stats, event)
            stats.finish_reason = _finish(choice.get("finish_reason")) or stats.finish_reason
            if piece:
                yield str(piece)
        if not stats.finish_reason:
            raise RemoteError(
                f"The server at {url} ended the reply without finishing it.",
                "What arrived is kept. Check the server (it may have stopped or crashed), then regenerate the reply.",
            )

    def _request_json(self, method: str, path: str) -> Any:
        call = HttpCall(self._endpoint, self._api_key, self._timeout_s)
        try:
            response = call.send(method, path)
            check_status(response, self._endpoint.url(path), self._api_key is not None)
            return call.read_json(response)
        finally:
            call.close()


class _Clock:
    """Time to the first piece, decode time, and the piece count that stands in for tokens."""

    def __init__(self, started: float, stats: GenerationStats) -> None:
        self.started = started
        self.stats = stats
        self.first_at = 0.0

    def piece(self) -> None:
        now = time.perf_counter()
        if not self.first_at:
            self.first_at = now
            self.stats.ttft_s = now - self.started
        self.stats.completion_tokens += 1

    def finish(self) -> None:
        self.stats.decode_s = time.perf_counter() - self.first_at if self.first_at else 0.0


def _first_choice(data: Any, url: str) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed(url, "an answer with no choices")
    return choices[0]


def _finish(reason: Any) -> str:
    """The server's finish reason in Hearth's terms: "length" when cut by max_tokens, else "stop"."""
    if not reason:
        return ""
    return "length" if reason == "length" else "stop"


def _apply_usage(stats: GenerationStats, data: dict[str, Any]) -> None:
    """Counts from the server, when it sends them, replace the piece count and the estimate."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return
    completion, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
    if isinstance(completion, int) and completion > 0:
        stats.completion_tokens = completion
    if isinstance(prompt, int) and prompt > 0:
        stats.prompt_tokens = stats.prompt_evaluated = prompt


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
