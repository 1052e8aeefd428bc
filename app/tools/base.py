"""The contract every tool meets, and the registry that finds tools and checks what the model sends them.

A tool is one action the model may ask for during a turn. It describes itself to the model with a
name, one sentence and a JSON schema of its arguments; the registry turns those into OpenAI-style
function specs and checks each call's arguments against the schema before the tool runs. The
checker understands the part of JSON schema tools here use: an object with `properties`,
`required` and `additionalProperties`, whose properties have the types string, number, integer
or boolean, optionally limited by `enum`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.errors import HearthError

_TYPES = {"string": "a string", "number": "a number", "integer": "a whole number", "boolean": "true or false"}


class ToolError(HearthError):
    """A tool cannot be found, was called with arguments it cannot use, or failed in a way it can explain."""


@dataclass(frozen=True)
class ToolResult:
    """What one call of a tool produced: `text` goes back to the model; `files` are what it made (pictures)."""

    text: str
    files: tuple[Path, ...] = ()
    ok: bool = True
    seconds: float = 0.0

    @classmethod
    def from_error(cls, error: ToolError, seconds: float = 0.0) -> ToolResult:
        """A failed result that tells the model what went wrong and what to do, so it can try again."""
        return cls(text=f"Error: {error}", ok=False, seconds=seconds)


class Tool(Protocol):
    """One action the model may call. Plain class attributes satisfy the read-only properties below."""

    @property
    def name(self) -> str:
        """The name the model calls the tool by: lower case letters, digits and underscores."""

    @property
    def description(self) -> str:
        """One sentence the model reads to decide when to use the tool."""

    @property
    def parameters(self) -> dict[str, Any]:
        """A JSON schema of the arguments, of type "object" (see the module's docstring for the subset)."""

    @property
    def has_effects(self) -> bool:
        """True when the tool acts outside its sandbox (files, network, programs) and so needs the user's yes."""

    @property
    def timeout_s(self) -> float:
        """How long a call may take before the caller gives up on it."""

    def run(self, arguments: dict[str, Any], cancel: threading.Event) -> ToolResult:
        """Do the work with arguments already checked by `ToolRegistry.check_arguments`.

        Raises `ToolError` for a failure the model should hear about (turn it into a result with
        `ToolResult.from_error`), and `app.errors.Cancelled` when `cancel` is set before the work is done."""


class ToolRegistry:
    """The tools available to the model, by name, in the order they were registered."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        """Add a tool. A second tool with the same name, or a schema outside the supported subset, is a bug: ValueError."""
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        _check_schema(tool.name, tool.parameters)
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        """The tool called `name`; a ToolError naming the known tools when there is none."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) if self._tools else "none"
            raise ToolError(
                f"There is no tool named '{name}'; the known tools are: {known}.", "Call one of the known tools."
            )
        return tool

    def names(self) -> list[str]:
        """The registered tools' names, in the order they were registered."""
        return list(self._tools)

    def specs(self, enabled: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI-style function specs of every tool, or only of those named in `enabled` (unknown names raise ToolError)."""
        chosen = set(self._tools) if enabled is None else {self.get(name).name for name in enabled}
        return [
            {
                "type": "function",
                "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
            }
            for tool in self._tools.values()
            if tool.name in chosen
        ]

    def check_arguments(self, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
        """The arguments of a call to `name`, checked against its schema; a ToolError says precisely what is wrong.

        `arguments` may be the JSON text a server sends. Whole numbers sent as 3.0 for an "integer"
        become 3; arguments the schema does not name pass through unless it sets
        `additionalProperties` to false."""
        tool = self.get(name)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise ToolError(
                    f"The arguments of '{name}' are not valid JSON ({exc}).", "Send the arguments as a JSON object."
                ) from exc
        if not isinstance(arguments, dict):
            raise ToolError(f"The arguments of '{name}' must be a JSON object.", "Send the arguments as a JSON object.")
        schema = tool.parameters
        properties: dict[str, dict[str, Any]] = schema.get("properties", {})
        known = ", ".join(properties) or "none"
        for key in schema.get("required", []):
            if key not in arguments:
                raise ToolError(f"The argument '{key}' is missing.", f"'{name}' takes these arguments: {known}.")
        checked: dict[str, Any] = {}
        for key, value in arguments.items():
            rule = properties.get(key)
            if rule is None:
                if schema.get("additionalProperties", True) is False:
                    raise ToolError(f"'{name}' has no argument '{key}'.", f"It takes these arguments: {known}.")
                checked[key] = value
                continue
            checked[key] = _check_value(key, value, rule)
        return checked


def _check_value(key: str, value: Any, rule: dict[str, Any]) -> Any:
    kind = rule.get("type")
    if kind is not None:
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _has_type(value, kind):
            raise ToolError(f"The argument '{key}' must be {_TYPES[kind]}.", f"Send '{key}' again as {_TYPES[kind]}.")
    if "enum" in rule and value not in rule["enum"]:
        choices = ", ".join(json.dumps(choice) for choice in rule["enum"])
        raise ToolError(f"The argument '{key}' must be one of {choices}.", f"Send '{key}' again with one of those.")
    return value


def _has_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return False


def _check_schema(name: str, schema: dict[str, Any]) -> None:
    if schema.get("type") != "object" or not isinstance(schema.get("properties", {}), dict):
        raise ValueError(f"the parameters of {name!r} must be a JSON schema of type 'object' with 'properties'")
    properties = schema.get("properties", {})
    for key, rule in properties.items():
        if not isinstance(rule, dict) or ("type" not in rule and "enum" not in rule):
            raise ValueError(f"the argument {key!r} of {name!r} needs a 'type' or an 'enum'")
        if "type" in rule and rule["type"] not in _TYPES:
            raise ValueError(f"the argument {key!r} of {name!r} has type {rule['type']!r}; supported: {list(_TYPES)}")
    missing = [key for key in schema.get("required", []) if key not in properties]
    if missing:
        raise ValueError(f"{name!r} requires arguments its schema does not describe: {missing}")
