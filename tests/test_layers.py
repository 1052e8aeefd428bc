"""The layers of the house, checked on every import in `app/`: a module imports only from its own
layer or the layers below it.

    clients   app.ui, app.cli, app.bench, app.__main__, and each package's `cli` module
    runtime   app.runtime (the user's profile, the engine factory)
    voice     app.voice
    core      app.core (conversations, the turn loop, the store)
    engines   app.engines, app.catalog, app.tools (models, model files, tools)
    base      app, app.errors, app.settings, app.paths, app.secrets, app.logs, app.jsonfile

Imports under `if TYPE_CHECKING:` are for type checkers only and are not counted. Qt stays in
`app.ui` (see test_code_quality.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

LAYERS = {"base": 0, "engines": 1, "core": 2, "voice": 3, "runtime": 4, "clients": 5}
BASE = {"app", "app.errors", "app.settings", "app.paths", "app.secrets", "app.logs", "app.jsonfile"}
TOP = {"engines": "engines", "catalog": "engines", "tools": "engines", "core": "core", "voice": "voice"}

# Imports that cross a layer the wrong way today, each with what removes it. The list may only shrink.
KNOWN = {
    ("app.engines.vision", "app.core.images"): "NormalisedImage moves into the engine contract",
    ("app.engines.worker_main", "app.core.images"): "the picture store's reader moves below core",
    ("app.engines.ocr", "app.core.images"): "NormalisedImage moves into the engine contract",
}


def layer(module: str) -> int:
    parts = module.split(".")
    if module in BASE:
        return LAYERS["base"]
    if parts[-1] == "cli" or parts[1] in ("ui", "cli", "bench", "__main__"):
        return LAYERS["clients"]
    if parts[1] == "runtime":
        return LAYERS["runtime"]
    return LAYERS[TOP[parts[1]]]


def _module_name(path: Path) -> str:
    relative = path.relative_to(APP.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST) -> list[str]:
    """Every `app…` module imported, outside `if TYPE_CHECKING:` blocks."""
    found: list[str] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append(child.module)
            elif isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            walk(child)

    walk(tree)
    return [name for name in found if name == "app" or name.startswith("app.")]


def _edges() -> list[tuple[str, str]]:
    edges = []
    for path in sorted(APP.rglob("*.py")):
        source = _module_name(path)
        for target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            edges.append((source, target))
    return edges


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    wrong = sorted(
        f"{source} → {target}"
        for source, target in _edges()
        if layer(target) > layer(source) and (source, target) not in KNOWN
    )
    assert wrong == [], "imports against the layers (see this file's docstring):\n" + "\n".join(wrong)


def test_the_known_exceptions_still_exist() -> None:
    """An exception that was fixed comes off the list, so it cannot come back unnoticed."""
    edges = set(_edges())
    gone = sorted(f"{source} → {target}" for source, target in KNOWN if (source, target) not in edges)
    assert gone == [], "remove these from KNOWN:\n" + "\n".join(gone)


def test_the_bench_package_has_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        if source.startswith("app.bench") and target.startswith("app.bench."):
            graph.setdefault(source, set()).add(target)
    seen: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if seen.get(node) == 1:
            raise AssertionError("import cycle: " + " → ".join([*trail, node]))
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        seen[node] = 2

    for start in sorted(graph):
        visit(start, [])
