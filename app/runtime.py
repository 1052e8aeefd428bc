"""Wiring shared by the window and the CLI: the user's profile and the engine factory.

Qt-free, so the CLI, the benchmarks and the tests build Hearth exactly as the window does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from app.catalog.catalog import Catalog, ModelEntry, load_catalog
from app.catalog.library import ModelLibrary
from app.core.store import Store
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.engines.llm import ChatEngine
from app.engines.remote import RemoteEngine
from app.errors import ModelError, RemoteError
from app.paths import DataPaths, default_paths
from app.settings import Settings, load_settings, save_settings

log = logging.getLogger("hearth")

Progress = Callable[[int, int, str], None]
API_KEY_ENV = "HEARTH_REMOTE_API_KEY"


@dataclass
class Profile:
    """Everything that belongs to one user: folders, settings, conversations, models."""

    paths: DataPaths
    settings: Settings
    store: Store
    library: ModelLibrary

    @classmethod
    def open(cls, paths: DataPaths | None = None) -> Profile:
        paths = (paths or default_paths()).ensure()
        settings = load_settings(paths.settings)
        store = Store.open(paths.database)
        interrupted = store.mark_interrupted()
        if interrupted:
            log.info("%d reply(s) cut short by an earlier exit are marked interrupted", interrupted)
        library = ModelLibrary(paths, load_catalog())
        return cls(paths, settings, store, library)

    def save_settings(self, settings: Settings) -> None:
        save_settings(settings, self.paths.settings)
        self.settings = settings

    def model_entry(self, model_id: str | None = None) -> ModelEntry:
        return self.library.get(model_id or self.settings.model_id)

    def close(self) -> None:
        self.store.close()


def load_engine(profile: Profile, model_id: str | None = None, progress: Progress | None = None) -> ChatEngine:
    """The engine the settings choose: a local model (fetched and verified if needed) or a remote server.

    For the remote engine `model_id`, when given, is the server's model name.
    """
    if profile.settings.engine == "remote":
        return load_remote_engine(profile.settings, model_id, progress)
    entry = profile.model_entry(model_id)
    if entry.kind != "chat":
        raise ModelError(
            f"'{entry.id}' is not a chat model (its kind is {entry.kind}).",
            "Choose a chat model in Settings › Model (`hearth models list` shows each model's kind).",
        )
    path = profile.library.ensure(entry, progress=progress)
    if progress:
        progress(0, 0, f"Loading {entry.name}…")
    s = profile.settings
    return LlamaCppEngine(
        path, model_id=entry.id, model_name=entry.name, n_ctx=s.n_ctx, n_threads=s.n_threads, n_gpu_layers=s.n_gpu_layers
    )


def load_remote_engine(settings: Settings, model: str | None = None, progress: Progress | None = None) -> RemoteEngine:
    """Connect to the configured server now, so a wrong address or key shows before the first message."""
    if not settings.remote_url:
        raise RemoteError("The remote engine is chosen but no server address is set.", "Enter the base URL in Settings › Model.")
    if progress:
        progress(0, 0, f"Connecting to {settings.remote_url}…")
    api_key = os.environ.get(API_KEY_ENV) or None
    engine = RemoteEngine(settings.remote_url, model or settings.remote_model, api_key=api_key, n_ctx=settings.n_ctx)
    engine.connect()
    return engine


__all__ = ["Catalog", "Profile", "load_engine", "load_remote_engine"]
