"""The remote engine against a real llama-cpp-python server, and against stub servers that misbehave."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.conversation import ChatMessage
from app.core.store import Store
from app.core.turn import ChatSession, ReplyFinished, TextDelta, TurnEvent, add_user_message
from app.engines.remote import ESTIMATE, RemoteEngine, estimate_tokens
from app.errors import RemoteError
from app.runtime import API_KEY_ENV, load_remote_engine
from app.settings import GenerationSettings, Settings
from tests.e2e.remote_kit import MODEL_ALIAS, LlamaServer, Stub, closed_port_url
from tests.fakes import FakeEngine

SHORT = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=16, seed=1)
# Long enough to stop part-way; llama-cpp-python's server is slower to start the larger max_tokens is.
LONG = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=64, seed=1)
PROMPT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello to the world.")]
PROMPT_S = 3.0  # "promptly": far below any timeout in play, far above a scheduler hiccup

StubFactory = Callable[..., Stub]


@pytest.fixture
def stubs() -> Iterator[StubFactory]:
    started: list[Stub] = []

    def start(mode: str, api_key: str = "") -> Stub:
        started.append(Stub(mode, api_key))
        return started[-1]

    yield start
    for stub in started:
        stub.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "hearth.db") as opened:
        yield opened


def _session(store: Store, engine: RemoteEngine | FakeEngine, generation: GenerationSettings = SHORT) -> ChatSession:
    return ChatSession(store, engine, Settings(n_ctx=512, generation=generation))


def _ask(session: ChatSession, text: str, conversation_id: int | None = None) -> tuple[int, list[TurnEvent]]:
    user = add_user_message(session.store, conversation_id, text)
    return user.conversation_id, list(session.reply(user.conversation_id))


def _finished(events: list[TurnEvent]) -> ReplyFinished:
    return next(e for e in events if isinstance(e, ReplyFinished))


# -- the real server ---------------------------------------------------------------------------


def test_streams_a_reply_into_the_store(llama_server: LlamaServer, store: Store) -> None:
    engine = RemoteEngine(llama_server.url, MODEL_ALIAS, n_ctx=512)
    assert engine.connect() == [MODEL_ALIAS]
    info = engine.info
    assert (info.backend, info.model_name, info.chat_format, info.n_ctx) == ("remote", MODEL_ALIAS, "server", 512)
    _, events = _ask(_session(store, engine), "Say hello.")
    pieces = [e.text for e in events if isinstance(e, TextDelta)]
    final = _finished(events)
    assert len(pieces) > 1, "the reply arrives in pieces"
    assert final.message.status == "complete" and final.message.model_id == MODEL_ALIAS
    assert store.get_message(final.message.id).content == "".join(pieces)
    stats = final.stats
    assert stats.finish_reason in ("stop", "length") and stats.completion_tokens >= len(pieces)
    assert stats.ttft_s > 0 and stats.prompt_tokens > 0


def test_a_conversation_continues_across_an_engine_switch(llama_server: LlamaServer, store: Store) -> None:
    cid, _ = _ask(_session(store, FakeEngine(["Local answer."])), "First question.")
    _, events = _ask(_session(store, RemoteEngine(llama_server.url, MODEL_ALIAS, n_ctx=512)), "Second question.", cid)
    assert _finished(events).message.status == "complete"
    replies = [m for m in store.messages(cid) if m.role == "assistant"]
    assert [m.model_id for m in replies] == ["fake", MODEL_ALIAS]


def test_stop_mid_stream_keeps_what_arrived(llama_server: LlamaServer, store: Store) -> None:
    engine = RemoteEngine(llama_server.url, MODEL_ALIAS, n_ctx=512)
    session = _session(store, engine, LONG)
    user = add_user_message(store, None, "Tell me a long story.")
    cancel, pieces = threading.Event(), []
    for event in session.reply(user.conversation_id, cancel):
        if isinstance(event, TextDelta):
            pieces.append(event.text)
            cancel.set()
        if isinstance(event, ReplyFinished):
            final = event
    assert final.message.status == "stopped" and final.stats.finish_reason == "cancelled"
    assert len(pieces) == 1 and final.message.content == pieces[0]
    assert list(engine.stream(PROMPT, SHORT)), "the server still answers after a dropped connection"


def test_counts_tokens_with_the_servers_tokenizer(llama_server: LlamaServer) -> None:
    from llama_cpp import Llama

    engine = RemoteEngine(llama_server.url, MODEL_ALIAS, n_ctx=512)
    counted = engine.count_tokens(PROMPT)
    assert engine.token_route == "/extras/tokenize"
    vocab = Llama(str(llama_server.model_path), vocab_only=True, verbose=False)
    text = "\n".join(m.content for m in PROMPT)
    assert counted == len(vocab.tokenize(text.encode("utf-8"), special=True)) + 4 * len(PROMPT)
    vocab.close()


def test_a_wrong_base_url_says_so(llama_server: LlamaServer) -> None:
    engine = RemoteEngine(llama_server.url.removesuffix("/v1") + "/wrong", MODEL_ALIAS)
    with pytest.raises(RemoteError, match="HTTP 404") as caught:
        engine.connect()
    assert "base URL" in caught.value.hint


# -- unreachable, refused, odd answers ------------------------------------------------------------


def test_an_unreachable_server_is_a_clear_error(store: Store) -> None:
    url = closed_port_url()
    with pytest.raises(RemoteError, match="Cannot reach") as caught:
        load_remote_engine(Settings(engine="remote", remote_url=url))
    assert "server is running" in caught.value.hint
    engine = RemoteEngine(url, "any")
    with pytest.raises(RemoteError, match="Cannot reach"):
        _ask(_session(store, engine), "Hello?")
    assert engine.token_route is None, "an unreachable server does not settle how tokens are counted"
    reply = store.messages(1)[-1]
    assert (reply.role, reply.status, reply.content) == ("assistant", "error", "")


def test_remote_engine_needs_an_address() -> None:
    with pytest.raises(RemoteError, match="no server address"):
        load_remote_engine(Settings(engine="remote"))


def test_the_api_key_is_sent_as_a_bearer_token(stubs: StubFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = stubs("auth", api_key="sekret")
    settings = Settings(engine="remote", remote_url=stub.url)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(RemoteError, match="HTTP 401: Invalid API key") as caught:
        load_remote_engine(settings)
    assert "needs an API key" in caught.value.hint and API_KEY_ENV in caught.value.hint
    monkeypatch.setenv(API_KEY_ENV, "wrong")
    with pytest.raises(RemoteError, match="HTTP 401") as caught:
        load_remote_engine(settings)
    assert "a key this server accepts" in caught.value.hint
    monkeypatch.setenv(API_KEY_ENV, "sekret")
    engine = load_remote_engine(settings)
    assert engine.info.model_id == "stub-model", "with no model named, the server's first is used"
    assert "".join(engine.stream(PROMPT, SHORT)) == "".join(Stub.PIECES)


def test_a_server_that_does_not_stream_is_accepted(stubs: StubFactory) -> None:
    engine = RemoteEngine(stubs("json").url, "stub-model")
    assert list(engine.stream(PROMPT, SHORT)) == ["The whole answer at once."]
    stats = engine.last_stats
    assert (stats.finish_reason, stats.completion_tokens, stats.prompt_tokens) == ("stop", 6, 11)


def test_without_a_tokenizer_tokens_are_estimated_once_decided(stubs: StubFactory) -> None:
    stub = stubs("ok")
    engine = RemoteEngine(stub.url, "stub-model")
    assert engine.count_tokens(PROMPT) == estimate_tokens(PROMPT)
    assert engine.token_route == ESTIMATE
    asked = list(stub.paths)
    assert asked == ["/tokenize", "/extras/tokenize"]
    engine.count_tokens(PROMPT[:1])
    assert stub.paths == asked, "the answer is remembered: no more tokenize requests"


@pytest.mark.parametrize(("mode", "says"), [("malformed", "not JSON"), ("not_sse", "not server-sent events")])
def test_a_malformed_stream_is_a_clear_error(stubs: StubFactory, store: Store, mode: str, says: str) -> None:
    engine = RemoteEngine(stubs(mode).url, "stub-model")
    with pytest.raises(RemoteError, match=says) as caught:
        _ask(_session(store, engine), "Hello?")
    assert "OpenAI-compatible" in caught.value.hint
    reply = store.messages(1)[-1]
    assert reply.status == "error" and reply.content == ("ok" if mode == "malformed" else "")


def test_a_slow_server_times_out_clearly(stubs: StubFactory) -> None:
    engine = RemoteEngine(stubs("slow").url, "stub-model", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"sent nothing for 0\.5 s") as caught:
        list(engine.stream(PROMPT, SHORT))
    assert time.monotonic() - started < PROMPT_S
    assert "try again" in caught.value.hint


def test_stop_while_waiting_for_the_first_byte_returns_promptly(stubs: StubFactory) -> None:
    stub = stubs("slow")
    engine = RemoteEngine(stub.url, "stub-model", timeout_s=30)
    cancel = threading.Event()

    def stop_once_asked() -> None:
        stub.arrived.wait(timeout=10)
        cancel.set()

    threading.Thread(target=stop_once_asked, daemon=True).start()
    started = time.monotonic()
    assert list(engine.stream(PROMPT, SHORT, cancel)) == []
    assert time.monotonic() - started < PROMPT_S
    assert engine.last_stats.finish_reason == "cancelled"


@pytest.mark.parametrize("mode", ["die_eof", "die_chunked"])
def test_a_server_that_dies_mid_stream_leaves_the_partial_reply(stubs: StubFactory, store: Store, mode: str) -> None:
    engine = RemoteEngine(stubs(mode).url, "stub-model")
    with pytest.raises(RemoteError) as caught:
        _ask(_session(store, engine), "Hello?")
    assert "What arrived is kept" in caught.value.hint
    reply = store.messages(1)[-1]
    assert (reply.status, reply.content) == ("error", "".join(Stub.PIECES))
    assert reply.meta["error"] == str(caught.value)


def test_pictures_travel_as_data_urls_when_the_servers_model_sees(stubs: StubFactory, tmp_path: Path) -> None:
    from app.core.images import ImageStore, normalise
    from tests.pictures import plain_png

    pictures = ImageStore(tmp_path / "images")
    picture = normalise(plain_png(), name="red.png")
    pictures.put(picture)
    message = ChatMessage("user", "What colour is this?", (picture.sha256,))
    stub = stubs("ok")

    seeing = RemoteEngine(stub.url, "stub-model", pictures=lambda sha: pictures.get(sha).read_bytes())
    assert seeing.info.vision
    assert "".join(seeing.stream([message], SHORT)) == "".join(Stub.PIECES)
    image, text = stub.bodies[-1]["messages"][0]["content"]
    assert text == {"type": "text", "text": "What colour is this?"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,iVBOR")

    blind = RemoteEngine(stub.url, "stub-model")
    assert not blind.info.vision
    list(blind.stream([message], SHORT))
    assert stub.bodies[-1]["messages"][0]["content"] == "What colour is this?", (
        "only the text goes to a model that cannot see"
    )


def test_the_setting_decides_whether_pictures_are_sent(stubs: StubFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    stub = stubs("ok")
    assert not load_remote_engine(Settings(engine="remote", remote_url=stub.url), pictures=lambda sha: b"").info.vision
    assert load_remote_engine(
        Settings(engine="remote", remote_url=stub.url, remote_vision=True), pictures=lambda sha: b""
    ).info.vision
