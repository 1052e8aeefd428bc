"""`hearth tools`: the tools listed and run by hand, as a model's call would run them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.hearth_cli import assert_fails_clearly, assert_ok, hearth


def test_the_tools_are_listed_with_their_schemas(hearth_home: Path) -> None:
    result = hearth(hearth_home, "tools", "list", "--json")
    assert_ok(result)
    tools = {tool["name"]: tool for tool in json.loads(result.stdout)}
    assert set(tools) == {"calculator", "python"}
    assert tools["calculator"]["parameters"]["required"] == ["expression"]
    assert tools["calculator"]["needs_confirmation"] is False
    assert tools["python"]["needs_confirmation"] is False, "bubblewrap isolates the sandbox here"


def test_the_calculator_answers_exactly(hearth_home: Path) -> None:
    result = hearth(hearth_home, "tools", "run", "calculator", '{"expression": "4837 × 219 + 17"}', "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert (report["status"], report["result"]) == ("ran", "4837 × 219 + 17 = 1059320")


def test_the_python_tool_draws_a_chart(hearth_home: Path) -> None:
    code = "import matplotlib.pyplot as plt\nxs = [x / 10 for x in range(-20, 51)]\nplt.plot(xs, [x * x - 3 * x for x in xs])\n"
    result = hearth(hearth_home, "tools", "run", "python", "-", "--json", stdin=json.dumps({"code": code}))
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["status"] == "ran" and "1 figure shown to the user" in report["result"]
    [picture] = report["files"]
    assert Path(picture).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_arguments_the_schema_refuses_fail_clearly(hearth_home: Path) -> None:
    result = hearth(hearth_home, "tools", "run", "calculator", '{"expression": 5}')
    assert_fails_clearly(result, "must be a string")
    unknown = hearth(hearth_home, "tools", "run", "shell", "{}")
    assert_fails_clearly(unknown, "no tool named 'shell'", "calculator, python")
