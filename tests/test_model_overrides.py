"""A model's own settings (set on the Models page): validated like the rest, stored, and used by
`load_engine` when that model loads — with the real engine on a tiny generated GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, ModelEntry
from app.catalog.library import ModelLibrary
from app.core.store import Store
from app.engines.chat_template import FALLBACKS
from app.errors import ModelError
from app.paths import DataPaths
from app.runtime import Profile, load_engine, projector_path
from app.settings import CHAT_FORMATS, ModelOverrides, Settings, load_settings, save_settings
from tests.fixtures.tiny_gguf import write_tiny_llama


def test_chat_formats_are_the_engines_fallbacks_plus_auto() -> None:
    assert CHAT_FORMATS == ("auto", *FALLBACKS)


@pytest.mark.parametrize(
    "bad",
    [
        {"n_ctx": 100},
        {"n_threads": 0},
        {"n_gpu_layers": -2},
        {"chat_format": "alpaca"},
        {"projector": " "},
        {"n_ctx": True},
    ],
)
def test_out_of_range_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ModelOverrides(**bad)  # type: ignore[arg-type]


def test_own_settings_win_and_the_rest_come_from_the_general_ones() -> None:
    settings = Settings(n_ctx=4096, n_threads=4, n_gpu_layers=-1).with_model_overrides(
        "mine", ModelOverrides(n_ctx=1024, n_gpu_layers=0)
    )
    own = settings.model_options("mine")
    assert (own.n_ctx, own.n_threads, own.n_gpu_layers, own.chat_format) == (1024, 4, 0, "auto")
    assert settings.model_options("other").n_ctx == 4096
    assert settings.with_model_overrides("mine", ModelOverrides()).model_overrides == {}  # empty forgets


def test_own_settings_are_stored_and_bad_stored_values_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings().with_model_overrides("mine", ModelOverrides(n_ctx=2048, chat_format="plain"))
    save_settings(settings, path)
    assert load_settings(path).model_overrides == settings.model_overrides
    mangled = Settings.from_dict(
        {"model_overrides": {"mine": {"n_ctx": 12, "n_threads": 2}, "other": "fast", "third": {"chat_format": "x"}}}
    )
    assert mangled.model_overrides == {"mine": ModelOverrides(n_threads=2)}
    assert Settings.from_dict({"model_overrides": [1, 2]}).model_overrides == {}


@pytest.fixture
def profile(hearth_home: Path, tmp_path: Path) -> Iterator[Profile]:
    """A real profile whose library holds one imported tiny llama."""
    paths = DataPaths(hearth_home).ensure()
    library = ModelLibrary(paths, Catalog(()))
    library.import_gguf(write_tiny_llama(tmp_path / "tiny.gguf"))
    opened = Profile(paths, Settings(n_ctx=512, n_threads=2), Store.open(paths.database), library)
    yield opened
    opened.close()


def _tiny(profile: Profile) -> ModelEntry:
    return next(entry for entry in profile.library.entries() if entry.kind == "chat")


def test_load_engine_uses_the_models_own_settings(profile: Profile) -> None:
    tiny = _tiny(profile)
    profile.settings = profile.settings.replace(model_id=tiny.id)
    plain = load_engine(profile)
    try:
        assert (plain.info.n_ctx, plain.info.chat_format) == (512, "chatml")  # general values; no template in the file
    finally:
        plain.close()
    own = ModelOverrides(n_ctx=256, n_threads=1, n_gpu_layers=0, chat_format="plain")
    profile.settings = profile.settings.with_model_overrides(tiny.id, own)
    engine = load_engine(profile)
    try:
        assert (engine.info.n_ctx, engine.info.chat_format, engine.info.gpu_layers, engine.info.threads) == (
            256,
            "plain",
            0,
            1,
        )
    finally:
        engine.close()


def test_a_projector_must_be_a_projector(profile: Profile) -> None:
    tiny = _tiny(profile)
    assert projector_path(profile, tiny) is None
    profile.settings = profile.settings.with_model_overrides(tiny.id, ModelOverrides(projector=tiny.id))
    with pytest.raises(ModelError, match="is not a projector"):
        load_engine(profile, tiny.id)
