"""The tool registry: finding tools, describing them to the model, and checking the arguments it sends."""

from __future__ import annotations

import math
import re
import threading
from typing import Any

import pytest

from app.tools.base import ToolError, ToolRegistry, ToolResult
from app.tools.calculator import Calculator


class Thermostat:
    """A small tool with every kind of argument the checker understands."""

    name = "thermostat"
    description = "Sets the room's temperature."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "degrees": {"type": "number"},
            "room": {"type": "string", "enum": ["kitchen", "hall"]},
            "minutes": {"type": "integer"},
            "eco": {"type": "boolean"},
        },
        "required": ["degrees"],
    }
    has_effects = True
    timeout_s = 2.0

    def run(self, arguments: dict[str, Any], cancel: threading.Event) -> ToolResult:
        return ToolResult(f"set to {arguments['degrees']}")


@pytest.fixture
def registry() -> ToolRegistry:
    tools = ToolRegistry()
    tools.register(Calculator())
    tools.register(Thermostat())
    return tools


def test_tools_are_found_by_name_in_the_order_registered(registry: ToolRegistry) -> None:
    assert registry.names() == ["calculator", "thermostat"]
    assert registry.get("thermostat").has_effects is True
    assert registry.get("calculator").has_effects is False


def test_an_unknown_tool_is_refused_naming_the_known_ones(registry: ToolRegistry) -> None:
    with pytest.raises(ToolError) as caught:
        registry.get("weather")
    assert caught.value.message == "There is no tool named 'weather'; the known tools are: calculator, thermostat."
    with pytest.raises(ToolError, match="known tools are: none"):
        ToolRegistry().get("weather")


def test_a_second_tool_with_the_same_name_is_a_bug(registry: ToolRegistry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Calculator())


def test_specs_are_openai_function_specs(registry: ToolRegistry) -> None:
    specs = registry.specs()
    assert [spec["function"]["name"] for spec in specs] == ["calculator", "thermostat"]
    assert specs[1] == {
        "type": "function",
        "function": {
            "name": "thermostat",
            "description": "Sets the room's temperature.",
            "parameters": Thermostat.parameters,
        },
    }
    assert specs[0]["function"]["parameters"]["required"] == ["expression"]


def test_specs_can_be_limited_to_the_enabled_tools(registry: ToolRegistry) -> None:
    assert [spec["function"]["name"] for spec in registry.specs(["thermostat"])] == ["thermostat"]
    assert [spec["function"]["name"] for spec in registry.specs(("thermostat", "calculator"))] == [
        "calculator",
        "thermostat",
    ]
    assert registry.specs([]) == []
    with pytest.raises(ToolError, match="no tool named 'weather'"):
        registry.specs(["weather"])


@pytest.mark.parametrize(
    ("arguments", "checked"),
    [
        ({"degrees": 21}, {"degrees": 21}),
        ({"degrees": 20.5, "room": "hall"}, {"degrees": 20.5, "room": "hall"}),
        ({"degrees": 20, "minutes": 30.0}, {"degrees": 20, "minutes": 30}),
        ({"degrees": 20, "eco": False}, {"degrees": 20, "eco": False}),
        ({"degrees": 20, "colour": "red"}, {"degrees": 20, "colour": "red"}),
        ('{"degrees": 19, "room": "kitchen"}', {"degrees": 19, "room": "kitchen"}),
    ],
)
def test_good_arguments_pass(registry: ToolRegistry, arguments: dict[str, Any] | str, checked: dict[str, Any]) -> None:
    result = registry.check_arguments("thermostat", arguments)
    assert result == checked
    assert type(result.get("minutes", 0)) is int


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "The argument 'degrees' is missing."),
        ("", "The argument 'degrees' is missing."),
        ({"degrees": "warm"}, "The argument 'degrees' must be a number."),
        ({"degrees": True}, "The argument 'degrees' must be a number."),
        ({"degrees": math.nan}, "The argument 'degrees' must be a number."),
        ({"degrees": math.inf}, "The argument 'degrees' must be a number."),
        ({"degrees": 20, "minutes": 1.5}, "The argument 'minutes' must be a whole number."),
        ({"degrees": 20, "minutes": True}, "The argument 'minutes' must be a whole number."),
        ({"degrees": 20, "eco": 1}, "The argument 'eco' must be true or false."),
        ({"degrees": 20, "room": 3}, "The argument 'room' must be a string."),
        ({"degrees": 20, "room": "attic"}, 'The argument \'room\' must be one of "kitchen", "hall".'),
        ([20], "The arguments of 'thermostat' must be a JSON object."),
        ("[20]", "The arguments of 'thermostat' must be a JSON object."),
    ],
)
def test_bad_arguments_are_refused_precisely(registry: ToolRegistry, arguments: Any, message: str) -> None:
    with pytest.raises(ToolError) as caught:
        registry.check_arguments("thermostat", arguments)
    assert caught.value.message == message
    assert caught.value.hint


def test_arguments_that_are_not_json_are_refused(registry: ToolRegistry) -> None:
    with pytest.raises(ToolError, match="not valid JSON"):
        registry.check_arguments("thermostat", '{"degrees": ')


def test_the_calculator_takes_only_its_expression(registry: ToolRegistry) -> None:
    assert registry.check_arguments("calculator", {"expression": "1+1"}) == {"expression": "1+1"}
    with pytest.raises(ToolError) as caught:
        registry.check_arguments("calculator", {"expression": "1+1", "precision": 5})
    assert caught.value.message == "'calculator' has no argument 'precision'."
    with pytest.raises(ToolError) as caught:
        registry.check_arguments("calculator", {"expression": 12})
    assert caught.value.message == "The argument 'expression' must be a string."


def test_checking_an_unknown_tool_is_refused(registry: ToolRegistry) -> None:
    with pytest.raises(ToolError, match="no tool named 'weather'"):
        registry.check_arguments("weather", {})


class _Schema:
    """A tool whose schema is given per test."""

    description = "Does nothing."
    has_effects = False
    timeout_s = 1.0

    def __init__(self, name: str, parameters: dict[str, Any]) -> None:
        self.name = name
        self.parameters = parameters

    def run(self, arguments: dict[str, Any], cancel: threading.Event) -> ToolResult:
        return ToolResult("")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"type": "array"}, "type 'object'"),
        ({"type": "object", "properties": []}, "type 'object'"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "has type 'array'"),
        ({"type": "object", "properties": {"a": {}}}, "needs a 'type' or an 'enum'"),
        ({"type": "object", "properties": {}, "required": ["a"]}, "does not describe: ['a']"),
    ],
)
def test_a_schema_outside_the_supported_subset_is_a_bug(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ToolRegistry().register(_Schema("broken", parameters))


def test_a_schema_with_only_an_enum_is_checked() -> None:
    tools = ToolRegistry()
    tools.register(_Schema("pick", {"type": "object", "properties": {"colour": {"enum": ["red", 2]}}}))
    assert tools.check_arguments("pick", {"colour": 2}) == {"colour": 2}
    with pytest.raises(ToolError, match='must be one of "red", 2'):
        tools.check_arguments("pick", {"colour": "blue"})


def test_a_failed_call_becomes_a_result_the_model_can_read() -> None:
    result = ToolResult.from_error(ToolError("The argument 'x' is missing.", "Send x."), seconds=0.5)
    assert result == ToolResult("Error: The argument 'x' is missing. — Send x.", ok=False, seconds=0.5)
