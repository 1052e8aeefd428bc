"""`hearth models` through `run(args)`, on the per-test HEARTH_HOME, with a catalog served from 127.0.0.1."""

from __future__ import annotations

import argparse
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.catalog import cli
from app.catalog.catalog import Catalog, ModelFile, ModelSource, PackagePart, entry_to_dict, load_catalog
from app.catalog.cli import ProgressLine, add_parser, run
from tests.catalog.helpers import Served, install_fake_distribution, serve, sha256, url_entry, write_gguf

DATA = os.urandom(300_000)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hearth")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["models", *argv])


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Served]:
    """The CLI's catalog: one model downloadable from a loopback server."""
    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url, model_id="loopback-model")
        catalog_file = tmp_path / "catalog.toml"
        catalog_file.write_text(_toml(entry_to_dict(entry)))
        monkeypatch.setattr(cli, "load_catalog", lambda: load_catalog(catalog_file))
        yield served


def _toml(entry: dict[str, object]) -> str:
    source = entry.pop("source")
    assert isinstance(source, dict)
    lines = ["[[model]]", *(f"{key} = {json.dumps(value)}" for key, value in entry.items()), "[model.source]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in source.items()]
    return "\n".join(lines) + "\n"  # JSON scalars and lists are valid TOML values


def listing(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    assert run(parse("list", "--json")) == 0
    return {row["id"]: row for row in json.loads(capsys.readouterr().out)}


def test_list_shows_the_shipped_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("list")) == 0
    out = capsys.readouterr().out
    assert "*  smollm2-135m-instruct" in out
    assert "qwen2.5-coder-0.5b-instruct" in out and "491.4" in out and "missing" in out
    rows = listing(capsys)
    assert rows["smollm2-135m-instruct"]["default"] is True
    assert rows["qwen2.5-coder-0.5b-instruct"]["size"] == 491400064


def test_fetch_then_verify(served: Served, capsys: pytest.CaptureFixture[str], hearth_home: Path) -> None:
    assert listing(capsys)["loopback-model"]["status"] == "missing"
    assert run(parse("fetch", "loopback-model")) == 0
    captured = capsys.readouterr()
    assert "fetched and verified" in captured.out
    assert "Downloading" in captured.err
    assert (hearth_home / "models" / "loopback-model.gguf").read_bytes() == DATA
    assert listing(capsys)["loopback-model"]["status"] == "verified"
    assert run(parse("fetch", "loopback-model")) == 0
    assert "already here" in capsys.readouterr().out
    assert served.ranges == [None]
    assert run(parse("verify")) == 0
    assert "loopback-model: ok" in capsys.readouterr().out


def test_verify_reports_a_damaged_file(served: Served, capsys: pytest.CaptureFixture[str], hearth_home: Path) -> None:
    assert run(parse("fetch", "loopback-model")) == 0
    (hearth_home / "models" / "loopback-model.gguf").write_bytes(DATA[::-1])
    capsys.readouterr()
    assert run(parse("verify", "--full")) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "damaged" in err
    assert "hint: " in err and "hearth models fetch loopback-model" in err


def test_verify_of_a_missing_model_fails(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("verify", "loopback-model")) == 1
    assert "is not here" in capsys.readouterr().err
    assert run(parse("verify")) == 0  # nothing present: nothing to check


def test_unknown_model_is_an_error_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("fetch", "no-such-model")) == 1
    err = capsys.readouterr().err
    assert "error: Hearth does not know a model called 'no-such-model'." in err
    assert "hint: Known models: smollm2-135m-instruct" in err


def test_import_list_and_remove(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = write_gguf(tmp_path / "mine.gguf", name="Mine")
    assert run(parse("import", str(source))) == 0
    assert "imported mine (Mine)" in capsys.readouterr().out
    assert listing(capsys)["mine"]["status"] == "verified"
    assert run(parse("remove", "mine")) == 0
    assert "removed mine" in capsys.readouterr().out
    assert "mine" not in listing(capsys)


def test_import_by_reference_and_a_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = write_gguf(tmp_path / "kept.gguf")
    assert run(parse("import", str(source), "--reference")) == 0
    capsys.readouterr()
    assert listing(capsys)["kept"]["path"] == str(source.resolve())
    bad = tmp_path / "photo.gguf"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    assert run(parse("import", str(bad))) == 1
    err = capsys.readouterr().err
    assert "error: photo.gguf is not a GGUF model: it is a PNG image." in err and "hint: " in err


def test_models_needs_a_subcommand() -> None:
    with pytest.raises(SystemExit):
        parse()


def test_progress_line_on_a_pipe_prints_each_stage_once() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream)
    for done in range(0, 101, 10):
        line(done, 100, "Downloading x")
    line(5, 10, "Verifying x")
    line.finish()
    assert stream.getvalue() == "Downloading x\nVerifying x\n"


