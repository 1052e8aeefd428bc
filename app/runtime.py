"""Wiring shared by the window and the CLI: the user's profile and the engine factory.

Qt-free, so the CLI, the benchmarks and the tests build Hearth exactly as the window does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.catalog.catalog import Catalog, ModelEntry, load_catalog
from app.catalog.library import ModelLibrary
from app.core.images import ImageStore
from app.core.store import Store
from app.engines.llm import ChatEngine
from app.engines.probe import check_engine_runs
from app.engines.remote import RemoteEngine
from app.engines.worker import LoadCrashes, ModelSpec, WorkerEngine
from app.errors import ModelError, RemoteError
from app.paths import DataPaths, default_paths
from app.secrets import API_KEY_ENV, get_api_key
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

    @property
    def load_crashes(self) -> LoadCrashes:
        """Models that stopped the engine while loading (see `app.engines.worker.LoadCrashes`)."""
        return LoadCrashes.in_folder(self.paths.root)

    def close(self) -> None:
        self.store.close()


def load_engine(
    profile: Profile, model_id: str | None = None, progress: Progress | None = None, *, retry_crashed: bool = False
) -> ChatEngine:
    """The engine the settings choose: a local model (verified, and copied from an installed package
    if needed) or a remote server. A model that would have to be downloaded is refused with a hint:
    downloads happen only when asked for (Models page, `hearth models fetch`).

    A local model runs in a process of its own (`WorkerEngine`), after a one-time check that this
    build of the engine runs on this CPU (`check_engine_runs`). A model that stopped that process
    twice in a row while loading is refused unless `retry_crashed` (the user asked for it again).
    For the remote engine `model_id`, when given, is the server's model name.
    """
    if profile.settings.engine == "remote":
        pictures = ImageStore(profile.paths.images)
        return load_remote_engine(
            profile.settings, model_id, progress, pictures=lambda sha: pictures.get(sha).read_bytes()
        )
    entry = profile.model_entry(model_id)
    if entry.kind != "chat":
        raise ModelError(
            f"'{entry.id}' is not a chat model (its kind is {entry.kind}).",
            "Choose a chat model in Settings › Model (`hearth models list` shows each model's kind).",
        )
    crashes = profile.load_crashes
    if retry_crashed:
        crashes.forget(entry.id)
    elif crashes.blocked(entry.id):
        raise crashes.refusal(entry.id, entry.name)
    _refuse_download(profile, entry)
    path = profile.library.ensure(entry, progress=progress)
    s = profile.settings.model_options(entry.id)  # the model's own settings (Models page), else the general ones
    projector = projector_path(profile, entry, progress)
    if progress:
        progress(0, 0, "Checking the engine on this computer…")
    check_engine_runs()
    if progress:
        progress(0, 0, f"Loading {entry.name}…")
    spec = ModelSpec(
        path, entry.id, entry.name, n_ctx=s.n_ctx, n_threads=s.n_threads, n_gpu_layers=s.n_gpu_layers,
        chat_format=s.chat_format, projector=projector, pictures=profile.paths.images if projector else None,
    )  # fmt: skip
    return WorkerEngine(spec, crashes)


def projector_path(profile: Profile, entry: ModelEntry, progress: Progress | None = None) -> Path | None:
    """The vision projector a chat model loads with: the one chosen for it on the Models page (a
    vision-projector model, fetched and verified if needed), else its own companion file, else none."""
    chosen = profile.settings.model_options(entry.id).projector
    if chosen is None:
        return profile.library.folder_for(entry) / entry.projector if entry.projector else None
    projector = profile.library.get(chosen)
    if projector.kind != "vision-projector":
        raise ModelError(
            f"'{projector.id}', chosen as the vision projector of '{entry.id}', is not a projector (its kind is {projector.kind}).",
            "Choose another projector for this model on the Models page (Ctrl+Shift+M).",
        )
    _refuse_download(profile, projector)
    return profile.library.ensure(projector, progress=progress)


def _refuse_download(profile: Profile, entry: ModelEntry) -> None:
    if profile.library.needs_download(entry):
        raise ModelError(
            f"{entry.name} is not on this computer yet.",
            f"Download it on the Models page (Ctrl+Shift+M), or run `hearth models fetch {entry.id}`.",
        )


def load_remote_engine(
    settings: Settings,
    model: str | None = None,
    progress: Progress | None = None,
    pictures: Callable[[str], bytes] | None = None,
) -> RemoteEngine:
    """Connect to the configured server now, so a wrong address or key shows before the first message.

    `pictures` reads stored pictures; they are sent only when the settings say the server's model sees."""
    if not settings.remote_url:
        raise RemoteError(
            "The remote engine is chosen but no server address is set.", "Enter the base URL in Settings › Model."
        )
    if progress:
        progress(0, 0, f"Connecting to {settings.remote_url}…")
    api_key = get_api_key(settings.remote_url)  # HEARTH_REMOTE_API_KEY, else the keyring (app/secrets.py)
    engine = RemoteEngine(
        settings.remote_url, model or settings.remote_model, api_key=api_key, n_ctx=settings.n_ctx,
        pictures=pictures if settings.remote_vision else None,
    )  # fmt: skip
    engine.connect()
    return engine


__all__ = ["API_KEY_ENV", "Catalog", "Profile", "load_engine", "load_remote_engine"]
