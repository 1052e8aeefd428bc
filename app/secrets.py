"""API keys for remote chat servers: in the system keyring, never in settings.json.

A key belongs to one server (its base URL, normalised, is the keyring account; the service is
"Hearth"). When Hearth needs the key for a server it looks, first match wins, in:

1. the environment variable HEARTH_REMOTE_API_KEY, which overrides any stored key (scripts, CI,
   and `hearth ask` on a machine without a keyring);
2. the system keyring: the macOS Keychain, the Windows Credential Locker, or the Secret Service
   of a Linux desktop (GNOME Keyring, KWallet, KeePassXC), through the `keyring` package;
3. this session's memory, where a key goes when no keyring can take it.

Why memory, and not a file, when there is no keyring: a headless Linux machine (a server, a
container, a bare window manager) often has no Secret Service, and keyring's default backend
then refuses every call. A file in the data folder, even with 0600 permissions, would be a plain
key beside settings.json — copied by backups and sync tools and readable by anything that runs as
the user — which is exactly what keeping it out of the settings is meant to avoid. So the key is
kept only until Hearth closes, and the user is told so and how to make it stick (a keyring
service, or the environment variable).

Keyring calls can block (an unlock prompt, a slow D-Bus): call these functions off the GUI thread.
Qt-free, like the rest of the core.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger("hearth.secrets")

SERVICE = "Hearth"
API_KEY_ENV = "HEARTH_REMOTE_API_KEY"
ENVIRONMENT = f"the environment variable {API_KEY_ENV}"
SESSION = "memory, for this session only"
KEEP_HINT = f"To keep it, start a keyring service (GNOME Keyring, KWallet or KeePassXC), or set {API_KEY_ENV} before starting Hearth."


@dataclass(frozen=True)
class Saved:
    """Where `set_api_key` put a key; `remembered` is False when it lasts only until Hearth closes."""

    where: str
    remembered: bool
    problem: str = ""  # why the keyring did not take it, when it did not

    @property
    def notice(self) -> tuple[str, str]:
        """A message and a hint for the user when the key will not be remembered ("" otherwise)."""
        if self.remembered:
            return "", ""
        return (f"The API key is kept only until Hearth closes: {self.problem}", KEEP_HINT)


def account(base_url: str) -> str:
    """The keyring account for a server: its base URL with a lower-case scheme and host, the port
    spelled out and no trailing slash, so that equivalent spellings share one key."""
    text = base_url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if not parts.scheme or not parts.hostname:
        return text
    scheme = parts.scheme.lower()
    port = port or (443 if scheme == "https" else 80)
    return f"{scheme}://{parts.hostname.lower()}:{port}{parts.path.rstrip('/')}"


class KeyStore:
    """The three places in order; `backend` None means keyring's own choice for this machine."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = backend
        self._session: dict[str, str] = {}
        self._lock = threading.Lock()

    def backend(self) -> KeyringBackend:
        if self._backend is not None:
            return self._backend
        import keyring  # imported when first needed: it looks for backends, which takes ~0.1 s

        return keyring.get_keyring()

    def get(self, base_url: str) -> str | None:
        override = os.environ.get(API_KEY_ENV)
        if override:
            return override
        name = account(base_url)
        try:
            key = self.backend().get_password(SERVICE, name)
        except Exception as exc:  # any backend failure (no keyring, D-Bus, locked): memory still answers
            log.info("keyring unavailable for reading (%s); using this session's keys", _reason(exc))
            key = None
        with self._lock:
            return key or self._session.get(name)

    def set(self, base_url: str, key: str) -> Saved:
        name = account(base_url)
        backend = self.backend()
        try:
            backend.set_password(SERVICE, name, key)
        except Exception as exc:  # the keyring cannot take it: keep it for this session and say so
            problem = _reason(exc)
            log.warning("the API key for %s is kept in memory only: %s", name, problem)
            with self._lock:
                self._session[name] = key
            return Saved(SESSION, remembered=False, problem=problem)
        with self._lock:
            self._session.pop(name, None)
        return Saved(_keyring_name(backend), remembered=True)

    def delete(self, base_url: str) -> None:
        """Forget the key everywhere Hearth keeps one (the environment is the user's own)."""
        name = account(base_url)
        with self._lock:
            self._session.pop(name, None)
        try:
            from keyring.errors import PasswordDeleteError

            try:
                self.backend().delete_password(SERVICE, name)
            except PasswordDeleteError:
                pass  # there was none
        except Exception as exc:  # no keyring: nothing can be stored there to delete
            log.info("keyring unavailable for deleting (%s)", _reason(exc))

    def where(self, base_url: str) -> str:
        """Where the key for this server comes from now, in words ("" when there is none)."""
        if os.environ.get(API_KEY_ENV):
            return ENVIRONMENT
        name = account(base_url)
        backend = self.backend()
        try:
            if backend.get_password(SERVICE, name):
                return _keyring_name(backend)
        except Exception:  # no keyring: only memory can hold it
            pass
        with self._lock:
            return SESSION if name in self._session else ""


def _keyring_name(backend: KeyringBackend) -> str:
    return f"the system keyring ({backend.name})"


def _reason(exc: BaseException) -> str:
    """A keyring failure in one sentence a user can act on."""
    from keyring.errors import NoKeyringError

    if isinstance(exc, NoKeyringError):
        return "no system keyring is available on this computer."
    text = str(exc).strip() or type(exc).__name__
    return f"the system keyring refused it ({text})."


DEFAULT = KeyStore()


def get_api_key(base_url: str) -> str | None:
    """The key for this server: the environment variable, else the keyring, else this session's memory."""
    return DEFAULT.get(base_url)


def set_api_key(base_url: str, key: str) -> Saved:
    """Store the key for this server in the keyring, or in memory for this session when there is none."""
    return DEFAULT.set(base_url, key)


def delete_api_key(base_url: str) -> None:
    DEFAULT.delete(base_url)


def where(base_url: str) -> str:
    """Where the key for this server comes from now: the environment, the keyring (named), memory, or ""."""
    return DEFAULT.where(base_url)
