"""The model in its own process: real children, real signals, the real default model.

A native fault (illegal instruction, segmentation fault, an out-of-memory kill) must cost the reply
in progress, never the app: the error says why in words, what was written is kept, and the next
turn works with no step from the user. Faults are made on purpose through the worker's test hook
(`HEARTH_TEST_ENGINE_FAULT`, see `app.engines.worker_main`), or by killing the child.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import psutil
import pytest

from app.core.conversation import ChatMessage
from app.core.turn import ChatSession, add_user_message
from app.engines.probe import VERDICTS, check_engine_runs
from app.engines.worker import LoadCrashes, ModelSpec, WorkerEngine
from app.engines.worker_main import FAULT_ENV
from app.errors import EngineCrashed, ModelError
from app.runtime import Profile, load_engine
from app.settings import GenerationSettings, Settings

pytestmark = pytest.mark.model

GREEDY = GenerationSettings(max_tokens=24, temperature=0.0, seed=1)
LONG = GenerationSettings(max_tokens=400, temperature=0.0, seed=1)
SYSTEM = ChatMessage("system", "You are a helpful assistant.")
QUESTION = [SYSTEM, ChatMessage("user", "What is the capital of France?")]
STORY = [SYSTEM, ChatMessage("user", "Write a long story about a lighthouse keeper.")]


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether the process ends within `timeout` (psutil waits on the process itself, not a clock)."""
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.fixture
def engine(smollm2_path: Path) -> WorkerEngine:
    engine = WorkerEngine(ModelSpec(smollm2_path, "smollm2-135m-instruct", n_ctx=1024, n_threads=2))
    yield engine
    engine.close()


def test_a_reply_streams_from_the_worker_and_the_kv_cache_holds_across_turns(engine: WorkerEngine) -> None:
    assert engine.pid is not None and engine.pid != os.getpid()
    first = "".join(engine.stream(QUESTION, GREEDY))
    assert "Paris" in first
    stats = engine.last_stats
    assert stats.prompt_evaluated == stats.prompt_tokens and stats.completion_tokens > 0 and stats.ttft_s > 0
    follow_up = [*QUESTION, ChatMessage("assistant", first), ChatMessage("user", "And of Italy?")]
    assert engine.count_tokens(follow_up) == len(engine.tokenize_prompt(follow_up))
    "".join(engine.stream(follow_up, GREEDY))
    again = engine.last_stats
    assert again.prompt_evaluated < again.prompt_tokens / 2, "the second turn re-read the whole prompt"


def test_stop_and_walking_away_end_the_reply_and_the_next_one_is_whole(engine: WorkerEngine) -> None:
    cancel = threading.Event()
    pieces = 0
    for _ in engine.stream(STORY, LONG, cancel):
        pieces += 1
        if pieces == 3:
            cancel.set()
    assert engine.last_stats.finish_reason == "cancelled" and pieces < 20
    stream = engine.stream(STORY, LONG)
    next(stream)
    stream.close()  # the caller walks away mid-reply
    assert "Paris" in "".join(engine.stream(QUESTION, GREEDY))
    assert engine.restarts == 0


def test_a_killed_worker_costs_the_reply_and_the_next_turn_works(engine: WorkerEngine) -> None:
    first_pid = engine.pid
    assert first_pid is not None
    with pytest.raises(EngineCrashed) as crashed:
        for n, _ in enumerate(engine.stream(STORY, LONG)):
            if n == 3:
                os.kill(first_pid, signal.SIGKILL)
    assert crashed.value.signal_name == "SIGKILL" and crashed.value.phase == "reply"
    assert "killed" in crashed.value.message and "out of memory" in crashed.value.message
    assert "started the model again" in crashed.value.hint
    assert "Paris" in "".join(engine.stream(QUESTION, GREEDY)), "the next turn did not work"
    assert engine.restarts == 1 and engine.pid not in (None, first_pid)
    assert _gone(first_pid)


def test_closing_the_engine_ends_its_process(engine: WorkerEngine) -> None:
    pid = engine.pid
    assert pid is not None and psutil.pid_exists(pid)
    engine.close()
    assert _gone(pid), "the model's process outlived close(): its memory was not given back"
    with pytest.raises(ModelError):
        engine.count_tokens(QUESTION)


