"""The package's floor plan, checked from the source (ast, nothing imported): no import circle between modules of
`workflow/`, and no module reaching into another module's `_private` names.

Every import counts, at module level or inside a function: an import deferred into a function to dodge a circle
is still a circle (the modules cannot be read, tested or moved one without the other).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workflow"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The package module that defines dotted `name` (itself, or the longest module prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _scan(module: str) -> tuple[set[str], list[str]]:
    """(modules `module` imports, `other.module:_name` private names it uses from other modules)."""
    path = MODULES[module]
    return _scan_source(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def _scan_source(module: str, source: str, is_package: bool) -> tuple[set[str], list[str]]:
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    imports: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}  # local name -> a package module bound to it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name)
                if target:
                    imports.add(target)
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                        alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:  # `from workflow.llm import registry`: the submodule
                    imports.add(full)
                    aliases[alias.asname or alias.name] = full
                    continue
                target = _owner(base)
                if target:
                    imports.add(target)
                    if _is_private(alias.name) and target != module:
                        private.append(f"{target}:{alias.name}")
    for node in ast.walk(tree):  # `runner._context(...)` on an imported module
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _is_private(node.attr):
            target = aliases.get(node.value.id)
            if target in MODULES and target != module:
                private.append(f"{target}:{node.attr}")
    imports.discard(module)
    return imports, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    graph, private = {}, {}
    for module in MODULES:
        graph[module], used = _scan(module)
        if used:
            private[module] = sorted(set(used))
    return graph, private


def test_the_checker_finds_a_circle_and_a_private_import():
    """The detector itself, on a made-up graph (a test that cannot fail proves nothing)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert "workflow.llm" in MODULES and "workflow.llm.gateway" in MODULES
    assert _owner("workflow.llm.gateway.Gateway") == "workflow.llm.gateway"
    source = """
from workflow.llm.gateway import Gateway, _wait
from . import registry
from workflow.llm import base as b

def f():
    import workflow.runner as r
    return r._private(), b.FatalModelError, registry.transport_for
"""
    imports, private = _scan_source("workflow.llm.made_up", source, is_package=False)
    assert imports == {"workflow.llm.gateway", "workflow.llm.registry", "workflow.llm.base", "workflow.runner"}
    assert sorted(private) == ["workflow.llm.gateway:_wait", "workflow.runner:_private"]


def test_no_import_circle_between_modules():
    graph, _ = _graph()
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other, directly or around a loop: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    _, private = _graph()
    assert not private, "make a name public (drop the underscore) where another module needs it: " + "; ".join(
        f"{module} uses {', '.join(names)}" for module, names in sorted(private.items()))
