"""API keys: in the system keyring under "Hearth", never in the data folder; memory when there is no keyring."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyring.backends.fail import Keyring as NoKeyring

from app.runtime import Profile
from app.secrets import API_KEY_ENV, ENVIRONMENT, SERVICE, SESSION, KeyStore, account, get_api_key, set_api_key, where
from tests.keyrings import LockedKeyring, MemoryKeyring

URL = "http://127.0.0.1:8080/v1"
KEY = "sk-hearth-test-0123456789"


def _files_holding(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_key_goes_to_the_keyring_and_never_into_the_data_folder(
    keyring_backend: MemoryKeyring, hearth_home: Path
) -> None:
    profile = Profile.open()
    try:
        profile.save_settings(profile.settings.replace(engine="remote", remote_url=URL))
        saved = set_api_key(URL, KEY)
    finally:
        profile.close()
    assert saved.remembered and saved.notice == ("", "")
    assert saved.where == f"the system keyring ({keyring_backend.name})" == where(URL)
    assert keyring_backend.passwords == {(SERVICE, URL): KEY}
    assert get_api_key(URL) == KEY
    assert KEY not in profile.paths.settings.read_text(encoding="utf-8")
    assert _files_holding(hearth_home, KEY) == []


def test_a_key_belongs_to_one_server_however_its_address_is_spelled() -> None:
    set_api_key("HTTP://LocalHost/v1/", KEY)
    assert account("http://localhost:80/v1") == "http://localhost:80/v1"
    assert get_api_key("http://localhost:80/v1") == KEY
    assert get_api_key("http://localhost:8080/v1") is None
    assert get_api_key("https://localhost/v1") is None


@pytest.mark.parametrize(("backend", "cause"), [(NoKeyring(), "no system keyring"), (LockedKeyring(), "locked")])
def test_without_a_working_keyring_the_key_lasts_this_session_and_says_so(
    backend: NoKeyring | LockedKeyring, cause: str, hearth_home: Path
) -> None:
    store = KeyStore(backend)
    saved = store.set(URL, KEY)
    assert not saved.remembered and saved.where == SESSION
    message, hint = saved.notice
    assert "only until Hearth closes" in message and cause in message
    assert API_KEY_ENV in hint and "keyring" in hint
    assert store.get(URL) == KEY and store.where(URL) == SESSION
    assert KeyStore(backend).get(URL) is None, "the next session does not have it"
    assert not hearth_home.exists() or _files_holding(hearth_home, KEY) == []


def test_the_environment_variable_overrides_a_stored_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_api_key(URL, KEY)
    monkeypatch.setenv(API_KEY_ENV, "from-the-environment")
    assert get_api_key(URL) == "from-the-environment"
    assert get_api_key("http://elsewhere:1234/v1") == "from-the-environment"
    assert where(URL) == ENVIRONMENT
    monkeypatch.delenv(API_KEY_ENV)
    assert get_api_key(URL) == KEY


def test_the_environment_variable_works_without_a_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-the-environment")
    assert KeyStore(NoKeyring()).get(URL) == "from-the-environment"


def test_forgetting_a_key_removes_it_from_the_keyring_and_from_memory(keyring_backend: MemoryKeyring) -> None:
    store = KeyStore(keyring_backend)
    store.set(URL, KEY)
    store.delete(URL)
    assert store.get(URL) is None and store.where(URL) == "" and keyring_backend.passwords == {}
    store.delete(URL)  # nothing left to forget is not an error
    offline = KeyStore(NoKeyring())
    offline.set(URL, KEY)
    offline.delete(URL)
    assert offline.get(URL) is None