def test_a_fault_while_replying_keeps_the_words_written_and_marks_them_interrupted(
    home_with_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(FAULT_ENV, f"decode:SIGSEGV:{tmp_path / 'faulted-once'}")
    profile = Profile.open()
    engine = load_engine(profile)
    try:
        session = ChatSession(profile.store, engine, Settings(generation=GREEDY))
        user = add_user_message(profile.store, None, "What is the capital of France?")
        with pytest.raises(EngineCrashed) as crashed:
            list(session.reply(user.conversation_id))
        assert "segmentation fault" in crashed.value.message
        reply = profile.store.messages(user.conversation_id)[-1]
        assert reply.role == "assistant" and reply.status == "interrupted"
        assert reply.content.strip(), "the first words, streamed before the fault, were lost"
        assert reply.meta["engine_crash"] == "SIGSEGV"
        # The fault happened once (its marker file exists now): the restarted process answers.
        list(session.regenerate(user.conversation_id))
        assert "Paris" in profile.store.messages(user.conversation_id)[-1].content
    finally:
        engine.close()
        profile.close()


@pytest.mark.parametrize("fault", ["SIGILL", "SIGSEGV"])
def test_a_model_that_crashes_while_loading_is_explained_and_not_loaded_again_twice(
    home_with_model: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setenv(FAULT_ENV, f"load:{fault}")
    profile = Profile.open()
    words = {"SIGILL": "instruction your processor refuses", "SIGSEGV": "segmentation fault"}[fault]
    for attempt in (1, 2):
        with pytest.raises(EngineCrashed) as crashed:
            load_engine(profile)
        assert crashed.value.phase == "load" and words in crashed.value.message
        assert profile.load_crashes.count("smollm2-135m-instruct") == attempt
    # A third start (the app opened again) does not try: no crash loop.
    monkeypatch.delenv(FAULT_ENV)
    with pytest.raises(ModelError) as refused:
        load_engine(profile)
    assert not isinstance(refused.value, EngineCrashed)
    assert "twice in a row" in refused.value.message and words in refused.value.message
    assert "Use this model" in refused.value.hint
    # The user asks for it again: it loads, and the record is cleared.
    engine = load_engine(profile, retry_crashed=True)
    try:
        assert "Paris" in "".join(engine.stream(QUESTION, GREEDY))
        assert profile.load_crashes.count("smollm2-135m-instruct") == 0
    finally:
        engine.close()
        profile.close()


def test_a_crash_while_loading_after_a_restart_is_reported_at_the_next_turn(
    smollm2_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    crashes = LoadCrashes(tmp_path / "crashes.json")
    engine = WorkerEngine(ModelSpec(smollm2_path, "smollm2", n_ctx=1024, n_threads=2), crashes)
    try:
        monkeypatch.setenv(FAULT_ENV, "load:SIGABRT")  # children started from now on die while loading
        pid = engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineCrashed):
            engine.count_tokens(QUESTION)
        with pytest.raises(EngineCrashed) as crashed:
            engine.count_tokens(QUESTION)  # waits for the restart, which died while loading
        assert crashed.value.phase == "load" and "aborted" in crashed.value.message
        monkeypatch.delenv(FAULT_ENV)
        assert engine.count_tokens(QUESTION) > 0, "asked again, the engine did not start once more"
    finally:
        engine.close()


def test_the_probe_passes_on_this_build_and_its_verdict_is_kept(tmp_path: Path) -> None:
    check_engine_runs(tmp_path)
    assert '"ok": true' in (tmp_path / VERDICTS).read_text()
    (tmp_path / "probe-model-q4.gguf").unlink()
    check_engine_runs(tmp_path)  # known: no child, no model file needed
    assert not (tmp_path / "probe-model-q4.gguf").exists()


def test_a_build_that_traps_is_found_by_the_probe_and_said_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "probe:SIGILL")  # the child executes an illegal instruction
    with pytest.raises(EngineCrashed) as trapped:
        check_engine_runs(tmp_path)
    assert trapped.value.signal_name == "SIGILL" and trapped.value.phase == "probe"
    assert "uses an instruction your processor refuses" in trapped.value.message
    assert "Rebuild the engine" in trapped.value.hint
    monkeypatch.delenv(FAULT_ENV)
    with pytest.raises(EngineCrashed):  # the verdict is kept for this build and CPU
        check_engine_runs(tmp_path)


def test_load_engine_refuses_to_load_on_a_build_that_traps(
    home_with_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(FAULT_ENV, "probe:SIGILL")
    profile = Profile.open()
    try:
        with pytest.raises(EngineCrashed, match="illegal instruction"):
            load_engine(profile)
    finally:
        profile.close()


def test_hearth_ask_reports_a_crash_mid_reply_and_keeps_the_conversation(
    home_with_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.hearth_cli import ask, assert_fails_clearly, open_store

    first = ask(home_with_model, "What is the capital of France?")
    assert first.returncode == 0, first.stderr
    monkeypatch.setenv(FAULT_ENV, "decode:SIGILL")
    crashed = ask(home_with_model, "And the capital of Italy?", "--conversation", "1")
    assert_fails_clearly(crashed, "illegal instruction", "Rebuild the engine")
    with open_store(home_with_model) as store:
        messages = store.messages(1)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].status == "complete" and "Paris" in messages[1].content
    assert (messages[2].content, messages[3].status) == ("And the capital of Italy?", "interrupted")
    assert messages[3].meta["engine_crash"] == "SIGILL"


def test_the_model_process_ends_when_the_app_is_killed(home_with_model: Path) -> None:
    import subprocess

    from tests.e2e.hearth_cli import HEARTH, REPO, hearth_env

    app = subprocess.Popen(
        [*HEARTH, "ask", "Write a long story about a lighthouse keeper.", "--max-tokens", "400"],
        cwd=REPO,
        env=hearth_env(home_with_model),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert app.stdout is not None and app.stdout.read(1), "the reply never started"
        workers = psutil.Process(app.pid).children()
        assert [w for w in workers if "app.engines.worker_main" in " ".join(w.cmdline())], "no model process"
        app.kill()
        app.wait(timeout=10)
        _, left = psutil.wait_procs(workers, timeout=10)
        assert left == [], "the model's process outlived the app"
    finally:
        app.kill()
        app.wait(timeout=10)


def test_a_structured_answer_follows_its_schema_through_the_worker(engine: WorkerEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"tool": {"enum": ["none", "calculator"]}, "confidence": {"type": "integer"}},
        "required": ["tool", "confidence"],
    }
    asked = [*QUESTION, ChatMessage("user", "Which tool answers that, and how sure are you from 0 to 10? JSON.")]
    value = engine.complete_json(asked, schema, GenerationSettings(max_tokens=40, temperature=0.0, seed=1))
    assert value["tool"] in ("none", "calculator") and isinstance(value["confidence"], int)
    assert engine.info.structured and engine.last_stats.completion_tokens > 0
    assert "Paris" in "".join(engine.stream(QUESTION, GREEDY)), "the engine streams as before afterwards"
