"""Every module of migration_jobs imports, and services, selectors, etl and verify import one another
without a loop, imports inside functions included (they hide a cycle from Python, not from a reader)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import migration_jobs

LAYERS = ("services", "selectors", "etl", "verify")


def all_modules() -> dict[str, Path]:
    """Every module of the migration_jobs package, by dotted name, with its source file."""
    modules = {"migration_jobs": Path(migration_jobs.__file__)}
    for info in pkgutil.walk_packages(migration_jobs.__path__, prefix="migration_jobs."):
        spec = importlib.util.find_spec(info.name)
        modules[info.name] = Path(spec.origin)
    return modules


def import_graph(sources: dict[str, str], packages: set[str]) -> dict[str, set[str]]:
    """Which of the given modules each one imports, anywhere in its body.

    `from a import b` counts as importing `a.b` when that is one of the modules; `packages` names
    the modules that are packages, which resolve relative imports one level less.
    """
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, source in sources.items():
        package = name if name in packages else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(target for target in targets if target in sources and target != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The loops a depth-first walk meets, each as the modules around it (first repeated last)."""
    state: dict[str, str] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for following in sorted(graph[node]):
            if state.get(following) == "open":
                found.append([*stack[stack.index(following) :], following])
            elif following not in state:
                visit(following)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def layer_graph() -> dict[str, set[str]]:
    modules = {
        name: path for name, path in all_modules().items() if len(name.split(".")) > 1 and name.split(".")[1] in LAYERS
    }
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    return import_graph({name: path.read_text() for name, path in modules.items()}, packages)


def test_every_module_of_migration_jobs_imports():
    names = sorted(all_modules())
    assert "migration_jobs.services.runs" in names and "migration_jobs.verify.runner" in names
    for name in names:
        importlib.import_module(name)


def test_services_selectors_etl_and_verify_have_no_import_cycle():
    graph = layer_graph()
    assert "migration_jobs.services.run_control" in graph["migration_jobs.services.runs"]
    assert [" -> ".join(cycle) for cycle in cycles(graph)] == []


def test_the_cycle_check_sees_an_import_hidden_inside_a_function():
    sources = {
        "pkg.services.a": "from pkg.services.b import thing\n",
        "pkg.services.b": "def thing():\n    from pkg.services import a\n    return a\n",
        "pkg.services": "",
    }
    graph = import_graph(sources, packages={"pkg.services"})
    assert cycles(graph) == [["pkg.services.a", "pkg.services.b", "pkg.services.a"]]


def test_the_cycle_check_resolves_relative_imports():
    sources = {
        "pkg.verify": "from .outcome import PASS\n",
        "pkg.verify.outcome": "PASS = 'pass'\n",
        "pkg.verify.runner": "def go():\n    from . import checks\n",
        "pkg.verify.checks": "from ..verify.runner import go\n",
    }
    graph = import_graph(sources, packages={"pkg.verify"})
    assert graph["pkg.verify"] == {"pkg.verify.outcome"}
    assert graph["pkg.verify.runner"] == {"pkg.verify", "pkg.verify.checks"}
    assert cycles(graph) == [["pkg.verify.checks", "pkg.verify.runner", "pkg.verify.checks"]]
