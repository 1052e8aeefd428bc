"""`hearth tools`: the tools the model can be given, listed and run by hand.

    hearth tools list [--json]
    hearth tools run NAME ARGUMENTS [--yes] [--json]      (ARGUMENTS: a JSON object, "-" reads stdin)

`run` checks the arguments against the tool's schema exactly as a model's call is checked. A tool
that acts outside its sandbox (`has_effects`: the Python tool where bubblewrap is missing) runs only
with `--yes`; without it the result is `needs_confirmation` and nothing runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from app.errors import Cancelled
from app.tools.base import ToolError, ToolRegistry, ToolResult


def default_registry() -> ToolRegistry:
    """Every tool Hearth ships, in the order the model is offered them."""
    from app.tools.calculator import Calculator
    from app.tools.sandbox import PythonTool

    registry = ToolRegistry()
    registry.register(Calculator())
    registry.register(PythonTool())
    return registry


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = sub.add_parser("tools", help="list the tools, or run one by hand")
    actions = tools.add_subparsers(dest="tools_command", required=True)
    listing = actions.add_parser("list", help="each tool, what it does, and whether it needs your yes")
    listing.add_argument("--json", action="store_true")
    run = actions.add_parser("run", help="run one tool with arguments given as a JSON object")
    run.add_argument("name")
    run.add_argument("arguments", help='a JSON object, such as \'{"expression": "2^100"}\'; "-" reads stdin')
    run.add_argument("--yes", action="store_true", help="allow a tool that acts outside its sandbox")
    run.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.tools_command == "list":
        return _list(registry, args.json)
    return _run(registry, args)


def _list(registry: ToolRegistry, as_json: bool) -> int:
    tools = [registry.get(name) for name in registry.names()]
    if as_json:
        rows = [
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "needs_confirmation": t.has_effects,
            }
            for t in tools
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for tool in tools:
        asks = " (asks before each run)" if tool.has_effects else ""
        print(f"{tool.name}{asks}\n  {tool.description}")
    return 0


def _run(registry: ToolRegistry, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.arguments == "-" else args.arguments
    tool = registry.get(args.name)
    arguments = registry.check_arguments(tool.name, text)
    if tool.has_effects and not args.yes:
        status, result = "needs_confirmation", ToolResult(f"'{tool.name}' acts outside its sandbox here.", ok=False)
    else:
        started = time.perf_counter()
        try:
            result = tool.run(arguments, threading.Event())
        except ToolError as exc:
            result = ToolResult.from_error(exc, time.perf_counter() - started)
        except Cancelled:
            result = ToolResult("Stopped.", ok=False)
        status = "ran" if result.ok else "failed"
    if args.json:
        files = [str(path) for path in result.files]
        print(json.dumps({"name": tool.name, "arguments": arguments, "status": status, "result": result.text,
                          "files": files, "seconds": round(result.seconds, 3)}))  # fmt: skip
    else:
        print(result.text)
        for path in result.files:
            print(f"file: {path}")
        if status == "needs_confirmation":
            print("hint: add --yes to run it anyway.", file=sys.stderr)
    return 0 if status == "ran" else 1
