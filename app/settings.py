"""One typed settings schema: defaults, descriptions and validation in one place.

Settings are a frozen dataclass; changing one makes a new value (`settings.replace(...)`),
validated on the way in. They persist as JSON in the data folder, written atomically, and
unknown or invalid keys in the file are dropped with a log line rather than crashing start-up.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("hearth.settings")

DEFAULT_INSTRUCTIONS = (
    "You are Hearth, a helpful assistant running on the user's own computer. Answer clearly and concisely."
)
THEMES = ("system", "light", "dark")
ENGINES = ("local", "remote")


def physical_cores() -> int:
    """Physical cores, not hardware threads: llama.cpp decodes fastest on one thread per core."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
        if cores:
            return int(cores)
    except Exception:  # psutil missing or unsupported platform: assume no hyper-threading
        pass
    return os.cpu_count() or 1


def is_http_url(value: str) -> bool:
    """An http:// or https:// address with a host (the empty string means "not set")."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _meta(description: str, check: Callable[[Any], bool] | None = None) -> dict[str, Any]:
    return {"description": description, "check": check}


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = field(
        default=0.7, metadata=_meta("Randomness of replies (0 = always the same).", lambda v: 0.0 <= v <= 2.0)
    )
    top_p: float = field(
        default=0.95,
        metadata=_meta(
            "Nucleus sampling: keep the smallest set of tokens with this much probability.", lambda v: 0.0 < v <= 1.0
        ),
    )
    max_tokens: int = field(default=512, metadata=_meta("Longest reply, in tokens.", lambda v: 1 <= v <= 32768))
    seed: int = field(
        default=-1, metadata=_meta("Random seed; -1 picks a new one each time.", lambda v: -1 <= v < 2**32)
    )


VOICE_MODES = ("hands-free", "push-to-talk")
# "auto" is the model's own chat template; the others are app.engines.chat_template's FALLBACKS.
CHAT_FORMATS = ("auto", "chatml", "llama3", "gemma", "plain")


def _optional_int(low: int, high: int) -> Callable[[Any], bool]:
    """A check for a whole number in [low, high], or None (meaning "as in the general settings")."""
    return lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and low <= v <= high)


@dataclass(frozen=True)
class ModelOverrides:
    """One model's own settings, used when that model loads; None keeps the general value."""

    n_ctx: int | None = field(
        default=None, metadata=_meta("Context window in tokens for this model.", _optional_int(256, 262144))
    )
    n_threads: int | None = field(default=None, metadata=_meta("CPU threads for this model.", _optional_int(1, 512)))
    n_gpu_layers: int | None = field(
        default=None, metadata=_meta("Layers of this model on the GPU (-1 = all, 0 = none).", _optional_int(-1, 100000))
    )
    chat_format: str | None = field(
        default=None,
        metadata=_meta(
            "How a conversation is laid out for this model: auto (its own template), chatml, llama3, gemma or plain.",
            lambda v: v is None or v in CHAT_FORMATS,
        ),
    )
    projector: str | None = field(
        default=None,
        metadata=_meta(
            "Vision projector for this model (the id of a vision-projector model).",
            lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
        ),
    )

    def __post_init__(self) -> None:
        validate(self)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


@dataclass(frozen=True)
class ModelOptions:
    """What one model loads with: its own settings where it has them, the general ones elsewhere."""

    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    chat_format: str
    projector: str | None


def _valid_overrides(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and key and isinstance(own, ModelOverrides) for key, own in value.items()
    )


@dataclass(frozen=True)
class VoiceSettings:
    stt_model_id: str = field(
        default="whisper-tiny-en", metadata=_meta("Speech recognition model (an stt id from the catalog).")
    )
    language: str = field(
        default="auto",
        metadata=_meta(
            "Spoken language for multilingual models: auto or a code such as en, de, fr.",
            lambda v: v == "auto" or (2 <= len(v) <= 3 and v.isalpha() and v.islower()),
        ),
    )
    voice_id: str = field(
        default="piper-joe-medium", metadata=_meta("Voice Hearth speaks with (a tts id from the catalog).")
    )
    speaking_rate: float = field(
        default=1.0, metadata=_meta("Speaking speed (1 = the voice's natural pace).", lambda v: 0.5 <= v <= 2.0)
    )
    patience_ms: int = field(
        default=600,
        metadata=_meta(
            "Silence that ends your turn, in milliseconds (shorter after a finished sentence).",
            lambda v: 200 <= v <= 3000,
        ),
    )
    mode: str = field(
        default="hands-free",
        metadata=_meta("hands-free (it listens again by itself) or push-to-talk.", lambda v: v in VOICE_MODES),
    )
    input_device: str = field(default="", metadata=_meta("Microphone (empty = the system default)."))
    output_device: str = field(default="", metadata=_meta("Speaker (empty = the system default)."))
    echo_cancellation: bool = field(
        default=True,
        metadata=_meta("Remove Hearth's own voice from the microphone so it can be interrupted on speakers."),
    )
    speak_replies: bool = field(default=True, metadata=_meta("Read replies aloud in voice mode."))


