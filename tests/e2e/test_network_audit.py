"""Nothing leaves the machine: `hearth ask` under an audit hook that records every socket it opens.

The hook is installed by a `sitecustomize.py` placed on PYTHONPATH, so it is in place before
Hearth's first import and sees every `socket.connect` and `socket.getaddrinfo`, whichever
library makes them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.hearth_cli import FAST, HEARTH, REPO, TIMEOUT_S, assert_ok, hearth_env, open_store, write_settings
from tests.e2e.remote_kit import MODEL_ALIAS, LlamaServer

SITECUSTOMIZE = """
import json, os, sys

_LOG = os.environ["HEARTH_AUDIT_LOG"]


def _record(*item):
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(item) + "\\n")


def _hook(event, args):
    if event == "socket.connect":
        address = args[1]
        _record(event, list(address[:2]) if isinstance(address, tuple) else str(address))
    elif event == "socket.getaddrinfo":
        _record(event, [str(args[0]), args[1]])


_record("installed")
sys.addaudithook(_hook)
"""


def _ask_audited(home: Path, tmp_path: Path, prompt: str, *extra: str) -> list[list[object]]:
    """Run `hearth ask` with the audit hook; return what it recorded after "installed"."""
    result, records = _audited(home, tmp_path, "ask", prompt, *FAST, *extra)
    assert_ok(result)
    return records


def _audited(home: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[list[object]]]:
    """Run `hearth ARGS…` with the audit hook: its result, and what the hook recorded after "installed"."""
    hook_dir, log = tmp_path / "audit", tmp_path / "audit.log"
    hook_dir.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = {**hearth_env(home), "PYTHONPATH": str(hook_dir), "HEARTH_AUDIT_LOG": str(log)}
    result = subprocess.run([*HEARTH, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert records[0] == ["installed"], "the audit hook was not installed, so it proves nothing"
    # Every Python process Hearth starts (the model's worker) inherits the hook and says so.
    return result, [record for record in records[1:] if record != ["installed"]]


def test_the_local_engine_opens_no_connection(cli_home: Path, tmp_path: Path) -> None:
    assert _ask_audited(cli_home, tmp_path, "What is the capital of France?") == []
    installed = (tmp_path / "audit.log").read_text(encoding="utf-8").count('["installed"]')
    assert installed >= 2, "the model's worker process was not audited with the app"


def test_the_remote_engine_connects_only_to_its_server(
    llama_server: LlamaServer, hearth_home: Path, tmp_path: Path
) -> None:
    write_settings(hearth_home, engine="remote", remote_url=llama_server.url, remote_model=MODEL_ALIAS, n_ctx=512)
    records = _ask_audited(hearth_home, tmp_path, "Hello there.")
    assert records, "the remote engine must have connected"
    assert {(event, tuple(where)) for event, where in records} <= {
        ("socket.getaddrinfo", ("127.0.0.1", llama_server.port)),
        ("socket.connect", ("127.0.0.1", llama_server.port)),
    }
    with open_store(hearth_home) as store:
        [conversation] = store.list_conversations()
        reply = store.messages(conversation.id)[-1]
    assert (reply.status, reply.model_id) == ("complete", MODEL_ALIAS)


def test_pictures_open_no_connection(cli_home: Path, tmp_path: Path) -> None:
    from tests.pictures import text_png

    picture = tmp_path / "sign.png"
    picture.write_bytes(text_png("OPEN 9 TO 5"))
    assert _ask_audited(cli_home, tmp_path, "What does the sign say?", "--image", str(picture)) == []


@pytest.mark.voice
def test_a_voice_turn_opens_no_connection(cli_home: Path, speech_home: Path, tmp_path: Path) -> None:
    import shutil

    from app.voice.audiofile import save_wav
    from app.voice.tts import Voice
    from app.voice.utterances import piper_utterances
    from tests.conftest import _link_or_copy
    from tests.speech_models import speech_model_paths

    shutil.copytree(speech_home / "models", cli_home / "models", copy_function=_link_or_copy, dirs_exist_ok=True)
    question = piper_utterances(
        Voice(speech_model_paths(speech_home)[1], threads=1), ["What is the capital of France?"]
    )[0]
    recording = tmp_path / "question.wav"
    save_wav(recording, question.samples)
    result, records = _audited(cli_home, tmp_path, "voice-turn", str(recording), "-o", str(tmp_path / "answer.wav"))
    assert_ok(result)
    assert records == []


def test_a_model_not_downloaded_yet_is_refused_without_a_connection(cli_home: Path, tmp_path: Path) -> None:
    """Choosing a model is not asking for a download: that is the Models page's or `hearth models fetch`'s job."""
    result, records = _audited(cli_home, tmp_path, "ask", "Hello", "--model", "smolvlm-256m-instruct")
    assert result.returncode != 0 and "is not on this computer yet" in result.stderr, result.stderr
    assert "hearth models fetch smolvlm-256m-instruct" in result.stderr
    assert records == []
