"""The local engine on the real SmolLM2 file (temperature 0): streaming, cancel, KV reuse, templates."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.core.conversation import ChatMessage
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.errors import ModelError, PromptError
from app.settings import GenerationSettings
from tests.fixtures.tiny_gguf import write_tiny_llama

GREEDY = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=48, seed=7)
SYSTEM = ChatMessage("system", "You are a helpful assistant.")


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> LlamaCppEngine:
    e = LlamaCppEngine(smollm2_path, model_id="smollm2-135m-instruct", n_ctx=2048, n_threads=2)
    yield e
    e.close()


def test_loads_with_the_gguf_template_on_cpu(engine: LlamaCppEngine) -> None:
    info = engine.info
    assert info.backend == "CPU" and info.gpu_layers == 0
    assert info.chat_format == "gguf" and info.n_ctx == 2048
    assert "<|im_start|>assistant" in engine.template.render([SYSTEM, ChatMessage("user", "hi")])


def test_streams_deterministically_at_temperature_zero(engine: LlamaCppEngine) -> None:
    prompt = [SYSTEM, ChatMessage("user", "What is the capital of France?")]
    pieces = list(engine.stream(prompt, GREEDY))
    assert len(pieces) > 2, "text arrives in pieces, not at once"
    text = "".join(pieces)
    assert "Paris" in text
    stats = engine.last_stats
    assert stats.finish_reason == "stop" and stats.completion_tokens >= len(pieces) - 1
    assert stats.ttft_s > 0 and stats.tokens_per_s > 0
    assert "".join(engine.stream(prompt, GREEDY)) == text


def test_cancel_between_tokens(engine: LlamaCppEngine) -> None:
    cancel = threading.Event()
    prompt = [SYSTEM, ChatMessage("user", "Write a long story about a dragon.")]
    got = []
    for piece in engine.stream(prompt, GenerationSettings(temperature=0.0, max_tokens=200, seed=1), cancel):
        got.append(piece)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3
    assert engine.last_stats.finish_reason == "cancelled"


def test_kv_cache_is_reused_across_turns(engine: LlamaCppEngine) -> None:
    turn1 = [SYSTEM, ChatMessage("user", "Name a colour.")]
    reply = "".join(engine.stream(turn1, GREEDY))
    first = engine.last_stats
    assert first.prompt_evaluated >= first.prompt_tokens - 1 or first.prompt_evaluated > 0
    turn2 = turn1 + [ChatMessage("assistant", reply), ChatMessage("user", "Name another one.")]
    "".join(engine.stream(turn2, GREEDY))
    second = engine.last_stats
    new_tail = engine.count_tokens(turn2) - engine.count_tokens(turn1)
    # Only the new tail (the reply's closing tokens and the new question) is evaluated.
    assert second.prompt_evaluated < second.prompt_tokens / 2
    assert second.prompt_evaluated <= new_tail + 2


def test_prefill_reads_the_known_prompt_ahead_and_changes_nothing(engine: LlamaCppEngine) -> None:
    system = ChatMessage("system", "You are a patient teacher who explains things in plain words to curious people.")
    question = [system, ChatMessage("user", "What is rain?")]
    plain = "".join(engine.stream([ChatMessage("system", "Another prompt entirely, to empty the cache.")], GREEDY))
    plain = "".join(engine.stream(question, GREEDY))
    cold = engine.last_stats.prompt_evaluated
    "".join(engine.stream([ChatMessage("system", "Another prompt entirely, to empty the cache.")], GREEDY))

    evaluated = engine.prefill([system])
    assert evaluated > 10  # the instructions and the user-turn header
    assert engine.prefill([system]) == 0  # already read
    warm = "".join(engine.stream(question, GREEDY))
    assert warm == plain
    assert engine.last_stats.prompt_evaluated <= cold - evaluated + 1


def test_prompt_longer_than_the_context_is_refused(engine: LlamaCppEngine) -> None:
    huge = [SYSTEM, ChatMessage("user", "word " * 3000)]
    with pytest.raises(PromptError) as info:
        list(engine.stream(huge, GREEDY))
    assert "context" in str(info.value)


def test_fallback_template_when_the_gguf_has_none(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    tiny = LlamaCppEngine(path, model_id="tiny", n_ctx=256, n_threads=1)
    try:
        assert tiny.info.chat_format == "chatml"
        out = list(tiny.stream([SYSTEM, ChatMessage("user", "hi")], GenerationSettings(temperature=0.0, max_tokens=8)))
        assert tiny.last_stats.completion_tokens > 0 or out == []
        assert tiny.last_stats.finish_reason in ("stop", "length")
    finally:
        tiny.close()


def test_a_named_chat_format_overrides_the_gguf_template(smollm2_path: Path) -> None:
    e = LlamaCppEngine(smollm2_path, model_id="s", n_ctx=512, n_threads=2, chat_format="plain")
    try:
        assert e.info.chat_format == "plain"
        assert e.template.render([ChatMessage("user", "hi")]).endswith("Assistant:")
    finally:
        e.close()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p, ["does not exist", "not found"]),
        (lambda p: (p.write_text("hello, I am not a model"), p)[1], ["not a gguf"]),
        (lambda p: (p.write_bytes(b""), p)[1], ["not a gguf", "empty"]),
    ],
    ids=["missing", "text-file", "empty-file"],
)
def test_bad_model_files_give_clear_errors(tmp_path: Path, make, words) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path / "model.gguf")
    with pytest.raises(ModelError) as info:
        LlamaCppEngine(path, model_id="x", n_ctx=256)
    text = str(info.value).lower()
    assert any(w in text for w in words), text
    assert info.value.hint


def test_truncated_gguf(tmp_path: Path, smollm2_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as src:
        cut.write_bytes(src.read(5_000_000))
    with pytest.raises(ModelError) as info:
        LlamaCppEngine(cut, model_id="cut", n_ctx=256)
    assert "truncated" in str(info.value).lower() or "incomplete" in str(info.value).lower()


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "odd.gguf", architecture="hearthformer")
    with pytest.raises(ModelError) as info:
        LlamaCppEngine(path, model_id="odd", n_ctx=256)
    assert "hearthformer" in str(info.value)


def test_out_of_memory_on_load_is_explained(smollm2_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        LlamaCppEngine(smollm2_path, model_id="big", n_ctx=200_000_000, n_threads=1)
    assert "memory" in str(info.value).lower() and "context" in info.value.hint.lower()


def test_a_structured_answer_is_held_to_its_schema(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    asked = [ChatMessage("user", "Describe a person called Ann, aged 31, as JSON.")]
    value = engine.complete_json(asked, schema, GenerationSettings(max_tokens=60, temperature=0.9, seed=3))
    assert set(value) == {"name", "age"} and isinstance(value["age"], int) and "Ann" in value["name"]
    # A reply that cannot be finished inside the budget is an error that says so, not broken JSON.
    story = [ChatMessage("user", "Write a very long story about Ann as JSON.")]
    with pytest.raises(ModelError, match="cut off"):
        engine.complete_json(
            story, {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]},
            GenerationSettings(max_tokens=8),
        )  # fmt: skip
    assert "Paris" in "".join(engine.stream([SYSTEM, ChatMessage("user", "What is the capital of France?")], GREEDY))