@dataclass(frozen=True)
class Settings:
    model_id: str = field(
        default="smollm2-135m-instruct", metadata=_meta("Model used for new replies (an id from the catalog).")
    )
    n_ctx: int = field(default=4096, metadata=_meta("Context window in tokens.", lambda v: 256 <= v <= 262144))
    n_threads: int = field(
        default_factory=physical_cores, metadata=_meta("CPU threads for the model.", lambda v: 1 <= v <= 512)
    )
    n_gpu_layers: int = field(
        default=-1,
        metadata=_meta("Layers on the GPU when a GPU build is present (-1 = all, 0 = none).", lambda v: v >= -1),
    )
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    default_instructions: str = field(
        default=DEFAULT_INSTRUCTIONS,
        metadata=_meta("Custom instructions for conversations that have none of their own."),
    )
    theme: str = field(default="system", metadata=_meta("Colour scheme: system, light or dark.", lambda v: v in THEMES))
    # The API key is not a setting: it lives in the system keyring or HEARTH_REMOTE_API_KEY (app/secrets.py), never in this file.
    engine: str = field(
        default="local",
        metadata=_meta("Who answers: local (this computer) or remote (a chat server).", lambda v: v in ENGINES),
    )
    remote_url: str = field(
        default="",
        metadata=_meta(
            "Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.",
            lambda v: v == "" or is_http_url(v),
        ),
    )
    remote_model: str = field(
        default="", metadata=_meta("Model name on the remote server (empty = the first it lists).")
    )
    remote_vision: bool = field(
        default=False,
        metadata=_meta(
            "The remote model sees pictures: send them with the message (as data URLs), not only the text read from them."
        ),
    )
    model_overrides: dict[str, ModelOverrides] = field(
        default_factory=dict,
        metadata=_meta("Settings of single models that differ from the general ones, by model id.", _valid_overrides),
    )

    def __post_init__(self) -> None:
        validate(self)
        validate(self.generation)
        validate(self.voice)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def model_options(self, model_id: str) -> ModelOptions:
        """The settings `model_id` loads with: its own overrides, else the general values."""
        own = self.model_overrides.get(model_id, ModelOverrides())

        def pick(mine: Any, general: Any) -> Any:
            return general if mine is None else mine

        return ModelOptions(
            n_ctx=pick(own.n_ctx, self.n_ctx),
            n_threads=pick(own.n_threads, self.n_threads),
            n_gpu_layers=pick(own.n_gpu_layers, self.n_gpu_layers),
            chat_format=pick(own.chat_format, "auto"),
            projector=own.projector,
        )

    def with_model_overrides(self, model_id: str, overrides: ModelOverrides) -> Settings:
        """These settings with `model_id`'s own settings replaced (empty overrides forget them)."""
        table = {key: own for key, own in self.model_overrides.items() if key != model_id}
        if not overrides.is_empty():
            table[model_id] = overrides
        return self.replace(model_overrides=table)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build settings from stored JSON, keeping every valid value and dropping the rest."""
        result = cls()
        for group in _GROUPS:
            nested = getattr(result, group)
            stored = data.get(group) or {}
            if not isinstance(stored, dict):
                log.warning("ignoring stored setting %s=%r: it is not an object", group, stored)
                stored = {}
            for f in dataclasses.fields(nested):
                if f.name in stored:
                    nested = _try_set(nested, f.name, stored[f.name])
            result = dataclasses.replace(result, **{group: nested})
        for f in dataclasses.fields(cls):
            if f.name not in _GROUPS and f.name in data:
                stored_value = _overrides_from(data[f.name]) if f.name == "model_overrides" else data[f.name]
                result = _try_set(result, f.name, stored_value)
        return result


_GROUPS = ("generation", "voice")


_TYPES: dict[str, type | tuple[type, ...]] = {"float": (int, float), "int": int, "str": str, "bool": bool}


def validate(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        expected = _TYPES.get(str(f.type))
        if expected and (not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool)):
            raise ValueError(f"{f.name} must be {f.type}, not {value!r}")
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ValueError(f"{f.name}: {value!r} is out of range. {f.metadata['description']}")


def _overrides_from(stored: Any) -> dict[str, ModelOverrides]:
    """Per-model settings from stored JSON: each valid value kept, the rest dropped with a log line."""
    if not isinstance(stored, dict):
        log.warning("ignoring stored setting model_overrides=%r: it is not an object", stored)
        return {}
    table: dict[str, ModelOverrides] = {}
    for model_id, values in stored.items():
        if not isinstance(values, dict):
            log.warning("ignoring stored settings of model %r: they are not an object", model_id)
            continue
        own = ModelOverrides()
        for f in dataclasses.fields(own):
            if f.name in values:
                own = _try_set(own, f.name, values[f.name])
        if isinstance(model_id, str) and model_id and not own.is_empty():
            table[model_id] = own
    return table


def _try_set(obj: Any, name: str, value: Any) -> Any:
    try:
        return dataclasses.replace(obj, **{name: value})
    except (ValueError, TypeError) as exc:
        log.warning("ignoring stored setting %s=%r: %s", name, value, exc)
        return obj


def load_settings(path: Path) -> Settings:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("settings file is not a JSON object")
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as exc:
        log.warning("settings file %s unreadable (%s); using defaults and keeping a copy", path, exc)
        try:
            path.replace(path.with_suffix(".json.bad"))
        except OSError:
            pass
        return Settings()
    return Settings.from_dict(data)


def save_settings(settings: Settings, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
