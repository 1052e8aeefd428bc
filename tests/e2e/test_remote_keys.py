"""The remote engine takes its API key from the keyring (or this session's memory), and the
environment variable still comes first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keyring.backends.fail import Keyring as NoKeyring

import app.secrets
from app.errors import RemoteError
from app.runtime import load_remote_engine
from app.secrets import API_KEY_ENV, KeyStore, set_api_key
from app.settings import Settings
from tests.e2e.remote_kit import Stub


@pytest.fixture
def auth_stub() -> Iterator[Stub]:
    stub = Stub("auth", api_key="sekret")
    yield stub
    stub.stop()


def test_the_key_stored_for_the_server_is_sent(auth_stub: Stub) -> None:
    settings = Settings(engine="remote", remote_url=auth_stub.url)
    with pytest.raises(RemoteError, match="HTTP 401") as caught:
        load_remote_engine(settings)
    assert "Settings › Model" in caught.value.hint
    set_api_key(auth_stub.url, "sekret")
    assert load_remote_engine(settings).info.model_id == "stub-model"


def test_without_a_keyring_the_key_still_serves_this_session(auth_stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.secrets, "DEFAULT", KeyStore(NoKeyring()))
    assert not set_api_key(auth_stub.url, "sekret").remembered
    assert load_remote_engine(Settings(engine="remote", remote_url=auth_stub.url)).info.model_id == "stub-model"


def test_the_environment_variable_overrides_the_stored_key(auth_stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    set_api_key(auth_stub.url, "sekret")
    monkeypatch.setenv(API_KEY_ENV, "wrong")
    with pytest.raises(RemoteError, match="HTTP 401") as caught:
        load_remote_engine(Settings(engine="remote", remote_url=auth_stub.url))
    assert API_KEY_ENV in caught.value.hint
