"""The layers read top-down: core/ (recipe schema, errors, artifacts, pixels, comparison, the runner
protocol) imports neither convert/ nor verify/; convert/ never imports verify/; measurement never
imports presentation (verify/report/); and no module imports itself back through others.

A few lines over the AST rather than import-linter: the rules are four, the project's own imports
are all it needs to see, and imports inside functions (the lazy ones that kept the last circles
alive) count as much as those at the top; only `if TYPE_CHECKING:` blocks are left out (they never
run)."""
from __future__ import annotations

import ast
from pathlib import Path

from core.recipe import PROJECT_ROOT

PACKAGES = ("core", "convert", "verify")
MEASUREMENT = ("verify.engines", "verify.face", "verify.analyses", "verify.tasks")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports when it runs (any depth; TYPE_CHECKING blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import module` names a module, else a name in it
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in known}


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in (PROJECT_ROOT / package).rglob("*.py")}
    files["rkverify"] = PROJECT_ROOT / "rkverify.py"
    known = set(files)
    return {name: imports_of(path, known) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_no_import_circle() -> None:
    assert cycles(project_graph()) == []


def test_layers_read_top_down() -> None:
    wrong = [f"{source} imports {target}" for source, targets in project_graph().items() for target in targets
             if (within(source, ("core",)) and within(target, ("convert", "verify")))
             or (within(source, ("convert",)) and within(target, ("verify",)))
             or (within(source, MEASUREMENT) and within(target, ("verify.report",)))]
    assert wrong == []


def test_the_checks_see_a_circle_and_a_wrong_layer(tmp_path: Path) -> None:
    """The checker itself: a made-up circle and a lazy upward import are found."""
    graph = {"convert.a": {"verify.b"}, "verify.b": {"verify.c"}, "verify.c": {"verify.b"}}
    assert cycles(graph) == [["verify.b", "verify.c"]]
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import verify.b\n"
                      "def f():\n    from verify import c\n")
    assert imports_of(module, {"verify.b", "verify.c"}) == {"verify.c"}
