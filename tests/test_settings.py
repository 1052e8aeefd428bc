"""The settings schema's engine fields: what is accepted, what a stored file may hold."""

from __future__ import annotations

import pytest

from app.settings import Settings


def test_the_local_engine_is_the_default() -> None:
    s = Settings()
    assert (s.engine, s.remote_url, s.remote_model) == ("local", "", "")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "127.0.0.1:8080/v1", "http://", "http://host:port/v1"])
def test_a_remote_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValueError, match="remote_url"):
        Settings(remote_url=url)


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine"):
        Settings(engine="cloud")


def test_stored_engine_fields_load_and_bad_ones_fall_back() -> None:
    good = Settings.from_dict({"engine": "remote", "remote_url": "https://example.org/v1", "remote_model": "m"})
    assert (good.engine, good.remote_url, good.remote_model) == ("remote", "https://example.org/v1", "m")
    bad = Settings.from_dict({"engine": "cloud", "remote_url": "file:///etc/passwd"})
    assert (bad.engine, bad.remote_url) == ("local", "")


def test_no_api_key_is_ever_written_to_the_settings_file() -> None:
    stored = Settings(engine="remote", remote_url="http://127.0.0.1:8080/v1").to_dict()
    assert not [key for key in stored if "key" in key.lower()]
