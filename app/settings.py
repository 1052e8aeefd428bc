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

DEFAULT_INSTRUCTIONS = "You are Hearth, a helpful assistant running on the user's own computer. Answer clearly and concisely."
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
    temperature: float = field(default=0.7, metadata=_meta("Randomness of replies (0 = always the same).", lambda v: 0.0 <= v <= 2.0))
    top_p: float = field(default=0.95, metadata=_meta("Nucleus sampling: keep the smallest set of tokens with this much probability.", lambda v: 0.0 < v <= 1.0))
    max_tokens: int = field(default=512, metadata=_meta("Longest reply, in tokens.", lambda v: 1 <= v <= 32768))
    seed: int = field(default=-1, metadata=_meta("Random seed; -1 picks a new one each time.", lambda v: -1 <= v < 2**32))


VOICE_MODES = ("hands-free", "push-to-talk")


@dataclass(frozen=True)
class VoiceSettings:
    stt_model_id: str = field(default="whisper-tiny-en", metadata=_meta("Speech recognition model (an stt id from the catalog)."))
    language: str = field(default="auto", metadata=_meta("Spoken language for multilingual models: auto or a code such as en, de, fr.", lambda v: v == "auto" or (2 <= len(v) <= 3 and v.isalpha() and v.islower())))
    voice_id: str = field(default="piper-joe-medium", metadata=_meta("Voice Hearth speaks with (a tts id from the catalog)."))
    speaking_rate: float = field(default=1.0, metadata=_meta("Speaking speed (1 = the voice's natural pace).", lambda v: 0.5 <= v <= 2.0))
    patience_ms: int = field(default=600, metadata=_meta("Silence that ends your turn, in milliseconds (shorter after a finished sentence).", lambda v: 200 <= v <= 3000))
    mode: str = field(default="hands-free", metadata=_meta("hands-free (it listens again by itself) or push-to-talk.", lambda v: v in VOICE_MODES))
    input_device: str = field(default="", metadata=_meta("Microphone (empty = the system default)."))
    output_device: str = field(default="", metadata=_meta("Speaker (empty = the system default)."))
    echo_cancellation: bool = field(default=True, metadata=_meta("Remove Hearth's own voice from the microphone so it can be interrupted on speakers."))
    speak_replies: bool = field(default=True, metadata=_meta("Read replies aloud in voice mode."))


@dataclass(frozen=True)
class Settings:
    model_id: str = field(default="smollm2-135m-instruct", metadata=_meta("Model used for new replies (an id from the catalog)."))
    n_ctx: int = field(default=4096, metadata=_meta("Context window in tokens.", lambda v: 256 <= v <= 262144))
    n_threads: int = field(default_factory=physical_cores, metadata=_meta("CPU threads for the model.", lambda v: 1 <= v <= 512))
    n_gpu_layers: int = field(default=-1, metadata=_meta("Layers on the GPU when a GPU build is present (-1 = all, 0 = none).", lambda v: v >= -1))
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    default_instructions: str = field(default=DEFAULT_INSTRUCTIONS, metadata=_meta("Custom instructions for conversations that have none of their own."))
    theme: str = field(default="system", metadata=_meta("Colour scheme: system, light or dark.", lambda v: v in THEMES))
    # The API key is not a setting: it comes from HEARTH_REMOTE_API_KEY, never from a file.
    engine: str = field(default="local", metadata=_meta("Who answers: local (this computer) or remote (a chat server).", lambda v: v in ENGINES))
    remote_url: str = field(default="", metadata=_meta("Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.", lambda v: v == "" or is_http_url(v)))
    remote_model: str = field(default="", metadata=_meta("Model name on the remote server (empty = the first it lists)."))

    def __post_init__(self) -> None:
        validate(self)
        validate(self.generation)
        validate(self.voice)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

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
                result = _try_set(result, f.name, data[f.name])
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
