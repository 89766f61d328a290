"""The house's import rules, read from the source with `ast` (nothing is imported):

- no import circle between edgekd's modules (function-level and TYPE_CHECKING imports count too);
- nothing inside edgekd imports the facade (`edgekd.api`) or the CLI: they sit on top;
- the timing protocol imports only the standard library and numpy (it is copied into bundles);
- the product never imports the experiments (`benchmarks/`).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgekd"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> Iterator[str]:
    """Every absolute module name `path` imports, relative imports resolved; `from X import y` yields
    X.y when that is a module of edgekd, else X."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield full if full in MODULES else source


def graph() -> dict[str, set[str]]:
    return {m: {i for i in imported_names(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def on_top(module: str) -> bool:
    return module == "edgekd.api" or module == "edgekd.cli" or module.startswith("edgekd.cli.")


def test_nothing_below_imports_the_top() -> None:
    importers = sorted(m for m, deps in graph().items() if not on_top(m) and any(on_top(d) for d in deps))
    assert importers == [], f"edgekd.api or edgekd.cli is imported from below by {importers}"


def test_the_protocol_imports_only_the_standard_library_and_numpy() -> None:
    path = PACKAGE / "bench" / "protocol.py"
    roots = {name.split(".")[0] for name in imported_names(path)}
    assert roots - {"numpy", "__future__"} <= set(sys.stdlib_module_names), roots


def test_the_product_never_imports_the_experiments() -> None:
    users = sorted(m for m, p in MODULES.items() if any(i.split(".")[0] == "benchmarks" for i in imported_names(p)))
    assert users == []