SPEECH = {"model.bin": os.urandom(200_000), "config.json": b'{"a": 1}\n', "vocabulary.txt": b"x\ny\n"}


@pytest.fixture
def speech_model(site: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI's catalog: one stt model of three files, from an installed carrier distribution."""
    members = {f"hearth_cli_speech/{name}": data for name, data in SPEECH.items()}
    main = install_fake_distribution(
        site, "hearth-cli-speech", "1.0", "hearth_cli_speech/model.bin", SPEECH["model.bin"], members
    )

    def companion(name: str) -> ModelFile:
        part = PackagePart(main.package, main.version, f"hearth_cli_speech/{name}")
        return ModelFile(name, sha256(SPEECH[name]), len(SPEECH[name]), ModelSource("pypi-file", parts=(part,)))

    entry = url_entry(
        SPEECH["model.bin"],
        "",
        "cli-speech",
        kind="stt",
        format="ctranslate2-dir",
        file="model.bin",
        source=ModelSource("pypi-file", parts=(main,)),
        companions=(companion("config.json"), companion("vocabulary.txt")),
    )
    monkeypatch.setattr(cli, "load_catalog", lambda: Catalog((entry,)))
    return entry.id


def test_list_groups_the_shipped_models_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("list")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "SIZE", "MB", "STATUS", "LICENCE"]
    tiny = next(line for line in lines if "whisper-tiny-en" in line)
    assert tiny.startswith("*") and " stt " in tiny and "78.1" in tiny and "installed" in tiny
    joe = next(line for line in lines if "piper-joe-medium" in line)
    assert joe.startswith("*") and " tts " in joe and "CC0-1.0 (voice), MIT (package)" in joe
    rows = listing(capsys)
    assert [row["kind"] for row in rows.values()] == ["chat"] * 6 + ["stt", "stt", "tts"]
    assert rows["whisper-base"]["files"] == ["model.bin", "config.json", "tokenizer.json", "vocabulary.txt"]
    assert rows["whisper-tiny-en"]["size"] == 75537502 + 2317 + 2128466 + 422309
    assert rows["whisper-tiny-en"]["path"].endswith("/whisper-tiny-en/model.bin")


def test_fetch_verify_and_remove_a_model_of_several_files(
    speech_model: str, capsys: pytest.CaptureFixture[str], hearth_home: Path
) -> None:
    folder = hearth_home / "models" / speech_model
    assert listing(capsys)[speech_model]["status"] == "installed"
    assert run(parse("fetch", speech_model)) == 0
    captured = capsys.readouterr()
    assert f"fetched and verified: {folder}" in captured.out
    for name in SPEECH:
        assert f"Copying {name} from hearth-cli-speech" in captured.err
        assert (folder / name).read_bytes() == SPEECH[name]
    assert listing(capsys)[speech_model]["status"] == "verified"
    assert run(parse("fetch", speech_model)) == 0
    assert f"already here and intact: {folder}" in capsys.readouterr().out
    assert run(parse("verify", "--full")) == 0
    assert f"{speech_model}: ok" in capsys.readouterr().out

    (folder / "config.json").write_bytes(b'{"a": 2}\n')
    assert run(parse("verify", "--full")) == 1
    err = capsys.readouterr().err
    assert "config.json" in err and "damaged" in err and f"hearth models fetch {speech_model}" in err

    (folder / "config.json").unlink()
    assert listing(capsys)[speech_model]["status"] == "installed"
    assert run(parse("verify")) == 1  # a model with some of its files here is still checked
    assert f"The model '{speech_model}' lacks config.json." in capsys.readouterr().err
    assert run(parse("fetch", speech_model)) == 0
    assert (folder / "config.json").read_bytes() == SPEECH["config.json"]
    assert "Copying config.json" in capsys.readouterr().err

    assert run(parse("remove", speech_model)) == 0
    assert f"removed {speech_model}" in capsys.readouterr().out
    assert not folder.exists()
    assert listing(capsys)[speech_model]["status"] == "installed"
