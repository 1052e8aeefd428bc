"""Wiring shared by the window and the CLI: the user's profile and the engine factory.

Qt-free, so the CLI, the benchmarks and the tests build Hearth exactly as the window does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.catalog.catalog import Catalog, ModelEntry, load_catalog
from app.catalog.library import ModelLibrary
from app.core.store import Store
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.paths import DataPaths, default_paths
from app.settings import Settings, load_settings, save_settings

log = logging.getLogger("hearth")

Progress = Callable[[int, int, str], None]


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


def load_engine(profile: Profile, model_id: str | None = None, progress: Progress | None = None) -> LlamaCppEngine:
    """Make the model file present and verified (fetching it if needed), then load it."""
    entry = profile.model_entry(model_id)
    path = profile.library.ensure(entry, progress=progress)
    if progress:
        progress(0, 0, f"Loading {entry.name}…")
    s = profile.settings
    return LlamaCppEngine(
        path, model_id=entry.id, model_name=entry.name, n_ctx=s.n_ctx, n_threads=s.n_threads, n_gpu_layers=s.n_gpu_layers
    )


__all__ = ["Catalog", "Profile", "load_engine"]
