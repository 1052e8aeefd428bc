"""The real built app: the PyInstaller bundle from packaging/hearth.spec, run as a user would run it.

The bundle is built first when build/bundle/ is missing or out of date (`packaging/build.py --if-stale`,
about a minute on two cores). It runs with no screen (Qt's offscreen platform), from an unrelated folder,
with a fresh data folder and none of the development environment, so everything it needs must be inside
it: the embedded default model included. Marked `bundle`: `./dev.sh test` runs these as their own step.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import _link_or_copy, require
from tests.pictures import text_png
from tests.pulse import PulseServer

pytestmark = [pytest.mark.bundle, pytest.mark.timeout(900)]  # the first test waits for the build

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 780
RUN_TIMEOUT_S = 180
# What Qt says on a healthy run with no screen: the offscreen platform has no window manager to pass size
# hints to, and QtMultimedia names the FFmpeg it starts.
QT_NOTES = (
    "This plugin does not support propagateSizeHints()",
    "qt.multimedia.ffmpeg: Using Qt multimedia with FFmpeg",
)


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hearth_bundle_build", REPO / "packaging" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def program() -> Path:
    """The built program, built now if the sources or installed packages changed since the last build."""
    require(importlib.util.find_spec("PyInstaller") is not None, 'PyInstaller is missing: pip install -e ".[bundle]"')
    build = build_script()
    result = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build.py"), "--if-stale"],
        cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"the build failed:\n{result.stdout}\n{result.stderr}"
    path: Path = build.executable()
    assert path.is_file(), result.stdout
    return path


def run_built(
    program: Path, home: Path, *args: str, cwd: Path, sound: PulseServer | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the built program as a user would: no virtual environment, no Python paths, its own data folder,
    and the private sound server when one is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "QT_", "PULSE_"))}
    env.update(HEARTH_HOME=str(home), QT_QPA_PLATFORM="offscreen", PYTHONIOENCODING="utf-8")
    if sound is not None:
        env.update({k: v for k, v in sound.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")})
    return subprocess.run(
        [str(program), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def assert_clean(result: subprocess.CompletedProcess[str], home: Path) -> None:
    """Exit status 0, nothing on stderr but Qt's notes, no error in the log."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    noise = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(QT_NOTES)]
    assert not noise, result.stderr
    log = home / "logs" / "hearth.log"
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    assert " ERROR " not in text and " CRITICAL " not in text and "Traceback" not in text, text


def test_the_built_app_opens_and_answers_with_its_embedded_model(
    program: Path, tmp_path: Path, pulse: PulseServer
) -> None:
    home = tmp_path / "fresh-home"  # a first launch: no data folder, no models
    result = run_built(program, home, "--smoke-test", cwd=tmp_path, sound=pulse)
    assert_clean(result, home)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True, report
    assert 0 < report["window_s"] <= report["model_s"] <= report["reply_s"], report
    assert report["reply"].strip(), report
    assert report["model"] == "smollm2-135m-instruct"
    assert report["engine_process"] == [program.name, "--engine-worker"], "the model did not run in its own process"
    assert report["audio"]["inputs"] >= 1 and report["audio"]["outputs"] >= 1, "QtMultimedia sees the sound server"
    assert not list((home / "models").rglob("*.gguf")), "the embedded model is used in place, not copied"


@pytest.mark.voice
def test_voice_and_pictures_work_in_the_built_app(program: Path, tmp_path: Path, speech_home: Path) -> None:
    """What the smoke test does not reach: Piper and espeak-ng's data, Whisper, the voice detector, echo
    cancellation (one spoken turn), and the OCR models and OpenCV (one picture)."""
    home = tmp_path / "home"
    shutil.copytree(speech_home / "models", home / "models", copy_function=_link_or_copy)
    settings = {"n_threads": 1, "generation": {"temperature": 0.0, "seed": 1, "max_tokens": 24}}
    (home / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    question, answer, picture = tmp_path / "question.wav", tmp_path / "answer.wav", tmp_path / "note.png"

    said = run_built(program, home, "say", "What is the capital of France?", "-o", str(question), cwd=tmp_path)
    assert_clean(said, home)
    turn = run_built(program, home, "voice-turn", str(question), "-o", str(answer), "--json", cwd=tmp_path)
    assert_clean(turn, home)
    heard = json.loads(turn.stdout)
    assert "capital of france" in heard["heard"].lower() and heard["reply"].strip(), heard
    assert answer.stat().st_size > 10_000

    picture.write_bytes(text_png("The secret word is PINEAPPLE", size=40))
    asked = run_built(
        program, home, "ask", "What does the picture say?", "--image", str(picture), "--json", cwd=tmp_path
    )
    assert_clean(asked, home)
    [image] = json.loads(asked.stdout)["images"]
    assert image["ocr_chars"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the desktop entry is for Linux")
def test_the_desktop_entry_installs_from_the_bundle_folder(program: Path, tmp_path: Path) -> None:
    data = tmp_path / "share"
    env = {**os.environ, "XDG_DATA_HOME": str(data), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["sh", str(program.parent / "install-desktop-entry.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    entry = (data / "applications" / "hearth.desktop").read_text(encoding="utf-8")
    assert f'Exec="{program}"' in entry.splitlines() and "Icon=hearth" in entry.splitlines()
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "hearth.png").is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "hearth.svg").is_file()
