"""The house rules measured from the code itself (the layering contracts are import-linter's, in
pyproject.toml, run by `make lint`): modules small enough to read, an AppConfig per app, one
class per name, no private name taken from another app, no import cycle."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import grimp
from django.apps import apps

ROOT = Path(__file__).resolve().parents[2]
APPS = ("llmops", "routing", "batches", "billing")
MAX_LINES = 900


def modules() -> dict[str, Path]:
    """Every module of the apps but migrations and the provider simulator (a stand-in for the
    providers, not part of the house)."""
    found = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts or parts[:2] == ("llmops", "simulator"):
                continue
            found[".".join(p for p in parts if p != "__init__") or app] = path
    return found


# Parsed once, at collection: on Python 3.11 ast.parse can fail with "AST constructor recursion
# depth mismatch" while another thread (the test simulator's, printing a traceback, which parses
# source for its carets) parses too; no such thread runs before the first test.
TREES = {name: ast.parse(path.read_text()) for name, path in modules().items()}


def test_no_module_is_over_900_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_app_has_an_appconfig_of_its_own():
    for app in APPS:
        config = apps.get_app_config(app)
        assert type(config).__module__ == f"{app}.apps", (app, type(config))


def test_one_class_per_name_across_the_apps():
    defined = collections.defaultdict(list)
    for name, tree in TREES.items():
        if ".management.commands." in name or name.startswith("llmops.backends."):
            continue  # Django finds a command by its class name (Command), a backend by its own
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                defined[node.name].append(name)
    assert {k: v for k, v in defined.items() if len(v) > 1} == {}


def test_no_module_takes_a_private_name_from_another_app():
    taken = []
    for name, tree in TREES.items():
        app = name.split(".")[0]
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in APPS:
                for alias in node.names:
                    if alias.name.startswith("_") and node.module.split(".")[0] != app:
                        taken.append(f"{name}: from {node.module} import {alias.name}")
                    aliases[alias.asname or alias.name] = node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in APPS:
                        aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and aliases.get(node.value.id, app).split(".")[0] != app
            ):
                taken.append(f"{name}: {node.value.id}.{node.attr}")
    assert taken == []


def test_no_import_cycle_between_modules():
    """Function-level imports count too: a cycle there is a cycle all the same."""
    graph = grimp.build_graph(*APPS)
    names = set(modules())
    edges = {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i in names} for m in names
    }
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(names):
        if module not in index:
            visit(module)
    assert cycles == []
